import { LRUCache } from 'lru-cache';
import { type AnswerLoader, type AnswerStore, answerBytes, type CachedAnswer, type StoreResult } from './store.js';

/**
 * Bookkeeping bytes counted per entry besides its bodies and key: the answer,
 * its source and variant list, its times as heap numbers, the allocation its
 * bytes share (with the native store behind it) and lru-cache's slots.
 * Measured: 20,000 leaderboard entries held 1.2 kB of heap each beside their
 * bytes, and about 0.3 kB more of process memory.
 */
const ENTRY_OVERHEAD_BYTES = 1024;

export interface MemoryStoreOptions {
  readonly maxBytes: number;
  /** Epoch milliseconds; injected so tests move time instead of sleeping. */
  readonly clock: () => number;
  /**
   * Until when an answer is held (epoch ms): its keepUntilMs by default. In
   * front of a shared store, its expiresAtMs: a replica keeps only fresh
   * copies, and asks the shared store for anything older.
   */
  readonly holdUntil?: (answer: CachedAnswer) => number;
}

const keptUntil = (answer: CachedAnswer): number => answer.keepUntilMs;

const OUTCOME_BY_FETCH_STATUS: Readonly<Record<string, StoreResult['outcome']>> = {
  miss: 'miss',
  refresh: 'refreshed',
  stale: 'refreshed',
  inflight: 'collapsed',
};

/**
 * An in-process store bounded in bytes. lru-cache's `fetch()` does the hard
 * parts: concurrent loads for one key share a single call, a rejected load is
 * delivered to every waiter and leaves the previous entry in place, and each
 * entry carries its own TTL, which here is how long it is kept (freshness
 * plus the stale-if-error window), not how long it is fresh.
 */
export class MemoryStore implements AnswerStore {
  readonly #lru: LRUCache<string, CachedAnswer, AnswerLoader>;
  /** Answers lru-cache was told not to keep; checked only when a load ends. */
  readonly #unstored = new WeakSet<CachedAnswer>();
  readonly #clock: () => number;
  readonly #holdUntil: (answer: CachedAnswer) => number;
  /** Callers of fetch() under way, by key: an entry is not re-counted while a load for its key runs. */
  readonly #loading = new Map<string, number>();
  /** Keys whose answer grew while a load ran: re-counted when the last caller is done. */
  readonly #grown = new Set<string>();
  #evictions = 0;
  #closed = false;

  constructor({ maxBytes, clock, holdUntil = keptUntil }: MemoryStoreOptions) {
    this.#clock = clock;
    this.#holdUntil = holdUntil;
    this.#lru = new LRUCache<string, CachedAnswer, AnswerLoader>({
      maxSize: maxBytes,
      sizeCalculation: (answer, key) => {
        const size = answerBytes(answer) + key.length + ENTRY_OVERHEAD_BYTES;
        // An answer already past its keeping time (one fetched across a
        // window change) is sized past the bound: lru-cache then hands it to
        // its callers and drops it, the same way as one too large to hold.
        if (size > maxBytes || holdUntil(answer) <= clock()) {
          this.#unstored.add(answer);
          return maxBytes + 1;
        }
        return size;
      },
      perf: { now: clock },
      dispose: (_answer, _key, reason) => {
        if (reason === 'evict') this.#evictions += 1;
      },
      // lru-cache otherwise reuses one clock reading for 1 ms, which would hide
      // a jump of the injected clock; reading the clock per check is cheap.
      ttlResolution: 0,
      allowStale: false,
      // A failed load keeps the entry it would have replaced: it is what
      // stale-if-error answers with.
      noDeleteOnFetchRejection: true,
      // A fetch whose placeholder is evicted (a full cache) or cleared keeps
      // going: its callers still get Deskie's answer, which was paid for.
      ignoreFetchAbort: true,
      fetchMethod: async (_key, _previous, { context: load, options }) => {
        const answer = await load();
        // lru-cache counts an entry gone once more than `ttl` ms have passed,
        // so one ms less drops it exactly at keepUntilMs.
        options.ttl = Math.max(1, holdUntil(answer) - clock() - 1);
        return answer;
      },
    });
  }

  get(key: string): CachedAnswer | undefined {
    return this.#lru.get(key);
  }

  async peek(key: string): Promise<CachedAnswer | undefined> {
    return this.#lru.get(key);
  }

  async fetch(key: string, load: AnswerLoader): Promise<StoreResult> {
    const status: LRUCache.Status<string, CachedAnswer, AnswerLoader> = {};
    this.#loading.set(key, (this.#loading.get(key) ?? 0) + 1);
    try {
      // forceRefresh: the caller decided the held answer is not fresh; a load
      // already under way for the key is joined rather than repeated.
      const answer = await this.#lru.fetch(key, { context: load, status, forceRefresh: true });
      if (answer === undefined) throw new Error(`cache fetch for ${key} returned nothing`);
      const outcome = OUTCOME_BY_FETCH_STATUS[status.fetch ?? 'miss'] ?? 'miss';
      return { answer, outcome, stored: !this.#unstored.has(answer) };
    } finally {
      const callers = (this.#loading.get(key) ?? 1) - 1;
      if (callers > 0) this.#loading.set(key, callers);
      else {
        this.#loading.delete(key);
        const held = this.#grown.delete(key) ? this.#lru.peek(key) : undefined;
        if (held !== undefined) this.resize(held);
      }
    }
  }

  /**
   * lru-cache sizes an entry when it is set, and setting the same value again
   * does not size it anew: the entry is set afresh, with the time it had
   * left to be kept. Not while a load for the key runs: setting over it
   * would abort the load; the entry is re-counted when the load is done.
   */
  resize(answer: CachedAnswer): void {
    const { key } = answer;
    if (this.#loading.has(key)) {
      this.#grown.add(key);
      return;
    }
    if (this.#lru.peek(key) !== answer) return;
    this.#lru.delete(key);
    const ttl = this.#holdUntil(answer) - this.#clock() - 1;
    if (ttl > 0) this.#lru.set(key, answer, { ttl });
  }

  get entries(): number {
    return this.#lru.size;
  }

  get bytes(): number {
    return this.#lru.calculatedSize;
  }

  async list(): Promise<CachedAnswer[]> {
    // forEach, not values(): values() skips an entry while a load for its key
    // runs (a refresh), and forEach gives the answer still held then.
    const held: CachedAnswer[] = [];
    this.#lru.forEach((answer) => held.push(answer));
    return held;
  }

  async delete(key: string): Promise<boolean> {
    return this.deleteHeld(key);
  }

  async dropEnding(keySuffix: string): Promise<number> {
    // A load under way here is refused by its caller (CachedStats numbers its refusals).
    const keys = this.keys().filter((key) => key.endsWith(keySuffix));
    for (const key of keys) this.deleteHeld(key);
    return keys.length;
  }

  /** delete(), answered at once: a shared store drops its own copy with it. */
  deleteHeld(key: string): boolean {
    // A load under way is left to finish for its callers; with the entry
    // gone, lru-cache neither keeps what it brings nor restores the old
    // answer if it fails (ignoreFetchAbort, noDeleteOnFetchRejection).
    this.#grown.delete(key);
    return this.#lru.delete(key);
  }

  get evictions(): number {
    return this.#evictions;
  }

  get usable(): boolean {
    return !this.#closed;
  }

  /** The keys of the answers held, at once (those being reloaded too: see list()). */
  keys(): string[] {
    const keys: string[] = [];
    this.#lru.forEach((_answer, key) => keys.push(key));
    return keys;
  }

  /** Drops every answer held (loads under way still answer their callers and are not kept). */
  clear(): void {
    this.#grown.clear();
    this.#lru.clear();
  }

  async close(): Promise<void> {
    this.#closed = true;
    this.#lru.clear();
  }
}
