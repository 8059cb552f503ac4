import type { ProxyError, UpstreamAnswer } from '../http/errors.js';
import type { StatsAnswer } from './cached-stats.js';
import type { CacheOutcome } from './store.js';

/** This cache's name in RFC 9211 Cache-Status. */
export const CACHE_NAME = 'deskie-stats-proxy';

/** RFC 9211 parameters for each outcome; the rest is appended per response. */
const OUTCOME_PARAMETERS: Readonly<Record<CacheOutcome, string>> = {
  hit: `${CACHE_NAME}; hit`,
  miss: `${CACHE_NAME}; fwd=miss`,
  refreshed: `${CACHE_NAME}; fwd=stale`,
  collapsed: `${CACHE_NAME}; fwd=miss; collapsed`,
  stale: `${CACHE_NAME}; fwd=stale`,
};

const COLLAPSED_ONTO_REFETCH = `${CACHE_NAME}; fwd=stale; collapsed`;
/** An expired entry answered at once while its refresh is due or under way (RFC 5861 stale-while-revalidate). */
const REVALIDATING = `${CACHE_NAME}; fwd=stale; revalidating`;
/** A fresh entry whose credential was due its recheck with Deskie: the request's terms did not let it answer (RFC 9211 §2.2). */
const RECHECKED = `${CACHE_NAME}; fwd=request`;
const COLLAPSED_ONTO_RECHECK = `${CACHE_NAME}; fwd=request; collapsed`;

/** How an answer was served, as Cache-Status tells it. */
export type ServedAnswer = Omit<StatsAnswer, 'answer'>;

/** Cache-Status of a 200: `ttl` is the remaining freshness, negative for a stale answer, which also names Deskie's failure. */
export function answerCacheStatus({ outcome, stored, failure, replacesExpired, rechecked, revalidating }: ServedAnswer, ttlSeconds: number): string {
  if (revalidating) return `${REVALIDATING}; ttl=${ttlSeconds}`;
  let value = rechecked
    ? outcome === 'collapsed'
      ? COLLAPSED_ONTO_RECHECK
      : RECHECKED
    : replacesExpired
      ? COLLAPSED_ONTO_REFETCH
      : OUTCOME_PARAMETERS[outcome];
  if (failure !== undefined) {
    if (failure.status !== undefined) value += `; fwd-status=${failure.status}`;
    value += `; detail=${failure.detail}`;
  } else if (stored && (outcome === 'miss' || outcome === 'refreshed')) {
    value += '; stored';
  }
  return `${value}; ttl=${ttlSeconds}`;
}

/** Cache-Status of an error answer that involved Deskie; undefined for the proxy's own 4xx. */
export function errorCacheStatus(error: ProxyError | UpstreamAnswer): string | undefined {
  if (error.remembered) return `${CACHE_NAME}; hit; detail=remembered-${error.statusCode}`;
  if (error.name === 'UpstreamAnswer') return `${CACHE_NAME}; fwd=miss; fwd-status=${error.statusCode}`;
  const { failure } = error;
  if (failure === undefined) return undefined;
  if (failure === 'circuit-open' || failure === 'budget-exhausted') return `${CACHE_NAME}; detail=${failure}`;
  return `${CACHE_NAME}; fwd=miss; detail=${failure}`;
}
