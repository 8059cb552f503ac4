import { createHmac } from 'node:crypto';
import { DateTime, Duration, type DurationLike, type Zone } from 'luxon';
import type { StatsQuery } from '../deskie/query.js';
import { type FreshnessClass, isCustomRange, type Lifetimes } from '../deskie/periods.js';

/** Endpoint, query, partition and a calendar period's start (`yesterday` on two days: two keys; rolling: name only). */
export function cacheKey(query: StatsQuery, partition: string): string {
  const window = query.window.changesAt === null ? '' : `@${query.window.from.toMillis()}`;
  return `${query.endpoint.name}?${query.canonicalQuery}${window}#${partition}`;
}

/** A period's name, or a custom range as an ISO interval in the account zone; shared so admin filters match the log. */
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
 * Fresh from asking, so never past Deskie's. Refresh just after Deskie's cache (our call's at latest) expires (sooner
 * gets the same numbers anew) or the window changes. Got after a change: maybe the new window's; not fresh nor kept.
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
