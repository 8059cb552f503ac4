import type { Format, Representation } from '../formats/representations.js';

/**
 * One cached answer from Deskie, with every format already rendered, so a hit
 * writes bytes out without parsing or re-serialising anything.
 */
export interface CachedAnswer {
  readonly representations: Readonly<Record<Format, Representation>>;
  /** `fetchedAtMs` as an HTTP date, for Last-Modified. */
  readonly lastModified: string;
  /** When the body was fetched from Deskie (epoch ms). */
  readonly fetchedAtMs: number;
  /** When it stops being fresh (epoch ms): Deskie's lifetime, cut at the next window change. */
  readonly expiresAtMs: number;
}

/**
 * How a request was answered, as RFC 9211 `Cache-Status` would put it:
 * - `hit`: served from the cache;
 * - `miss`: no entry, fetched from Deskie and stored;
 * - `stale`: the entry had expired, fetched again and stored;
 * - `collapsed`: waited for a fetch another request had already started.
 */
export type CacheOutcome = 'hit' | 'miss' | 'stale' | 'collapsed';

export interface StoreResult {
  readonly answer: CachedAnswer;
  readonly outcome: CacheOutcome;
  /** False when a fetched answer could not be kept (larger than the store allows). */
  readonly stored: boolean;
}

/** Bytes an answer holds, as stores count them against their bound. */
export function answerBytes(answer: CachedAnswer): number {
  let bytes = 0;
  for (const representation of Object.values(answer.representations)) {
    bytes += representation.body.length + representation.etag.length + representation.contentType.length;
  }
  return bytes + answer.lastModified.length;
}

/** Fetches an answer from Deskie; throws for anything that must not be stored. */
export type AnswerLoader = () => Promise<CachedAnswer>;

/**
 * Where answers live. A store returns a fresh entry or calls `load` once,
 * however many requests for the same key arrive while it runs; whatever `load`
 * throws reaches every one of them and nothing is stored.
 */
export interface AnswerStore {
  fetch(key: string, load: AnswerLoader): Promise<StoreResult>;
  /** Number of entries held. */
  readonly entries: number;
  /** Bytes held, as the store counts them against its bound. */
  readonly bytes: number;
  close(): Promise<void>;
}
