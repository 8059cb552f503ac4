import { createHmac } from 'node:crypto';
import { DateTime, Duration, type DurationLike, type Zone } from 'luxon';
import type { StatsQuery } from '../deskie/query.js';
import { type FreshnessClass, isCustomRange, type Lifetimes } from '../deskie/periods.js';

/**
 * The cache key: endpoint, canonical query, a calendar period's absolute window (so `yesterday` asked on two days is two
 * entries) and the credential partition. The rolling `last_24_hours` is keyed by its name alone.
 */
export function cacheKey(query: StatsQuery, partition: string): string {
  const window = query.window.changesAt === null ? '' : `@${query.window.from.toMillis()}`;
  return `${query.endpoint.name}?${query.canonicalQuery}${window}#${partition}`;
}

/**
 * The period as logs and the admin API name it: its name, or a custom range as an ISO interval in the account's zone.
 * One function for queries and entries, so the admin API's filter matches the access log.
 */
export function periodText(freshness: FreshnessClass, fromMs: number, toMs: number, zone: string): string {
  if (!isCustomRange(freshness)) return freshness;
  const instant = (ms: number) => DateTime.fromMillis(ms, { zone }).toISO() as string;
  return `${instant(fromMs)}/${instant(toMs)}`;
}

export function periodLabel({ freshness, window }: StatsQuery): string {
  return periodText(freshness, window.from.toMillis(), window.to.toMillis(), window.from.zoneName ?? 'UTC');
}

/** Partitions entries by credential: an HMAC of the Authorization value, so the key never holds the secret. */
export function credentialPartition(authorization: string, secret: Buffer): string {
  return createHmac('sha256', secret).update(authorization).digest('base64url');
}

/** When an answer fetched at `nowMs` stops being fresh: its lifetime (Deskie's table), cut where the period's window changes. */
export function freshUntil(query: StatsQuery, nowMs: number, lifetimes: Lifetimes): number {
  const byLifetime = addLifetime(nowMs, lifetimes[query.endpoint.name][query.freshness], query.window.from.zone).toMillis();
  const changesAt = query.window.changesAt?.toMillis() ?? Number.POSITIVE_INFINITY;
  return Math.min(byLifetime, changesAt);
}

export interface KeepingRules {
  /** How long past its freshness an entry is kept to answer when Deskie fails (0: not at all). */
  readonly staleIfErrorMs: number;
  /** How long after Deskie's own cache for an answer is due to expire its refresh goes (REFRESH_MARGIN_MS). */
  readonly refreshMarginMs: number;
}

/** When the call behind an answer was made (epoch ms): asked (before its turn in the budget), sent, answered. */
export interface CallTimes {
  readonly askedAtMs: number;
  readonly sentAtMs: number;
  readonly receivedAtMs: number;
}

export interface AnswerTimes {
  readonly expiresAtMs: number;
  readonly refreshAtMs: number;
  readonly keepUntilMs: number;
}

/**
 * Freshness counts from when the answer was asked for, so it never outlasts Deskie's. The refresh goes just after
 * Deskie's cache, begun by our call at the latest, has expired (sooner would bring back the same numbers for a whole
 * new lifetime); where the window changes first, just after the change, for the next window. An answer received after
 * its window changed may hold the new window's numbers: neither fresh nor kept.
 */
export function answerTimes(query: StatsQuery, { askedAtMs, sentAtMs, receivedAtMs }: CallTimes, lifetimes: Lifetimes, { staleIfErrorMs, refreshMarginMs }: KeepingRules): AnswerTimes {
  const expiresAtMs = freshUntil(query, askedAtMs, lifetimes);
  const changesAtMs = query.window.changesAt?.toMillis() ?? Number.POSITIVE_INFINITY;
  if (receivedAtMs >= changesAtMs) {
    return { expiresAtMs: receivedAtMs, refreshAtMs: Number.POSITIVE_INFINITY, keepUntilMs: receivedAtMs };
  }
  const refreshAtMs = freshUntil(query, Math.max(askedAtMs, sentAtMs), lifetimes) + refreshMarginMs;
  return { expiresAtMs, refreshAtMs, keepUntilMs: expiresAtMs + staleIfErrorMs };
}

/** Minutes to weeks are lengths ("1 day" is 24 h across DST), added in UTC; months and years are calendar amounts, in the account zone. */
function addLifetime(nowMs: number, lifetime: DurationLike, zone: Zone): DateTime {
  return DateTime.fromMillis(nowMs, { zone: isCalendarAmount(lifetime) ? zone : 'utc' }).plus(lifetime);
}

/** Whether a lifetime counts calendar months or years (a plain object, a luxon Duration or milliseconds alike). */
function isCalendarAmount(lifetime: DurationLike): boolean {
  const duration = Duration.fromDurationLike(lifetime);
  return duration.years !== 0 || duration.quarters !== 0 || duration.months !== 0;
}
