import type { DurationLike } from 'luxon';
import type { FastifyBaseLogger } from 'fastify';
import type { FreshnessClass } from '../deskie/periods.js';
import type { StatsQuery } from '../deskie/query.js';
import { mapUpstreamFailure, UpstreamAnswer, upstreamInvalid } from '../errors.js';
import type { DeskieClient } from '../upstream/client.js';
import { cacheKey, credentialPartition, freshUntil } from './policy.js';
import type { AnswerStore, CachedAnswer, StoreResult } from './store.js';

export interface CachedStatsOptions {
  readonly store: AnswerStore;
  readonly client: DeskieClient;
  readonly clock: () => number;
  readonly lifetimes: Readonly<Record<FreshnessClass, DurationLike>>;
  readonly cacheKeySecret: Buffer;
  readonly log: FastifyBaseLogger;
}

/**
 * Answers a validated statistics query from the store, or from Deskie once
 * per key however many clients ask at the same moment. Only a 200 whose body
 * is JSON is stored; every other answer reaches its callers and is dropped.
 */
export class CachedStats {
  readonly #options: CachedStatsOptions;

  constructor(options: CachedStatsOptions) {
    this.#options = options;
  }

  answer(query: StatsQuery, authorization: string, nowMs: number): Promise<StoreResult> {
    const key = cacheKey(query, credentialPartition(authorization, this.#options.cacheKeySecret));
    return this.#options.store.fetch(key, () => this.#load(query, authorization, nowMs));
  }

  async #load(query: StatsQuery, authorization: string, nowMs: number): Promise<CachedAnswer> {
    const { client, clock, lifetimes, log } = this.#options;
    const { path } = query.endpoint;
    const startedMs = clock();
    let response;
    try {
      response = await client.get(path, query.upstreamQuery, authorization);
    } catch (error) {
      const failure = mapUpstreamFailure(error);
      log.warn({ path, query: query.upstreamQuery, err: error }, 'Deskie request failed');
      throw failure;
    }
    const upstreamMs = clock() - startedMs;
    log.info(
      { path, query: query.upstreamQuery, status: response.statusCode, upstreamMs, callsLeft: response.callsLeft },
      'fetched from Deskie',
    );
    if (response.statusCode !== 200) {
      throw new UpstreamAnswer(response.statusCode, response.body, response.contentType, response.retryAfter);
    }
    try {
      JSON.parse(response.body.toString('utf8'));
    } catch {
      throw upstreamInvalid('Deskie answered 200 with a body that is not JSON');
    }
    return { body: response.body, fetchedAtMs: clock(), expiresAtMs: freshUntil(query, nowMs, lifetimes) };
  }
}
