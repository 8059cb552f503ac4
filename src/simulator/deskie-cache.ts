// Deskie's own cache (deskie-api-stats.txt, "Caching"): a query is recomputed only once its numbers expire. Computes
// are recorded, so a test or the bench can tell when an answer's numbers were computed and how many calls reused them.
import { createHash } from 'node:crypto';
import { DateTime, Duration, type DurationLike } from 'luxon';
import { queryPart } from './data.js';
import type { Endpoint, SimulatorReply } from './endpoints.js';
import type { SimulatorKnobs } from './knobs.js';
import { PERIOD_RULES, resolveWindow, type Period, type TimeWindow } from './params.js';

/** The table's two custom-range rows: up to one day long (one day included), and longer. */
const SHORT_CUSTOM_LIFETIME: DurationLike = { hours: 1 };
const LONG_CUSTOM_LIFETIME: DurationLike = { days: 1 };
const SECONDS_PER_DAY = 86_400;

/** Queries whose computes are remembered; the least recently asked is forgotten beyond it. */
export const MAX_CACHED_QUERIES = 10_000;
/** Computes kept per query, newest last (a day of `today` is 288). */
export const MAX_COMPUTES_PER_QUERY = 1_000;
/** Foreign calls replayed for one query at one step, so a clock moved years ahead costs a bounded loop. */
const MAX_FOREIGN_CALLS_PER_STEP = 100_000;

export type ComputedBy = 'call' | 'foreignClient';

/** One computation of a query's numbers. */
export interface ComputeRecord {
  /** Epoch ms of the simulator's clock. */
  readonly computedAtMs: number;
  /** When Deskie computes again: computedAtMs + the lifetime (computedAtMs itself with the cache off). */
  readonly expiresAtMs: number;
  /** A call to the simulator, or the other client of the account (the foreignClient knob). */
  readonly by: ComputedBy;
  /** The changeNumbers() generation the numbers come from. */
  readonly generation: number;
  /** Calls answered with these numbers. */
  calls: number;
  /** Of those, calls whose exact request (paging and sorting included) these numbers had already answered. */
  wastedCalls: number;
}

/** What the simulator knows of one query's cache. */
export interface QueryComputes {
  /** Deskie's cache key: endpoint, data parameters sorted, and the window a calendar period means. */
  readonly query: string;
  /** ISO 8601 duration, e.g. PT5M. */
  readonly lifetime: string;
  /** The compute whose numbers a call now would get, or null when it would compute. */
  readonly current: ComputeRecord | null;
  readonly calls: number;
  readonly wastedCalls: number;
  /** Oldest first; the last MAX_COMPUTES_PER_QUERY. */
  readonly computes: readonly ComputeRecord[];
}

export interface CacheReport extends Pick<QueryComputes, 'calls' | 'wastedCalls'> {
  readonly computes: number;
  /** Least recently asked first. */
  readonly queries: readonly QueryComputes[];
}

/** The knobs and state the cache reads at each call. */
export interface CacheSettings extends Readonly<
  Pick<SimulatorKnobs, 'deskieCache' | 'foreignClient' | 'foreignClientSeed' | 'foreignClientIntervalMs'>
> {
  /** When the foreign client started, epoch ms: it has made no call before. */
  readonly foreignSinceMs: number;
  /** The generation in force at an instant, and the data knobs now. */
  numbersAt(atMs: number): ComputeNumbers;
}

/** What a compute's numbers are made of, apart from its time. */
export interface ComputeNumbers {
  readonly generation: number;
  readonly staffStatusChanges: number | null;
}

/** What a render needs from a compute: its time and its numbers. */
export interface Compute extends ComputeNumbers {
  readonly computedAtMs: number;
}

/** Which cached numbers a request reads, and which exact answer it is. */
export interface CacheIdentity {
  readonly key: string;
  readonly answerKey: string;
  readonly lifetime: DurationLike;
}

/**
 * A request's cache identity at `now` (BadRequestError for a window Deskie refuses). Paging and sorting slice the same
 * numbers, so are not in it; a calendar period's holds its window (`today` is new at midnight), a rolling one its name.
 */
export function cacheIdentity({ path, maxRangeMonths }: Endpoint, query: URLSearchParams, now: DateTime): CacheIdentity {
  const window = resolveWindow(query, maxRangeMonths, now);
  const period = query.get('period') as Period | null;
  const anchor = period === null || period === 'last_24_hours' ? '' : `@${window.fromSeconds}`;
  const key = `${path}?${queryPart(query, 'data')}${anchor}`;
  return { key, answerKey: `${key}#${queryPart(query, 'presentation')}`, lifetime: lifetimeOf(period, window) };
}

function lifetimeOf(period: Period | null, window: TimeWindow): DurationLike {
  if (period !== null) return PERIOD_RULES[period].lifetime;
  return window.spanSeconds <= SECONDS_PER_DAY ? SHORT_CUSTOM_LIFETIME : LONG_CUSTOM_LIFETIME;
}

/** Months and years are calendar amounts in the account's zone; shorter lifetimes are lengths. */
function expiryOf(computedAtMs: number, lifetime: DurationLike, zone: string): number {
  const duration = Duration.fromDurationLike(lifetime);
  const calendar = duration.years !== 0 || duration.months !== 0;
  return DateTime.fromMillis(computedAtMs, { zone: calendar ? zone : 'utc' }).plus(duration).toMillis();
}

interface LiveCompute {
  readonly record: ComputeRecord;
  readonly numbers: Compute;
  /** Answer keys these numbers have answered. */
  readonly answered: Set<string>;
}

interface QueryState {
  readonly key: string;
  readonly lifetime: DurationLike;
  current: LiveCompute | null;
  readonly computes: ComputeRecord[];
  calls: number;
  wastedCalls: number;
  /** The foreign client's calls up to this instant have been replayed. */
  foreignReplayedUntilMs: number;
}

export interface Served {
  readonly reply: SimulatorReply;
  readonly compute: ComputeRecord;
  /** True when the numbers were computed before this call. */
  readonly cached: boolean;
}

export class DeskieCache {
  readonly #queries = new Map<string, QueryState>();
  readonly #zone: string;
  readonly #totals = { computes: 0, calls: 0, wastedCalls: 0 };

  constructor(zone: string) {
    this.#zone = zone;
  }

  /** From the numbers in force or computed now (`render` makes the answer); a compute not answered 200 is not kept. */
  serve(identity: CacheIdentity, nowMs: number, settings: CacheSettings, render: (compute: Compute) => SimulatorReply): Served {
    const state = this.#state(identity);
    if (settings.deskieCache && settings.foreignClient) this.#replayForeignCalls(state, nowMs, settings);
    const current = settings.deskieCache ? liveAt(state, nowMs) : null;
    const compute = current ?? this.#newCompute(state, nowMs, 'call', settings);
    const reply = render(compute.numbers);
    if (reply.statusCode !== 200) return { reply, compute: compute.record, cached: current !== null };
    if (current === null) this.#keep(state, compute);
    const wasted = compute.answered.has(identity.answerKey);
    compute.answered.add(identity.answerKey);
    for (const tally of [compute.record, state, this.#totals]) {
      tally.calls += 1;
      if (wasted) tally.wastedCalls += 1;
    }
    return { reply, compute: compute.record, cached: current !== null };
  }

  /** What is known of one query at `nowMs`, the foreign client's calls until then included. */
  query(identity: CacheIdentity, nowMs: number, settings: CacheSettings): QueryComputes {
    const replaying = settings.deskieCache && settings.foreignClient;
    // Looking at a query nobody asked for does not make it remembered, unless the foreign client has asked.
    const state = this.#queries.get(identity.key) ?? (replaying ? this.#state(identity) : newState(identity));
    if (replaying) this.#replayForeignCalls(state, nowMs, settings);
    return describe(state, nowMs, settings);
  }

  /** Totals, and each remembered query as it was last seen. */
  report(nowMs: number, settings: CacheSettings): CacheReport {
    const queries = [...this.#queries.values()].map((state) => describe(state, nowMs, settings));
    return { ...this.#totals, queries };
  }

  /** The query's state, made the most recently asked; the least recently asked goes beyond MAX_CACHED_QUERIES. */
  #state(identity: CacheIdentity): QueryState {
    const state = this.#queries.get(identity.key) ?? newState(identity);
    this.#queries.delete(identity.key);
    this.#queries.set(identity.key, state);
    if (this.#queries.size > MAX_CACHED_QUERIES) this.#queries.delete(this.#queries.keys().next().value as string);
    return state;
  }

  #newCompute(state: QueryState, atMs: number, by: ComputedBy, settings: CacheSettings): LiveCompute {
    const numbers = { ...settings.numbersAt(atMs), computedAtMs: atMs };
    const expiresAtMs = settings.deskieCache ? expiryOf(atMs, state.lifetime, this.#zone) : atMs;
    const record: ComputeRecord = { computedAtMs: atMs, expiresAtMs, by, generation: numbers.generation, calls: 0, wastedCalls: 0 };
    return { record, numbers, answered: new Set() };
  }

  #keep(state: QueryState, compute: LiveCompute): void {
    state.current = compute;
    state.computes.push(compute.record);
    if (state.computes.length > MAX_COMPUTES_PER_QUERY) state.computes.shift();
    this.#totals.computes += 1;
  }

  // The other client calls each query once per foreignClientIntervalMs, at a moment drawn from the seed, the query and
  // the interval; a call that finds the cache expired recomputes. Replayed lazily, up to `nowMs`.
  #replayForeignCalls(state: QueryState, nowMs: number, settings: CacheSettings): void {
    let afterMs = Math.max(state.foreignReplayedUntilMs, settings.foreignSinceMs);
    for (let replayed = 0; replayed < MAX_FOREIGN_CALLS_PER_STEP; replayed++) {
      const callAtMs = foreignCallAfter(state.key, afterMs, settings.foreignClientSeed, settings.foreignClientIntervalMs);
      if (callAtMs > nowMs) break;
      const live = liveAt(state, callAtMs);
      if (live === null) {
        this.#keep(state, this.#newCompute(state, callAtMs, 'foreignClient', settings));
        afterMs = callAtMs;
      } else {
        // Its calls until the cached numbers expire change nothing.
        afterMs = Math.max(callAtMs, live.record.expiresAtMs - 1);
      }
    }
    state.foreignReplayedUntilMs = Math.max(state.foreignReplayedUntilMs, nowMs);
  }
}

function newState(identity: CacheIdentity): QueryState {
  return { key: identity.key, lifetime: identity.lifetime, current: null, computes: [], calls: 0, wastedCalls: 0, foreignReplayedUntilMs: -Infinity };
}

/** The compute in force at `atMs`, or null when a call would compute (a clock set back before it included). */
function liveAt({ current }: QueryState, atMs: number): LiveCompute | null {
  if (current === null) return null;
  return current.record.computedAtMs <= atMs && atMs < current.record.expiresAtMs ? current : null;
}

/** The query as a call at `nowMs` would find it. */
function describe(state: QueryState, nowMs: number, settings: CacheSettings): QueryComputes {
  const current = settings.deskieCache ? liveAt(state, nowMs) : null;
  return {
    query: state.key,
    lifetime: Duration.fromDurationLike(state.lifetime).toISO() ?? '',
    current: current === null ? null : { ...current.record },
    calls: state.calls,
    wastedCalls: state.wastedCalls,
    computes: state.computes.map((record) => ({ ...record })),
  };
}

/** The foreign client's first call to `key` after `afterMs`: one call in each interval, at a seeded moment within it. */
export function foreignCallAfter(key: string, afterMs: number, seed: number, intervalMs: number): number {
  const slot = Math.floor(afterMs / intervalMs);
  for (let next = slot; ; next++) {
    const callAtMs = next * intervalMs + Math.floor(unitFraction(`${seed}:${next}:${key}`) * intervalMs);
    if (callAtMs > afterMs) return callAtMs;
  }
}

/** A number in [0, 1) drawn from `text`. */
function unitFraction(text: string): number {
  return createHash('sha256').update(text).digest().readUInt32BE(0) / 0x1_0000_0000;
}
