import { DateTime, type DurationLike } from 'luxon';
import type { EndpointName } from './endpoints.js';

type CalendarUnit = 'day' | 'week' | 'month' | 'year';

interface PeriodRule {
  // From the start of the unit `first` back to the end of unit `last` back; null: rolling. Deskie leaves open whether
  // `last_N_days` includes today; read as the N days ending today (either changes at midnight, all the cache needs).
  readonly span: readonly [unit: CalendarUnit, first: number, last: number] | null;
  /** Deskie's own cache lifetime (deskie-api-stats.txt, "Caching"). */
  readonly lifetime: DurationLike;
}

/** The 19 values of Deskie's `period` parameter (deskie-api-notes.md). */
const PERIOD_RULES = {
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

export const isPeriod = (value: string): value is Period => Object.hasOwn(PERIOD_RULES, value);

/** Custom ranges have two rows in Deskie's table: up to one day long, and longer. */
export const CUSTOM_RANGE_CLASSES = ['custom_up_to_1_day', 'custom_longer'] as const;
export type CustomRangeClass = (typeof CUSTOM_RANGE_CLASSES)[number];
export type FreshnessClass = Period | CustomRangeClass;
/** Every row of Deskie's cache table: the periods, then the custom-range classes. */
export const FRESHNESS_CLASSES: readonly FreshnessClass[] = [...PERIODS, ...CUSTOM_RANGE_CLASSES];
const CUSTOM_RANGE_SET: ReadonlySet<string> = new Set(CUSTOM_RANGE_CLASSES);
export const isCustomRange = (freshness: string): freshness is CustomRangeClass => CUSTOM_RANGE_SET.has(freshness);

/** Deskie's own cache lifetime for each period and custom-range class. */
export const DESKIE_CACHE_LIFETIME = Object.fromEntries([
  ...PERIODS.map((period) => [period, PERIOD_RULES[period].lifetime] as const),
  ['custom_up_to_1_day', { hours: 1 }],
  ['custom_longer', { days: 1 }],
]) as Readonly<Record<FreshnessClass, DurationLike>>;

/** How long an answer stays fresh, per endpoint and period or custom-range class. */
export type Lifetimes = Readonly<Record<EndpointName, Readonly<Record<FreshnessClass, DurationLike>>>>;

/** Deskie states no table for staff statuses; they keep the others' until an operator sets theirs. */
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
  /** When the period starts to mean another window; null for the rolling `last_24_hours`. */
  readonly changesAt: DateTime | null;
}

/** The absolute window a period means at `now` in the account zone (a DST day is 23 or 25 hours). */
export function periodWindow(period: Period, nowMs: number, zone: string, weekStart: Weekday): PeriodWindow {
  const now = DateTime.fromMillis(nowMs, { zone });
  const span: PeriodRule['span'] = PERIOD_RULES[period].span;
  if (span === null) return { from: now.minus({ hours: 24 }), to: now, changesAt: null };
  // Add days, then startOf('day'): a day DST starts at 01:00 (America/Santiago, 2026-09-06) must not pass it on.
  const day = (offset: number) => now.plus({ days: offset }).startOf('day');
  const weekOffset = (now.weekday - weekStart + 7) % 7;
  const unitsOn = {
    day,
    week: (offset: number) => day(offset * 7 - weekOffset),
    month: (offset: number) => now.plus({ months: offset }).startOf('month'),
    year: (offset: number) => now.plus({ years: offset }).startOf('year'),
  }[span[0]];
  return { from: unitsOn(-span[1]), to: unitsOn(1 - span[2]), changesAt: unitsOn(1) };
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
