import { LRUCache } from 'lru-cache';
import { type AnswerLoader, type AnswerStore, answerBytes, type CacheOutcome, type CachedAnswer, type StoreResult } from './store.js';

/** Bookkeeping bytes counted per entry besides its body and key (object headers, maps, timers). */
const ENTRY_OVERHEAD_BYTES = 512;

export interface MemoryStoreOptions {
  readonly maxBytes: number;
  /** Epoch milliseconds; injected so tests move time instead of sleeping. */
  readonly clock: () => number;
}

const OUTCOME_BY_FETCH_STATUS: Readonly<Record<string, CacheOutcome>> = {
  hit: 'hit',
  miss: 'miss',
  stale: 'stale',
  inflight: 'collapsed',
};

/**
 * An in-process store bounded in bytes. lru-cache's `fetch()` does the hard
 * parts: concurrent misses for one key share a single load, a rejected load is
 * delivered to every waiter and leaves nothing behind, and each entry carries
 * its own TTL.
 */
export class MemoryStore implements AnswerStore {
  readonly #lru: LRUCache<string, CachedAnswer, AnswerLoader>;

  constructor({ maxBytes, clock }: MemoryStoreOptions) {
    this.#lru = new LRUCache<string, CachedAnswer, AnswerLoader>({
      maxSize: maxBytes,
      sizeCalculation: (answer, key) => answerBytes(answer) + key.length * 2 + ENTRY_OVERHEAD_BYTES,
      perf: { now: clock },
      // lru-cache otherwise reuses one clock reading for 1 ms, which would hide
      // a jump of the injected clock; reading the clock per check is cheap.
      ttlResolution: 0,
      allowStale: false,
      // A fetch whose placeholder is evicted (a full cache) or cleared keeps
      // going: its callers still get Deskie's answer, which was paid for.
      ignoreFetchAbort: true,
      fetchMethod: async (_key, _stale, { context: load, options }) => {
        const answer = await load();
        // lru-cache counts an entry stale once more than `ttl` ms have passed,
        // so one ms less makes it stale exactly at expiresAtMs. A TTL of 0 would
        // mean "forever": an answer that expired while it was being fetched is
        // kept for 1 ms and served to the requests that waited for it.
        options.ttl = Math.max(1, answer.expiresAtMs - clock() - 1);
        return answer;
      },
    });
  }

  async fetch(key: string, load: AnswerLoader): Promise<StoreResult> {
    const status: LRUCache.Status<string, CachedAnswer, AnswerLoader> = {};
    const answer = await this.#lru.fetch(key, { context: load, status });
    if (answer === undefined) throw new Error(`cache fetch for ${key} returned nothing`);
    const outcome = OUTCOME_BY_FETCH_STATUS[status.fetch ?? 'miss'] ?? 'miss';
    const stored = outcome === 'hit' || outcome === 'collapsed' || status.set === 'add' || status.set === 'replace';
    return { answer, outcome, stored };
  }

  get entries(): number {
    return this.#lru.size;
  }

  get bytes(): number {
    return this.#lru.calculatedSize;
  }

  async close(): Promise<void> {
    this.#lru.clear();
  }
}
