// Query parameters the simulator understands: the reporting window
// (`period` or `from_time` + `to_time`) and the paging numbers.
// The simulator's account time zone is UTC: a time without an offset is read
// as UTC and the standard periods are computed on UTC calendar days.
import type { DateTime } from 'luxon';
import { isPeriod, type Period, periodWindow } from '../deskie/periods.js';
import { parseDeskieTime } from '../deskie/time.js';

export { PERIODS, type Period } from '../deskie/periods.js';

/** Deskie's shortest custom period is 1 hour (deskie-api-stats.txt). */
const MIN_CUSTOM_RANGE_SECONDS = 3_600;

const POSITIVE_INTEGER = /^[1-9]\d*$/;

/** A request the simulator refuses with HTTP 400; the message goes into the error body. */
export class BadRequestError extends Error {
  override readonly name = 'BadRequestError';
}

export interface TimeWindow {
  /** Start of the window, unix seconds (inclusive). */
  readonly fromSeconds: number;
  /** End of the window, unix seconds (exclusive). */
  readonly toSeconds: number;
  /**
   * Nominal length of the period before it is cut at the current hour.
   * It decides how much data the window holds, so `this_month` has several
   * pages even on the first day of the month.
   */
  readonly spanSeconds: number;
}

/**
 * The window a request asks for. `period` wins over `from_time` / `to_time`
 * (Deskie: "with period, from_time and to_time are not needed").
 */
export function resolveWindow(query: URLSearchParams, maxRangeMonths: number, now: DateTime): TimeWindow {
  const period = query.get('period');
  if (period !== null) {
    if (!isPeriod(period)) {
      throw new BadRequestError(`unknown period "${period}"`);
    }
    return standardWindow(period, now.toUTC());
  }
  const fromRaw = query.get('from_time');
  const toRaw = query.get('to_time');
  if (fromRaw === null || toRaw === null) {
    throw new BadRequestError('either period or both from_time and to_time are required');
  }
  return customWindow(parseTimeParam('from_time', fromRaw), parseTimeParam('to_time', toRaw), maxRangeMonths);
}

/** The instant a `from_time` / `to_time` value names, in any of the forms Deskie accepts (read in UTC without an offset). */
function parseTimeParam(name: string, raw: string): DateTime {
  const parsed = parseDeskieTime(raw, 'utc');
  if (parsed === null) throw new BadRequestError(`${name} "${raw}" is not a date`);
  return parsed;
}

function customWindow(from: DateTime, to: DateTime, maxRangeMonths: number): TimeWindow {
  const spanSeconds = to.toSeconds() - from.toSeconds();
  if (spanSeconds < MIN_CUSTOM_RANGE_SECONDS) {
    throw new BadRequestError('custom period is shorter than 1 hour');
  }
  if (to > from.plus({ months: maxRangeMonths })) {
    throw new BadRequestError(`custom period is longer than ${maxRangeMonths} month${maxRangeMonths === 1 ? '' : 's'}`);
  }
  return { fromSeconds: from.toSeconds(), toSeconds: to.toSeconds(), spanSeconds };
}

/**
 * A standard period's window, cut at the end of the current hour so no record
 * lies far in the future. Windows start on calendar boundaries, so the same
 * query gives the same bytes for at least the rest of the hour.
 */
function standardWindow(period: Period, now: DateTime): TimeWindow {
  const { from, to } = periodBounds(period, now);
  const endOfCurrentHour = now.startOf('hour').plus({ hours: 1 });
  const clippedTo = to < endOfCurrentHour ? to : endOfCurrentHour;
  return {
    fromSeconds: from.toSeconds(),
    toSeconds: clippedTo.toSeconds(),
    spanSeconds: to.toSeconds() - from.toSeconds(),
  };
}

function periodBounds(period: Period, now: DateTime): { from: DateTime; to: DateTime } {
  if (period === 'last_24_hours') {
    // Aligned to the hour, so the same query gives the same bytes within it.
    const end = now.startOf('hour').plus({ hours: 1 });
    return { from: end.minus({ hours: 24 }), to: end };
  }
  // The proxy's own calendar rules, in UTC with weeks starting on Monday.
  const { from, to } = periodWindow(period, now.toMillis(), 'utc', 1);
  return { from, to };
}

/** A positive integer parameter such as `page` or `limit`, or its default when absent. */
export function positiveIntegerParam(query: URLSearchParams, name: string, defaultValue: number, max = Number.MAX_SAFE_INTEGER): number {
  const raw = query.get(name);
  if (raw === null) {
    return defaultValue;
  }
  const value = Number(raw);
  if (!POSITIVE_INTEGER.test(raw) || value > max) {
    const range = max === Number.MAX_SAFE_INTEGER ? 'a positive integer' : `an integer from 1 to ${max}`;
    throw new BadRequestError(`${name} must be ${range}`);
  }
  return value;
}
