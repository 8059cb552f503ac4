// Query parameters the simulator reads: the window (`period`, or `from_time` + `to_time`, account zone) and paging.
// Its calendar is its own, not the proxy's, so a proxy bug cannot be mirrored by the double its tests compare against.
import { DateTime, type DurationLike } from 'luxon';

type CalendarUnit = 'day' | 'week' | 'month' | 'year';

interface PeriodRule {
  /** From the start of the unit `first` back to the end of the unit `last` back; null: rolling. */
  readonly span: readonly [unit: CalendarUnit, first: number, last: number] | null;
  /** Deskie's cache lifetime (deskie-api-stats.txt, "Caching"). */
  readonly lifetime: DurationLike;
}

/** Deskie's 19 periods (deskie-api-notes.md): the simulator's own copy of the table. */
export const PERIOD_RULES = {
  last_24_hours: { span: null, lifetime: { minutes: 5 } },
  last_7_days: { span: ['day', 6, 0], lifetime: { hours: 1 } },
  last_14_days: { span: ['day', 13, 0], lifetime: { hours: 1 } },
  last_30_days: { span: ['day', 29, 0], lifetime: { days: 1 } },
  today: { span: ['day', 0, 0], lifetime: { minutes: 5 } },
  yesterday: { span: ['day', 1, 1], lifetime: { days: 1 } },
  this_week: { span: ['week', 0, 0], lifetime: { days: 1 } },
  last_week: { span: ['week', 1, 1], lifetime: { weeks: 1 } },
  this_month: { span: ['month', 0, 0], lifetime: { days: 1 } },
  last_month: { span: ['month', 1, 1], lifetime: { months: 1 } },
  month_2: { span: ['month', 2, 2], lifetime: { months: 1 } },
  month_3: { span: ['month', 3, 3], lifetime: { months: 1 } },
  month_4: { span: ['month', 4, 4], lifetime: { months: 1 } },
  month_5: { span: ['month', 5, 5], lifetime: { months: 1 } },
  month_6: { span: ['month', 6, 6], lifetime: { months: 1 } },
  '3_previous_months': { span: ['month', 3, 1], lifetime: { months: 1 } },
  '6_previous_months': { span: ['month', 6, 1], lifetime: { months: 1 } },
  this_year: { span: ['year', 0, 0], lifetime: { days: 1 } },
  last_year: { span: ['year', 1, 1], lifetime: { years: 1 } },
} satisfies Readonly<Record<string, PeriodRule>>;
export type Period = keyof typeof PERIOD_RULES;
export const PERIODS = Object.keys(PERIOD_RULES) as readonly Period[];

const isPeriod = (value: string): value is Period => Object.hasOwn(PERIOD_RULES, value);

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

/** The window a request asks for; `period` wins ("with period, from_time and to_time are not needed"). */
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

/** `YYYY-MM-DD` or `DD.MM.YYYY` with optional `HH:MM[:SS]` and ` +HHMM` (else the account zone), or unix seconds. */
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

/** luxon weeks start Monday; cut at the end of this hour: no record lies far ahead, and the bytes hold for the hour. */
function standardWindow(period: Period, now: DateTime): TimeWindow {
  const endOfCurrentHour = now.startOf('hour').plus({ hours: 1 });
  const span: PeriodRule['span'] = PERIOD_RULES[period].span;
  // last_24_hours ends with the current hour too, so the same query gives the same bytes within it.
  let from = endOfCurrentHour.minus({ hours: 24 });
  let to = endOfCurrentHour;
  if (span !== null) {
    const [unit, first, last] = span;
    from = now.minus({ [`${unit}s`]: first }).startOf(unit);
    to = now.minus({ [`${unit}s`]: last - 1 }).startOf(unit);
  }
  const clippedTo = to < endOfCurrentHour ? to : endOfCurrentHour;
  return {
    fromSeconds: from.toSeconds(),
    toSeconds: clippedTo.toSeconds(),
    spanSeconds: to.toSeconds() - from.toSeconds(),
  };
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
