import { LRUCache } from 'lru-cache';
import { type AnswerLoader, type AnswerStore, answerBytes, type CachedAnswer, type StoreResult } from './store.js';

/** Bookkeeping bytes counted per entry beside its bodies and key: its objects, buffer and lru-cache's slots. */
const ENTRY_OVERHEAD_BYTES = 1024;

export interface MemoryStoreOptions {
  readonly maxBytes: number;
  /** Epoch milliseconds; injected so tests move time instead of sleeping. */
  readonly clock: () => number;
  /** Until when an answer is held (epoch ms): keepUntilMs by default; expiresAtMs in front of a shared store. */
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
 * An in-process store bounded in bytes. lru-cache's `fetch()` shares one load
 * among concurrent callers, delivers a rejection to every waiter while keeping
 * the previous entry, and gives each entry its own TTL: how long it is kept,
 * not how long it is fresh.
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
        // Too large, or already past its keeping time (fetched across a window
        // change): sized past the bound, so lru-cache hands it out and drops it.
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
      // lru-cache otherwise reuses one clock reading for 1 ms, hiding a jump of the injected clock.
      ttlResolution: 0,
      allowStale: false,
      // A failed load keeps the entry it would have replaced, for stale-if-error.
      noDeleteOnFetchRejection: true,
      // A fetch whose placeholder is evicted or cleared still answers its callers.
      ignoreFetchAbort: true,
      fetchMethod: async (_key, _previous, { context: load, options }) => {
        const answer = await load();
        // lru-cache drops an entry once more than `ttl` ms have passed: one ms less ends it at keepUntilMs.
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
      // forceRefresh: the caller decided the held answer is not fresh; a load under way is still joined.
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
   * lru-cache sizes an entry only when a new value is set, so the entry is set
   * afresh with the time it had left. While a load for the key runs (a set
   * would abort it), it is re-counted when the load is done.
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
    // forEach, not values(): values() skips an entry while a load for its key runs.
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
    // A load under way still answers its callers; lru-cache keeps nothing it brings.
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
