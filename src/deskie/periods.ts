import { DateTime, type DurationLike } from 'luxon';
import type { EndpointName } from './endpoints.js';

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

const PERIOD_SET: ReadonlySet<string> = new Set(PERIODS);
export const isPeriod = (value: string): value is Period => PERIOD_SET.has(value);

/** Custom ranges have two rows in Deskie's table: up to one day long, and longer. */
export const CUSTOM_RANGE_CLASSES = ['custom_up_to_1_day', 'custom_longer'] as const;
export type CustomRangeClass = (typeof CUSTOM_RANGE_CLASSES)[number];
export type FreshnessClass = Period | CustomRangeClass;
/** Every row of Deskie's cache table: the periods, then the custom-range classes. */
export const FRESHNESS_CLASSES: readonly FreshnessClass[] = [...PERIODS, ...CUSTOM_RANGE_CLASSES];
const CUSTOM_RANGE_SET: ReadonlySet<string> = new Set(CUSTOM_RANGE_CLASSES);
export const isCustomRange = (freshness: string): freshness is CustomRangeClass => CUSTOM_RANGE_SET.has(freshness);

/** Deskie's own cache lifetime for each period (deskie-api-stats.txt, "Caching"). */
export const DESKIE_CACHE_LIFETIME: Readonly<Record<FreshnessClass, DurationLike>> = {
  last_24_hours: { minutes: 5 },
  last_7_days: { hours: 1 },
  last_14_days: { hours: 1 },
  last_30_days: { days: 1 },
  today: { minutes: 5 },
  yesterday: { days: 1 },
  this_week: { days: 1 },
  last_week: { weeks: 1 },
  this_month: { days: 1 },
  last_month: { months: 1 },
  month_2: { months: 1 },
  month_3: { months: 1 },
  month_4: { months: 1 },
  month_5: { months: 1 },
  month_6: { months: 1 },
  '3_previous_months': { months: 1 },
  '6_previous_months': { months: 1 },
  this_year: { days: 1 },
  last_year: { years: 1 },
  custom_up_to_1_day: { hours: 1 },
  custom_longer: { days: 1 },
};

/** How long an answer stays fresh, per endpoint and period or custom-range class. */
export type Lifetimes = Readonly<Record<EndpointName, Readonly<Record<FreshnessClass, DurationLike>>>>;

/**
 * Deskie states its table for the leaderboard and satisfaction, none for
 * staff statuses; they keep the same table until an operator sets theirs.
 */
export const DEFAULT_LIFETIMES: Lifetimes = {
  leaderboard: DESKIE_CACHE_LIFETIME,
  staff_statuses: DESKIE_CACHE_LIFETIME,
  satisfaction: DESKIE_CACHE_LIFETIME,
};

/** ISO weekday numbers, Monday = 1 ... Sunday = 7, as luxon counts them. */
export type Weekday = 1 | 2 | 3 | 4 | 5 | 6 | 7;

export interface PeriodWindow {
  /** First instant of the window, in the account time zone. */
  readonly from: DateTime;
  /** End of the window (exclusive), in the account time zone. */
  readonly to: DateTime;
  /**
   * When this period starts to mean another window, or null for the rolling
   * `last_24_hours`, which moves with the clock and is never keyed by window.
   */
  readonly changesAt: DateTime | null;
}

/**
 * The absolute window a period means at `now` in the account time zone (luxon's
 * calendar: a DST day is 23 or 25 hours). Deskie does not say whether
 * `last_N_days` includes today; it is read as the N days ending with today.
 * Either reading changes window at midnight, which is all the cache needs.
 */
export function periodWindow(period: Period, nowMs: number, zone: string, weekStart: Weekday): PeriodWindow {
  if (period === 'last_24_hours') return rollingDay(nowMs, zone);
  const now = DateTime.fromMillis(nowMs, { zone });
  // Move the date first and take its start last: a day whose midnight DST skips
  // (America/Santiago, 2026-09-06) starts at 01:00, and a day added to that would too.
  const day = (offset: number) => now.plus({ days: offset }).startOf('day');
  const weekOffset = (now.weekday - weekStart + 7) % 7;
  const week = (offset: number) => day(offset * 7 - weekOffset);
  const month = (offset: number) => now.plus({ months: offset }).startOf('month');
  const year = (offset: number) => now.plus({ years: offset }).startOf('year');

  const lastDays = (count: number): PeriodWindow => {
    const next = day(1);
    return { from: day(1 - count), to: next, changesAt: next };
  };
  const monthsBack = (from: number, to: number): PeriodWindow => ({ from: month(-from), to: month(-to), changesAt: month(1) });

  switch (period) {
    case 'last_7_days':
      return lastDays(7);
    case 'last_14_days':
      return lastDays(14);
    case 'last_30_days':
      return lastDays(30);
    case 'today':
      return lastDays(1);
    case 'yesterday':
      return { from: day(-1), to: day(0), changesAt: day(1) };
    case 'this_week': {
      const next = week(1);
      return { from: week(0), to: next, changesAt: next };
    }
    case 'last_week':
      return { from: week(-1), to: week(0), changesAt: week(1) };
    case 'this_month':
      return monthsBack(0, -1);
    case 'last_month':
      return monthsBack(1, 0);
    case 'month_2':
      return monthsBack(2, 1);
    case 'month_3':
      return monthsBack(3, 2);
    case 'month_4':
      return monthsBack(4, 3);
    case 'month_5':
      return monthsBack(5, 4);
    case 'month_6':
      return monthsBack(6, 5);
    case '3_previous_months':
      return monthsBack(3, 0);
    case '6_previous_months':
      return monthsBack(6, 0);
    case 'this_year': {
      const next = year(1);
      return { from: year(0), to: next, changesAt: next };
    }
    case 'last_year':
      return { from: year(-1), to: year(0), changesAt: year(1) };
  }
}

const DAY_MS = 24 * 60 * 60 * 1000;

function rollingDay(nowMs: number, zone: string): PeriodWindow {
  return { from: DateTime.fromMillis(nowMs - DAY_MS, { zone }), to: DateTime.fromMillis(nowMs, { zone }), changesAt: null };
}

/** Remembers each calendar period's window until it changes; the rolling `last_24_hours` is computed every time. */
export class PeriodWindows {
  readonly #remembered = new Map<Period, { readonly window: PeriodWindow; readonly sinceMs: number; readonly untilMs: number }>();

  constructor(
    readonly zone: string,
    readonly weekStart: Weekday,
  ) {}

  at(period: Period, nowMs: number): PeriodWindow {
    const remembered = this.#remembered.get(period);
    if (remembered && nowMs >= remembered.sinceMs && nowMs < remembered.untilMs) return remembered.window;
    const window = periodWindow(period, nowMs, this.zone, this.weekStart);
    if (window.changesAt !== null) {
      this.#remembered.set(period, { window, sinceMs: nowMs, untilMs: window.changesAt.toMillis() });
    }
    return window;
  }
}
