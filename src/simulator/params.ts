// Query parameters the simulator understands: the window (`period` or
// `from_time` + `to_time`, in the account's zone; weeks start on Monday) and
// paging. Its calendar is its own, not the proxy's, so a bug in the proxy's
// cannot be mirrored by the double its tests compare against.
import { DateTime } from 'luxon';

/** The 19 values of Deskie's `period` parameter (deskie-api-notes.md). */
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

const isPeriod = (value: string): value is Period => (PERIODS as readonly string[]).includes(value);

/** Deskie sends 100 status changes a page (deskie-api-stats.txt, "Pagination"). */
export const STAFF_STATUS_PAGE_SIZE = 100;
/** Satisfaction's largest page, and its default here. */
export const SATISFACTION_MAX_LIMIT = 100;

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
  /** Nominal length of the period before it is cut at the current hour: how much data it holds (`this_month` pages on the 1st too). */
  readonly spanSeconds: number;
}

/**
 * The window a request asks for. `period` wins over `from_time` / `to_time`
 * (Deskie: "with period, from_time and to_time are not needed").
 */
export function resolveWindow(query: URLSearchParams, maxRangeMonths: number, now: DateTime): TimeWindow {
  const period = query.get('period');
  if (period !== null) {
    if (!isPeriod(period)) throw new BadRequestError(`unknown period "${period}"`);
    return standardWindow(period, now);
  }
  const fromRaw = query.get('from_time');
  const toRaw = query.get('to_time');
  if (fromRaw === null || toRaw === null) {
    throw new BadRequestError('either period or both from_time and to_time are required');
  }
  const zone = now.zone;
  return customWindow(parseTimeParam('from_time', fromRaw, zone), parseTimeParam('to_time', toRaw, zone), maxRangeMonths);
}

const DASHED = /^(\d{4})-(\d{2})-(\d{2})(?: (\d{2}):(\d{2})(?::(\d{2}))?)?(?: ([+-])(\d{2})(\d{2}))?$/;
const DOTTED = /^(\d{2})\.(\d{2})\.(\d{4})(?: (\d{2}):(\d{2})(?::(\d{2}))?)?(?: ([+-])(\d{2})(\d{2}))?$/;

/**
 * The instant a `from_time` / `to_time` value names: `YYYY-MM-DD` or
 * `DD.MM.YYYY`, each with an optional `HH:MM[:SS]` and ` +HHMM`, or unix
 * seconds. Without an offset it is read in the account zone.
 */
function parseTimeParam(name: string, raw: string, zone: DateTime['zone']): DateTime {
  if (/^\d{1,11}$/.test(raw)) return DateTime.fromSeconds(Number(raw), { zone });
  const dashed = DASHED.exec(raw);
  const dotted = dashed ? null : DOTTED.exec(raw);
  const parts = dashed
    ? { year: dashed[1], month: dashed[2], day: dashed[3], rest: dashed.slice(4) }
    : dotted
      ? { year: dotted[3], month: dotted[2], day: dotted[1], rest: dotted.slice(4) }
      : null;
  if (parts === null) throw new BadRequestError(`${name} "${raw}" is not a date`);
  const [hour = '0', minute = '0', second = '0', sign, offsetHours, offsetMinutes] = parts.rest;
  const time = DateTime.fromObject(
    { year: Number(parts.year), month: Number(parts.month), day: Number(parts.day), hour: Number(hour), minute: Number(minute), second: Number(second) },
    { zone: sign === undefined ? zone : `UTC${sign}${offsetHours}:${offsetMinutes}` },
  );
  if (!time.isValid) throw new BadRequestError(`${name} "${raw}" is not a date`);
  return time;
}

function customWindow(from: DateTime, to: DateTime, maxRangeMonths: number): TimeWindow {
  const spanSeconds = to.toSeconds() - from.toSeconds();
  if (spanSeconds < MIN_CUSTOM_RANGE_SECONDS) throw new BadRequestError('custom period is shorter than 1 hour');
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

/** Months back from the current one for each whole-month period: [first, last]. */
const MONTH_SPANS: Readonly<Partial<Record<Period, readonly [number, number]>>> = {
  this_month: [0, 0],
  last_month: [1, 1],
  month_2: [2, 2],
  month_3: [3, 3],
  month_4: [4, 4],
  month_5: [5, 5],
  month_6: [6, 6],
  '3_previous_months': [3, 1],
  '6_previous_months': [6, 1],
};
/** Days back from today for each day period: [first, last]. */
const DAY_SPANS: Readonly<Partial<Record<Period, readonly [number, number]>>> = {
  today: [0, 0],
  yesterday: [1, 1],
  last_7_days: [6, 0],
  last_14_days: [13, 0],
  last_30_days: [29, 0],
};

/** A standard period's calendar bounds in the account zone (luxon's weeks start on Monday). */
function periodBounds(period: Period, now: DateTime): { from: DateTime; to: DateTime } {
  const days = DAY_SPANS[period];
  if (days) return { from: now.minus({ days: days[0] }).startOf('day'), to: now.minus({ days: days[1] - 1 }).startOf('day') };
  const months = MONTH_SPANS[period];
  if (months) return { from: now.minus({ months: months[0] }).startOf('month'), to: now.minus({ months: months[1] - 1 }).startOf('month') };
  switch (period) {
    case 'this_week':
      return { from: now.startOf('week'), to: now.plus({ weeks: 1 }).startOf('week') };
    case 'last_week':
      return { from: now.minus({ weeks: 1 }).startOf('week'), to: now.startOf('week') };
    case 'this_year':
      return { from: now.startOf('year'), to: now.plus({ years: 1 }).startOf('year') };
    case 'last_year':
      return { from: now.minus({ years: 1 }).startOf('year'), to: now.startOf('year') };
    default: {
      // last_24_hours, aligned to the hour so the same query gives the same bytes within it.
      const end = now.startOf('hour').plus({ hours: 1 });
      return { from: end.minus({ hours: 24 }), to: end };
    }
  }
}

/** A positive integer parameter such as `page` or `limit`, or its default when absent. */
export function positiveIntegerParam(query: URLSearchParams, name: string, defaultValue: number, max = Number.MAX_SAFE_INTEGER): number {
  const raw = query.get(name);
  if (raw === null) return defaultValue;
  const value = Number(raw);
  if (!POSITIVE_INTEGER.test(raw) || value > max) {
    const range = max === Number.MAX_SAFE_INTEGER ? 'a positive integer' : `an integer from 1 to ${max}`;
    throw new BadRequestError(`${name} must be ${range}`);
  }
  return value;
}
