import type { AnswerSource, Representation } from '../formats/render.js';
import type { Variant } from '../formats/representations.js';
import type { EndpointName } from '../deskie/endpoints.js';
import { type FreshnessClass, isCustomRange } from '../deskie/periods.js';
import { periodText } from './policy.js';
import type { RedisState } from '../redis/connection.js';

/** What an entry answers, for the admin API: never the credential, never the filters' values. */
export interface EntryLabel {
  readonly endpoint: EndpointName;
  readonly freshness: FreshnessClass;
  /** The period's name (`today`), or a custom range's window as an ISO interval (`2026-11-01T00:00:00+01:00/2026-11-08T00:00:00+01:00`). */
  readonly period: string;
  /** A short id of the credential's partition: the start of its HMAC, which names it without revealing it. */
  readonly partition: string;
}

/** One cached answer: Deskie's body gzipped, and each variant rendered on first request. Times come from policy.ts; a store obeys keepUntilMs. */
export interface CachedAnswer {
  /** The store's key: rendered variants' ETags hash it, and a store re-counts the entry by it. */
  readonly key: string;
  /** The row of Deskie's cache table it was kept by (see entryLabel for the rest of what it answers). */
  readonly freshness: FreshnessClass;
  readonly source: AnswerSource;
  /** The variants rendered so far, in the order first asked for; a store counts one when it is added. */
  readonly variants: Representation[];
  /** `fetchedAtMs` as an HTTP date, for Last-Modified. */
  readonly lastModified: string;
  /** When the body was fetched from Deskie (epoch ms). */
  readonly fetchedAtMs: number;
  /** When the call that fetched it was made (epoch ms): Deskie accepted the credential as of then. */
  readonly askedAtMs: number;
  /** When it stops being fresh (epoch ms): Deskie's lifetime, cut at the next window change. */
  readonly expiresAtMs: number;
  /** When its refresh in phase with Deskie's cache is due, if it is asked for while fresh (epoch ms); +Infinity for never. */
  readonly refreshAtMs: number;
  /** When this answer was last asked for (epoch ms): set when fetched, then by every hit. */
  lastAskedAtMs: number;
  /** Requests answered from this entry while fresh. */
  hits: number;
  /** How long Deskie took to give this answer (real ms to 0.01, all pages of a `page=all`; not the wait for a turn in the budget). */
  readonly upstreamMs: number;
  /** Until when it is kept, for stale-if-error past expiresAtMs (epoch ms). An answer arriving after it is not stored. */
  readonly keepUntilMs: number;
  /** Calls to Deskie the answer took (the pages of a `page=all`). */
  readonly upstreamCalls: number;
}

/** Characters of the partition's HMAC that name it in the admin API: enough to tell a fleet's credentials apart. */
export const PARTITION_ID_LENGTH = 12;

const labels = new WeakMap<CachedAnswer, EntryLabel>();

/** What an entry answers, made when the admin API asks (a miss should not pay for strings only an operator reads). */
export function entryLabel(answer: CachedAnswer): EntryLabel {
  let label = labels.get(answer);
  if (label === undefined) {
    const { source, freshness, key } = answer;
    label = {
      endpoint: source.endpoint,
      freshness,
      period: periodText(freshness, source.fromMs, source.toMs, source.zone),
      partition: key.slice(key.lastIndexOf('#') + 1).slice(0, PARTITION_ID_LENGTH),
    };
    labels.set(answer, label);
  }
  return label;
}

/** Which entries an operator lists or purges: every field given must match. Plain data, so a purge can be published and marked in Redis. */
export interface EntryFilter {
  readonly endpoint?: EndpointName;
  /** A freshness class (a period, or every custom range of that class), or one custom window by its instants. */
  readonly period?: FreshnessClass | { readonly fromMs: number; readonly toMs: number };
  /** The partition id entryLabel gives. */
  readonly partition?: string;
}

export function entryMatches({ endpoint, period, partition }: EntryFilter): (answer: CachedAnswer) => boolean {
  return (answer) => {
    const { source, freshness } = answer;
    if (endpoint !== undefined && source.endpoint !== endpoint) return false;
    if (partition !== undefined && entryLabel(answer).partition !== partition) return false;
    if (period === undefined) return true;
    if (typeof period === 'string') return freshness === period;
    return isCustomRange(freshness) && source.fromMs === period.fromMs && source.toMs === period.toMs;
  };
}

/** A filter's name, the same for every way of writing it: `endpoint|period|partition`, an empty field for any. */
export function filterName({ endpoint, period, partition }: EntryFilter): string {
  const periodName = period === undefined || typeof period === 'string' ? (period ?? '') : `${period.fromMs}/${period.toMs}`;
  return `${endpoint ?? ''}|${periodName}|${partition ?? ''}`;
}

/** The names of every filter that selects `answer` (filterName): a purge by any of them refuses it. */
export function filterNamesSelecting(answer: CachedAnswer): string[] {
  const { source, freshness } = answer;
  const periods: Array<EntryFilter['period']> = [undefined, freshness];
  if (isCustomRange(freshness)) periods.push({ fromMs: source.fromMs, toMs: source.toMs });
  const partitions = [undefined, entryLabel(answer).partition];
  return [undefined, source.endpoint].flatMap((endpoint) =>
    periods.flatMap((period) => partitions.map((partition) => filterName({ endpoint, period, partition }))),
  );
}

export function renderedVariant(answer: CachedAnswer, variant: Variant): Representation | undefined {
  return answer.variants.find((representation) => representation.variant === variant);
}

/** For headers, logs. refreshed: RFC 9211 fwd=stale; collapsed: joined a load; stale: expired, as Deskie failed. */
export type CacheOutcome = 'hit' | 'miss' | 'refreshed' | 'collapsed' | 'stale';

export interface StoreResult {
  readonly answer: CachedAnswer;
  /** `hit`: a shared store's answer stored by another replica, which `reuse` accepted; nothing was loaded. */
  readonly outcome: 'hit' | 'miss' | 'refreshed' | 'collapsed';
  /** False when the answer was not kept: larger than the store allows, already past keepUntilMs, or purged while it loaded. */
  readonly stored: boolean;
  /** A purge made while its load ran selected it: its callers have it, the store does not. */
  readonly purged?: boolean;
}

/** Bookkeeping bytes counted per rendered variant beside its body (its object, Buffer and ETag). */
const VARIANT_OVERHEAD_BYTES = 256;

/** Bytes an answer holds, as stores count them against their bound (the entry's own overhead is the store's to add). */
export function answerBytes(answer: CachedAnswer): number {
  const { source } = answer;
  let bytes = source.gzipped.length + source.contentType.length + answer.lastModified.length;
  for (const representation of answer.variants) {
    // A gzip client's `raw` is the source's own bytes, counted once.
    if (representation.body !== source.gzipped) bytes += representation.body.length;
    bytes += VARIANT_OVERHEAD_BYTES;
  }
  return bytes;
}

/** Fetches an answer from Deskie; throws for anything that must not be stored. */
export type AnswerLoader = () => Promise<CachedAnswer>;

/** Whether an answer another replica stored may answer a fetch instead of a load (the caller's freshness rules). */
export type ReusePolicy = (answer: CachedAnswer) => boolean;

/** Holds answers to keepUntilMs or its bound, one load per key (per cluster if shared); freshness is the caller's. */
export interface AnswerStore {
  /** The answer this process holds for `key` (during a load, the one it will replace), without loading or waiting: a hit's only lookup. */
  get(key: string): CachedAnswer | undefined;
  /** The answer held for `key` anywhere, fresh or not (for stale-if-error); a shared store's may take a round trip. */
  peek(key: string): Promise<CachedAnswer | undefined>;
  /** Loads over the held answer or joins `key`'s load; a failure fails all waiters, old kept. Shared: `reuse` first. */
  fetch(key: string, load: AnswerLoader, reuse?: ReusePolicy): Promise<StoreResult>;
  /** Number of entries held in this process. */
  readonly entries: number;
  /** The answers held (not the loads under way), most recently used first for a memory store. */
  list(): Promise<CachedAnswer[]>;
  /** Drops the answer held for `key`, as purge() does. */
  delete(key: string): Promise<boolean>;
  /**
   * Drops every answer `filter` selects (on every replica, for a shared store) and answers how many. A load under way
   * still answers its callers, but an answer the filter selects is not kept: it may hold the numbers purged.
   */
  purge(filter: EntryFilter): Promise<number>;
  /** Drops every answer of a partition (`#<partition>`: Deskie refused its credential), as purge() does; answers how many. */
  dropEnding(keySuffix: string): Promise<number>;
  /** Entries dropped to stay within the bound since the store was made. */
  readonly evictions: number;
  /** False once the store cannot hold or give answers (closed). */
  readonly usable: boolean;
  /** Counts again the bytes of `answer` after a variant was added, if it is still the one held. */
  resize(answer: CachedAnswer): void;
  /** Bytes held in this process, as the store counts them against its bound. */
  readonly bytes: number;
  /** For /readyz and the metrics: what a shared store's connection is doing; undefined for a memory store. */
  readonly shared?: SharedStoreState;
  close(): Promise<void>;
}

/** A shared store's view of its Redis. */
export interface SharedStoreState {
  readonly redis: RedisState;
  /** Commands that failed or timed out since start. */
  readonly errors: number;
}
