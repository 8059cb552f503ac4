import { createHmac } from 'node:crypto';
import { DateTime, type DurationLike, type Zone } from 'luxon';
import type { StatsQuery } from '../deskie/query.js';
import type { FreshnessClass } from '../deskie/periods.js';

/**
 * The cache key: endpoint, canonical query, the absolute window of a calendar
 * period, and the credential partition. `yesterday` asked at 00:00:30 and at
 * 23:59:50 are different windows and so different entries; the rolling
 * `last_24_hours` has no fixed window and is keyed by its name alone.
 */
export function cacheKey(query: StatsQuery, partition: string): string {
  const window = query.window.changesAt === null ? '' : `@${query.window.from.toMillis()}`;
  return `${query.endpoint.name}?${query.upstreamQuery}${window}#${partition}`;
}

/**
 * Partitions entries by credential: an HMAC of the Authorization value, so a
 * credential never receives data fetched with another and the key never holds
 * the secret itself.
 */
export function credentialPartition(authorization: string, secret: Buffer): string {
  return createHmac('sha256', secret).update(authorization).digest('base64url');
}

/**
 * When an answer fetched at `nowMs` stops being fresh: Deskie's cache lifetime
 * for the period (or the operator's override), but never past the moment the
 * period starts to mean another window, computed in the account time zone.
 */
export function freshUntil(
  query: StatsQuery,
  nowMs: number,
  lifetimes: Readonly<Record<FreshnessClass, DurationLike>>,
): number {
  const byLifetime = addLifetime(nowMs, lifetimes[query.freshness], query.window.from.zone).toMillis();
  const changesAt = query.window.changesAt?.toMillis() ?? Number.POSITIVE_INFINITY;
  return Math.min(byLifetime, changesAt);
}

/**
 * Minutes, hours, days and weeks are lengths of time ("1 day" is 24 hours even
 * across a DST change), so they are added in UTC. Months and years are
 * calendar amounts and are added in the account zone, where "1 month" from
 * 1 March ends on 1 April whatever UTC's date is.
 */
function addLifetime(nowMs: number, lifetime: DurationLike, zone: Zone): DateTime {
  const calendar = typeof lifetime === 'object' && ('months' in lifetime || 'years' in lifetime);
  return DateTime.fromMillis(nowMs, { zone: calendar ? zone : 'utc' }).plus(lifetime);
}
