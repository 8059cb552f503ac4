import { LRUCache } from 'lru-cache';
import type { DurationLike } from 'luxon';
import type { FastifyBaseLogger } from 'fastify';
import type { FreshnessClass } from '../deskie/periods.js';
import type { StatsQuery } from '../deskie/query.js';
import { mapUpstreamFailure, pagesTimedOut, UpstreamAnswer, upstreamInvalid } from '../errors.js';
import { renderRepresentations } from '../formats/representations.js';
import { type DeskiePage, fetchAllPages } from '../upstream/all-pages.js';
import type { DeskieClient } from '../upstream/client.js';
import { cacheKey, credentialPartition, freshUntil } from './policy.js';
import type { AnswerStore, CachedAnswer, StoreResult } from './store.js';

/** Credentials whose partition is remembered; a dashboard fleet uses a handful. */
const REMEMBERED_CREDENTIALS = 1024;

export interface CachedStatsOptions {
  readonly store: AnswerStore;
  readonly client: DeskieClient;
  readonly clock: () => number;
  readonly lifetimes: Readonly<Record<FreshnessClass, DurationLike>>;
  readonly cacheKeySecret: Buffer;
  /** Bound on the upstream pages one `page=all` request may fetch. */
  readonly maxPages: number;
  /** Bound on one whole `page=all` merge, in real milliseconds: no page starts after it. */
  readonly pagesTimeoutMs: number;
  readonly log: FastifyBaseLogger;
}

/**
 * Answers a validated statistics query from the store, or from Deskie once
 * per key however many clients ask at the same moment. Only a 200 whose body
 * is JSON is stored; every other answer reaches its callers and is dropped.
 */
export class CachedStats {
  readonly #options: CachedStatsOptions;
  /** Authorization value -> its HMAC partition: the HMAC was the costliest step of a hit. */
  readonly #partitions: LRUCache<string, string>;

  constructor(options: CachedStatsOptions) {
    this.#options = options;
    this.#partitions = new LRUCache({
      max: REMEMBERED_CREDENTIALS,
      memoMethod: (authorization) => credentialPartition(authorization, options.cacheKeySecret),
    });
  }

  answer(query: StatsQuery, authorization: string, nowMs: number): Promise<StoreResult> {
    const key = cacheKey(query, this.#partitions.memo(authorization));
    return this.#options.store.fetch(key, () => this.#load(key, query, authorization, nowMs));
  }

  async #load(key: string, query: StatsQuery, authorization: string, nowMs: number): Promise<CachedAnswer> {
    const { clock, lifetimes, maxPages, pagesTimeoutMs } = this.#options;
    const fetchPage = (upstreamQuery: string) => this.#fetchPage(query.endpoint.path, upstreamQuery, authorization);
    let page: DeskiePage;
    if (query.allPages) {
      // Each page has the upstream timeout; the merge as a whole has its own,
      // measured in real time (the injected clock is for freshness).
      const deadline = performance.now() + pagesTimeoutMs;
      const fetchBeforeDeadline = (upstreamQuery: string) => {
        if (performance.now() > deadline) throw pagesTimedOut(pagesTimeoutMs);
        return fetchPage(upstreamQuery);
      };
      page = await fetchAllPages(query.endpoint, query.pageBaseQuery, maxPages, fetchBeforeDeadline);
    } else {
      page = await fetchPage(query.upstreamQuery);
    }
    const fetchedAtMs = clock();
    const { window } = query;
    return {
      representations: renderRepresentations(
        query.endpoint.name,
        page.body,
        page.contentType,
        page.parsed,
        { from: window.from.toISO() ?? '', to: window.to.toISO() ?? '', timezone: window.from.zoneName ?? 'UTC' },
        key,
      ),
      lastModified: new Date(fetchedAtMs).toUTCString(),
      fetchedAtMs,
      expiresAtMs: freshUntil(query, nowMs, lifetimes),
    };
  }

  /** One GET to Deskie; anything but a 200 with a JSON body is thrown. */
  async #fetchPage(path: string, upstreamQuery: string, authorization: string): Promise<DeskiePage> {
    const { client, clock, log } = this.#options;
    const startedMs = clock();
    let response;
    try {
      response = await client.get(path, upstreamQuery, authorization);
    } catch (error) {
      log.warn({ path, query: upstreamQuery, err: error }, 'Deskie request failed');
      throw mapUpstreamFailure(error);
    }
    log.info(
      { path, query: upstreamQuery, status: response.statusCode, upstreamMs: clock() - startedMs, callsLeft: response.callsLeft },
      'fetched from Deskie',
    );
    if (response.statusCode >= 300 && response.statusCode < 400) {
      // Passed through, a redirect would send the client to Deskie itself.
      throw upstreamInvalid(
        `Deskie answered ${response.statusCode} redirecting to ${response.location ?? 'nowhere'}; set DESKIE_URL to the account's address`,
      );
    }
    if (response.statusCode !== 200) {
      throw new UpstreamAnswer(response.statusCode, response.body, response.contentType, response.retryAfter);
    }
    try {
      return { body: response.body, contentType: response.contentType, parsed: JSON.parse(response.body.toString('utf8')) };
    } catch {
      throw upstreamInvalid('Deskie answered 200 with a body that is not JSON');
    }
  }
}
