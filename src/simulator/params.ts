// Query parameters the simulator understands: the reporting window
// (`period` or `from_time` + `to_time`) and the paging numbers.
// The simulator's account time zone is UTC: a time without an offset is read
// as UTC and the standard periods are computed on UTC calendar days.
import { DateTime } from 'luxon';

/** The 19 values Deskie documents for `period` (deskie-api-notes.md). */
export const PERIODS = [
  'last_24_hours',
  'last_7_days',
  'last_14_days',
  'last_30_days',
  'today',
  'yesterday',
  'this_week',
  'last_week',
  'this_month',
  'last_month',
  'month_2',
  'month_3',
  'month_4',
  'month_5',
  'month_6',
  '3_previous_months',
  '6_previous_months',
  'this_year',
  'last_year',
] as const;
export type Period = (typeof PERIODS)[number];

/** Deskie's shortest custom period is 1 hour (deskie-api-stats.txt). */
const MIN_CUSTOM_RANGE_SECONDS = 3_600;

/**
 * Custom `from_time` / `to_time` forms, tried in order. Deskie documents
 * `YYYY-MM-DD HH:MM:SS` with an optional ` +0400`; its examples and public
 * clients also use the shorter forms. A `+` sent unencoded in a query string
 * arrives as a space and fails here, as it would on a real server.
 */
const TIME_FORMATS = [
  'yyyy-MM-dd HH:mm:ss ZZZ',
  'yyyy-MM-dd HH:mm:ss',
  'yyyy-MM-dd HH:mm',
  'yyyy-MM-dd',
  'dd.MM.yyyy',
] as const;

const UNIX_SECONDS = /^\d+$/;
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

export function isPeriod(value: string): value is Period {
  return (PERIODS as readonly string[]).includes(value);
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

/** The instant a `from_time` / `to_time` value names, in any of the accepted forms. */
export function parseTimeParam(name: string, raw: string): DateTime {
  if (UNIX_SECONDS.test(raw)) {
    return DateTime.fromSeconds(Number(raw), { zone: 'utc' });
  }
  for (const format of TIME_FORMATS) {
    const parsed = DateTime.fromFormat(raw, format, { zone: 'utc' });
    if (parsed.isValid) {
      return parsed;
    }
  }
  throw new BadRequestError(`${name} "${raw}" is not a date`);
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
  const today = now.startOf('day');
  const tomorrow = today.plus({ days: 1 });
  // Luxon weeks are ISO weeks, which start on Monday: the likely Deskie default.
  const thisWeek = now.startOf('week');
  const thisMonth = now.startOf('month');
  const thisYear = now.startOf('year');
  const lastDays = (days: number) => ({ from: tomorrow.minus({ days }), to: tomorrow });
  const monthsBack = (months: number) => ({ from: thisMonth.minus({ months }), to: thisMonth.minus({ months: months - 1 }) });

  switch (period) {
    case 'last_24_hours': {
      const end = now.startOf('hour').plus({ hours: 1 });
      return { from: end.minus({ hours: 24 }), to: end };
    }
    case 'last_7_days':
      return lastDays(7);
    case 'last_14_days':
      return lastDays(14);
    case 'last_30_days':
      return lastDays(30);
    case 'today':
      return { from: today, to: tomorrow };
    case 'yesterday':
      return { from: today.minus({ days: 1 }), to: today };
    case 'this_week':
      return { from: thisWeek, to: thisWeek.plus({ weeks: 1 }) };
    case 'last_week':
      return { from: thisWeek.minus({ weeks: 1 }), to: thisWeek };
    case 'this_month':
      return { from: thisMonth, to: thisMonth.plus({ months: 1 }) };
    case 'last_month':
      return monthsBack(1);
    case 'month_2':
      return monthsBack(2);
    case 'month_3':
      return monthsBack(3);
    case 'month_4':
      return monthsBack(4);
    case 'month_5':
      return monthsBack(5);
    case 'month_6':
      return monthsBack(6);
    case '3_previous_months':
      return { from: thisMonth.minus({ months: 3 }), to: thisMonth };
    case '6_previous_months':
      return { from: thisMonth.minus({ months: 6 }), to: thisMonth };
    case 'this_year':
      return { from: thisYear, to: thisYear.plus({ years: 1 }) };
    case 'last_year':
      return { from: thisYear.minus({ years: 1 }), to: thisYear };
  }
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
