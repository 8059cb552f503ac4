import { LRUCache } from 'lru-cache';
import { type AnswerLoader, type AnswerStore, answerBytes, type CachedAnswer, type EntryFilter, entryMatches, type StoreResult } from './store.js';

/** Bookkeeping bytes counted per entry beside its bodies and key: its objects, buffer and lru-cache's slots. */
const ENTRY_OVERHEAD_BYTES = 1024;

export interface MemoryStoreOptions {
  readonly maxBytes: number;
  readonly clock: () => number;
  /** Until when an answer is held (epoch ms): keepUntilMs by default; expiresAtMs in front of a shared store. */
  readonly holdUntil?: (answer: CachedAnswer) => number;
}

/** A load under way: when it began, and the purges made since that its answer must not be kept for. */
interface Loading {
  readonly startedAtMs: number;
  readonly purges: Array<(answer: CachedAnswer) => boolean>;
}

const OUTCOME_BY_FETCH_STATUS: Readonly<Record<string, StoreResult['outcome']>> = {
  miss: 'miss',
  refresh: 'refreshed',
  stale: 'refreshed',
  inflight: 'collapsed',
};

/** Byte-bounded. lru-cache's fetch() shares a load (a failure rejects all, old entry stays); TTL: kept, not fresh. */
export class MemoryStore implements AnswerStore {
  readonly #lru: LRUCache<string, CachedAnswer, AnswerLoader>;
  /** Answers lru-cache took in (sized within the bound): a load's answer is `stored` only if it is one. */
  readonly #kept = new WeakSet<CachedAnswer>();
  /** Answers a purge selected while their load ran: handed to their callers, never kept. */
  readonly #purged = new WeakSet<CachedAnswer>();
  /** Loads under way, by key; a purge marks those it selects. */
  readonly #loads = new Map<string, Loading>();
  readonly #clock: () => number;
  readonly #holdUntil: (answer: CachedAnswer) => number;
  /** Callers of fetch() under way, by key: an entry is not re-counted while a load for its key runs. */
  readonly #loading = new Map<string, number>();
  /** Keys whose answer grew while a load ran: re-counted when the last caller is done. */
  readonly #grown = new Set<string>();
  #evictions = 0;
  #closed = false;

  constructor({ maxBytes, clock, holdUntil = (answer) => answer.keepUntilMs }: MemoryStoreOptions) {
    this.#clock = clock;
    this.#holdUntil = holdUntil;
    this.#lru = new LRUCache<string, CachedAnswer, AnswerLoader>({
      maxSize: maxBytes,
      sizeCalculation: (answer, key) => {
        const size = answerBytes(answer) + key.length + ENTRY_OVERHEAD_BYTES;
        // Too large, past its keeping time (fetched across a window change) or purged: sized past the bound, so lru-cache hands it out and drops it.
        if (size > maxBytes || holdUntil(answer) <= clock() || this.#purged.has(answer)) return maxBytes + 1;
        this.#kept.add(answer);
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
      fetchMethod: async (key, _previous, { context: load, options }) => {
        const loading: Loading = { startedAtMs: clock(), purges: [] };
        // A load begun after its key was deleted mid-load replaces the earlier one here; lru-cache keeps nothing the earlier brings.
        this.#loads.set(key, loading);
        try {
          const answer = await load();
          if (loading.purges.some((selects) => selects(answer))) this.#purged.add(answer);
          // lru-cache drops an entry once more than `ttl` ms have passed: one ms less ends it at keepUntilMs.
          options.ttl = Math.max(1, holdUntil(answer) - clock() - 1);
          return answer;
        } finally {
          if (this.#loads.get(key) === loading) this.#loads.delete(key);
        }
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
      // Not kept when its key was deleted during the load either: lru-cache then sets nothing.
      return { answer, outcome, stored: this.#kept.has(answer), purged: this.#purged.has(answer) };
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

  /** lru-cache sizes an entry only on set, so it is set afresh with the time it had left; after a load under way (a set would abort it). */
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
    return this.#held().map(([, answer]) => answer);
  }

  async delete(key: string): Promise<boolean> {
    return this.deleteHeld(key);
  }

  async purge(filter: EntryFilter): Promise<number> {
    return this.purgeHeld(entryMatches(filter)).length;
  }

  async dropEnding(keySuffix: string): Promise<number> {
    // A load under way here is refused by its caller as well (CachedStats numbers its refusals).
    return this.purgeHeld((answer) => answer.key.endsWith(keySuffix)).length;
  }

  /** delete(), at once (a shared store drops its copy with it); a load of the key begun by `atMs` is not kept. */
  deleteHeld(key: string, atMs = this.#clock()): boolean {
    const loading = this.#loads.get(key);
    if (loading !== undefined && loading.startedAtMs <= atMs) loading.purges.push(() => true);
    this.#grown.delete(key);
    return this.#lru.delete(key);
  }

  /** purge(), at once, for loads begun by `atMs`; answers the keys dropped. */
  purgeHeld(selects: (answer: CachedAnswer) => boolean, atMs = this.#clock()): string[] {
    for (const loading of this.#loads.values()) if (loading.startedAtMs <= atMs) loading.purges.push(selects);
    const keys = this.#held().filter(([, answer]) => selects(answer)).map(([key]) => key);
    for (const key of keys) {
      this.#grown.delete(key);
      this.#lru.delete(key);
    }
    return keys;
  }

  get evictions(): number {
    return this.#evictions;
  }

  get usable(): boolean {
    return !this.#closed;
  }

  /** Every key and answer held: by forEach, as entries() skips an entry while a load for its key runs. */
  #held(): Array<[string, CachedAnswer]> {
    const held: Array<[string, CachedAnswer]> = [];
    this.#lru.forEach((answer, key) => held.push([key, answer]));
    return held;
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
