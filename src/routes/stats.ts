import type { FastifyInstance, FastifyReply } from 'fastify';
import type { CachedStats } from '../cache/cached-stats.js';
import type { CacheOutcome, StoreResult } from '../cache/store.js';
import { ENDPOINTS } from '../deskie/endpoints.js';
import { parseStatsQuery, type QueryContext, type RawQuery } from '../deskie/query.js';
import { unauthorized } from '../errors.js';

export const CACHE_NAME = 'deskie-stats-proxy';

/** RFC 9211 parameters for each outcome; `ttl` is appended per response. */
const CACHE_STATUS: Readonly<Record<CacheOutcome, string>> = {
  hit: `${CACHE_NAME}; hit`,
  miss: `${CACHE_NAME}; fwd=miss`,
  stale: `${CACHE_NAME}; fwd=stale`,
  collapsed: `${CACHE_NAME}; fwd=miss; collapsed`,
};

export interface StatsRouteOptions {
  readonly stats: CachedStats;
  readonly clock: () => number;
  readonly queryContext: Omit<QueryContext, 'nowMs'>;
}

const BASIC = /^basic\s+\S/i;

/** GET (and Fastify's automatic HEAD) for Deskie's three statistics endpoints. */
export function statsRoutes(app: FastifyInstance, { stats, clock, queryContext }: StatsRouteOptions): void {
  for (const endpoint of Object.values(ENDPOINTS)) {
    app.get(endpoint.path, async (request, reply) => {
      const authorization = request.headers.authorization;
      if (!authorization || !BASIC.test(authorization)) {
        throw unauthorized('HTTP Basic credentials are required: your Deskie e-mail as user and API key as password');
      }
      const nowMs = clock();
      const query = parseStatsQuery(endpoint, request.query as RawQuery, { ...queryContext, nowMs });
      const result = await stats.answer(query, authorization, nowMs);
      request.cacheOutcome = result.outcome;
      return sendAnswer(reply, result, nowMs);
    });
  }
}

/**
 * Writes a cached answer. `ttl` in Cache-Status is the remaining freshness;
 * Cache-Control's max-age is the whole lifetime and Age the time since the
 * fetch, so a client cache computes the same remaining freshness (RFC 9111
 * §4.2.3) rather than subtracting the age twice.
 */
function sendAnswer(reply: FastifyReply, { answer, outcome, stored }: StoreResult, nowMs: number): FastifyReply {
  const ttl = Math.max(0, Math.floor((answer.expiresAtMs - nowMs) / 1000));
  const age = Math.max(0, Math.floor((nowMs - answer.fetchedAtMs) / 1000));
  const storedParam = (outcome === 'miss' || outcome === 'stale') && stored ? '; stored' : '';
  return reply
    .header('cache-status', `${CACHE_STATUS[outcome]}${storedParam}; ttl=${ttl}`)
    .header('cache-control', `private, max-age=${ttl + age}`)
    .header('age', String(age))
    .type('application/json; charset=utf-8')
    .send(answer.body);
}
