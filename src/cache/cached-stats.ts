import { LRUCache } from 'lru-cache';
import type { FastifyBaseLogger } from 'fastify';
import type { Lifetimes } from '../deskie/periods.js';
import type { StatsQuery } from '../deskie/query.js';
import { ProxyError, UpstreamAnswer, type UpstreamFailure, upstreamFailureOf } from '../http/errors.js';
import { answerSource, ownedBy, renderVariant, type Representation, withOwnedBytes } from '../formats/render.js';
import type { Variant } from '../formats/representations.js';
import type { DeskieUpstream, UpstreamCall } from '../upstream/deskie.js';
import { flat } from './cache-status.js';
import { answerTimes, cacheKey, credentialPartition, freshUntil, type KeepingRules } from './policy.js';
import { type AnswerStore, answerBytes, type CachedAnswer, type CacheOutcome, PARTITION_ID_LENGTH, type ReusePolicy, type StoreResult } from './store.js';

/** Credentials whose partition is remembered; a dashboard fleet uses a handful. */
const REMEMBERED_CREDENTIALS = 1024;
/** Credentials remembered as accepted by Deskie (a partition id each). */
const ACCEPTED_CREDENTIALS = 10_000;
/** Refusals remembered: credentials Deskie refused, `page=all` queries too large to merge. */
const REMEMBERED_REFUSALS = 10_000;
/**
 * The last part of AUTH_RECHECK_SECONDS in which a hit starts one background
 * call for the credential (a refresh of the entry hit) and is answered at
 * once: a credential in use is rechecked before it is due, and its
 * dashboards never wait for the recheck.
 */
const RECHECK_AHEAD = 0.2;
/**
 * After a recheck Deskie could not answer (down, timing out, or the budget
 * held the call back), how long the credential is answered from the cache
 * before the next try: one call in this time rather than one per request.
 */
const RECHECK_RETRY_MS = 30_000;

/** How far a credential's acceptance by Deskie lets the cache answer it. */
const enum Standing {
  Accepted,
  /** Accepted, but a recheck should start now (RECHECK_AHEAD). */
  DueSoon,
  /** Due, but Deskie could not answer its last recheck: answered from the cache, with no call, until RECHECK_RETRY_MS. */
  Deferred,
  /** Not accepted within AUTH_RECHECK_SECONDS: Deskie must be asked first. */
  Due,
}

export interface CachedStatsOptions {
  readonly store: AnswerStore;
  readonly upstream: DeskieUpstream;
  readonly clock: () => number;
  readonly lifetimes: Lifetimes;
  readonly keeping: KeepingRules;
  /** How long Deskie's 401 or 403 for a credential is answered from memory (0: never). */
  readonly authFailureTtlMs: number;
  /** How long after Deskie last accepted a credential its requests are answered from the store. */
  readonly authRecheckMs: number;
  readonly cacheKeySecret: Buffer;
  readonly log: FastifyBaseLogger;
  /** Called after each answer fetched from Deskie (see heap-guard.ts). */
  readonly afterFetch?: () => void;
}

/** How one request was answered. */
export interface StatsAnswer {
  readonly answer: CachedAnswer;
  readonly outcome: CacheOutcome;
  /** False when the answer could not be kept (too large, or fetched across a window change). */
  readonly stored: boolean;
  /** With `stale`: why Deskie could not answer, and its status when it sent one. */
  readonly failure?: { readonly detail: UpstreamFailure; readonly status: number | undefined };
  /** With `collapsed`: the fetch waited for replaces an expired entry (RFC 9211 `fwd=stale`). */
  readonly replacesExpired?: boolean;
  /**
   * The entry was fresh, but Deskie had not accepted the credential within
   * the recheck time, so it was asked again (RFC 9211 `fwd=request`).
   */
  readonly rechecked?: boolean;
}

interface Refusal {
  readonly error: ProxyError | UpstreamAnswer;
  readonly untilMs: number;
}

/**
 * Answers a validated statistics query: from the store while the entry is
 * fresh (starting one background refresh in its last part), otherwise from
 * Deskie once per key however many clients ask at the same moment. When
 * Deskie fails, an expired entry still kept answers instead (stale-if-error).
 * Refusals that a retry cannot change are remembered for a while, so a
 * dashboard polling with a bad key costs one call, not one per poll.
 *
 * Revocation: a credential is answered from the store only while Deskie
 * accepted it (answered it 200) within authRecheckMs; past that, its next
 * request refreshes the entry it asks for, and everyone waits for Deskie's
 * verdict. A 401 or 403 from Deskie drops every entry of the credential's
 * partition at once. When Deskie cannot answer the recheck at all (down,
 * rate-limited), the entry answers as stale-if-error would: a revocation
 * cannot be learned from a Deskie that does not answer.
 */
export class CachedStats {
  readonly #options: CachedStatsOptions;
  /** Authorization value -> its HMAC partition: the HMAC was the costliest step of a hit. */
  readonly #partitions: LRUCache<string, string>;
  /**
   * When Deskie last answered each partition's credential 200: it is answered
   * from the store within authRecheckMs of that, and its calls are not
   * limited to the new-credential share.
   */
  readonly #accepted = new LRUCache<string, number>({ max: ACCEPTED_CREDENTIALS });
  /** Partitions whose recheck Deskie could not answer: answered from the cache until then (RECHECK_RETRY_MS). */
  readonly #recheckRetryAt = new LRUCache<string, number>({ max: ACCEPTED_CREDENTIALS });
  /** Partitions with a recheck ahead under way: one at a time each. */
  readonly #recheckingAhead = new Set<string>();
  /** Refusals of credentials so far, numbering them: a call tells by it whether its credential was refused while it ran. */
  #credentialRefusals = 0;
  /** Each refused partition's latest refusal: its number and Deskie's answer. */
  readonly #refusedLast = new LRUCache<string, { readonly number: number; readonly error: UpstreamAnswer; readonly atMs: number }>({ max: ACCEPTED_CREDENTIALS });
  readonly #refusals = new LRUCache<string, Refusal>({ max: REMEMBERED_REFUSALS });
  /** Entries a refresh has been started for: one per entry, and none again after it failed. */
  readonly #refreshStarted = new WeakSet<CachedAnswer>();
  readonly #refreshes = new Set<Promise<void>>();
  /**
   * Each checked query's key for the partition that last asked. A key built
   * anew on every hit is a rope that the store's map must flatten and hash;
   * the same string object keeps its hash.
   */
  readonly #keys = new WeakMap<StatsQuery, { readonly partition: string; readonly key: string }>();
  #closed = false;

  constructor(options: CachedStatsOptions) {
    this.#options = options;
    this.#partitions = new LRUCache({
      max: REMEMBERED_CREDENTIALS,
      memoMethod: (authorization) => credentialPartition(authorization, options.cacheKeySecret),
    });
  }

  /**
   * A fresh entry is answered at once, without a promise: a hit is a store
   * lookup and a comparison. Anything else goes to Deskie (or its memory of
   * a refusal) and is answered when that settles. `priority` is the turn a
   * call takes in the upstream budget: `refresh` for work no client waits
   * on (the admin API's prewarm), so dashboards go first.
   */
  answer(
    query: StatsQuery,
    authorization: string,
    nowMs: number,
    variant: Variant,
    priority: UpstreamCall['priority'] = 'client',
  ): StatsAnswer | Promise<StatsAnswer> {
    const partition = this.#partitions.memo(authorization);
    const key = this.#keyOf(query, partition);
    const held = this.#options.store.get(key);
    return this.#hitOn(key, query, authorization, partition, held, nowMs) ?? this.#fetch(key, query, authorization, partition, held, nowMs, variant, priority);
  }

  /**
   * The query's entry when it can be answered now as a hit (fresh, and its
   * credential accepted by Deskie recently enough), counted as one and with
   * any refresh or recheck ahead it calls for started; otherwise undefined,
   * having changed nothing, and answer() goes to Deskie.
   */
  hit(query: StatsQuery, authorization: string, nowMs: number): StatsAnswer | undefined {
    const partition = this.#partitions.memo(authorization);
    const key = this.#keyOf(query, partition);
    return this.#hitOn(key, query, authorization, partition, this.#options.store.get(key), nowMs);
  }

  /** hit(), once the key and what the store holds for it are known. */
  #hitOn(key: string, query: StatsQuery, authorization: string, partition: string, held: CachedAnswer | undefined, nowMs: number): StatsAnswer | undefined {
    if (held === undefined || nowMs >= held.expiresAtMs) return undefined;
    const standing = this.#standing(partition, nowMs);
    if (standing === Standing.Due) return undefined;
    const gapMs = nowMs - held.lastAskedAtMs;
    if (gapMs > held.longestGapMs) held.longestGapMs = gapMs;
    held.lastAskedAtMs = nowMs;
    held.hits += 1;
    // Refresh at the last request before expiry: the next one, as far off
    // as the longest gap seen (in this life or the one before), would find
    // it expired. Refreshing earlier costs Deskie calls for nothing: a
    // 5-minute entry refreshed 30 s early makes 11% more calls. Never
    // before refreshAtMs, so keys polled rarely still refresh ahead.
    if (standing === Standing.DueSoon) {
      // A `page=all` entry would cost all its pages for what one page proves: another entry rechecks it, or its own request when due.
      if (!query.allPages) this.#recheckAhead(key, query, authorization, partition, held, nowMs);
    } else if (nowMs >= held.refreshAtMs && nowMs + Math.max(held.longestGapMs, held.previousGapMs) >= held.expiresAtMs) {
      this.#refreshAhead(key, query, authorization, partition, held);
    }
    return { answer: held, outcome: 'hit', stored: true };
  }

  /** The query's key in the partition, the same string each time the partition asks again. */
  #keyOf(query: StatsQuery, partition: string): string {
    let known = this.#keys.get(query);
    if (known?.partition !== partition) {
      known = { partition, key: flat(cacheKey(query, partition)) };
      this.#keys.set(query, known);
    }
    return known.key;
  }

  /**
   * How the partition's credential stands: accepted by Deskie within
   * authRecheckMs (due a recheck ahead in its last part), or due. A clock
   * set back before the acceptance makes it due: the time since is unknown.
   */
  #standing(partition: string, nowMs: number): Standing {
    const acceptedAtMs = this.#accepted.peek(partition);
    if (acceptedAtMs === undefined || nowMs < acceptedAtMs) return Standing.Due;
    const { authRecheckMs } = this.#options;
    const sinceMs = nowMs - acceptedAtMs;
    if (sinceMs < authRecheckMs * (1 - RECHECK_AHEAD)) return Standing.Accepted;
    if (sinceMs < authRecheckMs) return Standing.DueSoon;
    const retryAtMs = this.#recheckRetryAt.peek(partition);
    return retryAtMs !== undefined && nowMs < retryAtMs ? Standing.Deferred : Standing.Due;
  }

  /**
   * The variant of an answer, rendered now when this is its first request,
   * kept with the entry and counted by the store.
   */
  representation(answer: CachedAnswer, variant: Variant): Representation {
    const rendered = ownedBy(answer.source, renderVariant(answer.source, answer.key, variant));
    answer.variants.push(rendered);
    this.#options.store.resize(answer);
    return rendered;
  }

  async #fetch(
    key: string,
    query: StatsQuery,
    authorization: string,
    partition: string,
    held: CachedAnswer | undefined,
    nowMs: number,
    variant: Variant,
    priority: UpstreamCall['priority'],
  ): Promise<StatsAnswer> {
    const { store, clock } = this.#options;
    this.#throwIfRefused(key, partition, nowMs);
    // Still fresh: here only because the credential is due its recheck.
    const rechecked = held !== undefined && nowMs < held.expiresAtMs ? true : undefined;
    const call = this.#call(authorization, partition, priority, held);
    try {
      const result = await store.fetch(
        key,
        () => this.#load(key, query, call, partition, renderedVariants(held, variant), held?.longestGapMs ?? 0),
        // Another replica's answer to a call made after this recheck was decided proves as much as this one's would.
        this.#reusable(partition, rechecked ? nowMs + 1 : Number.NEGATIVE_INFINITY),
      );
      this.#acceptedElsewhere(result, call);
      if (result.outcome === 'collapsed') return { ...result, replacesExpired: held !== undefined, rechecked };
      if (result.outcome === 'hit') return result;
      if (!result.stored) this.#logUnstored(key, result.answer);
      return rechecked ? { ...result, rechecked } : result;
    } catch (error) {
      const detail = upstreamFailureOf(error);
      if (rechecked && detail !== undefined) this.#recheckRetryAt.set(partition, clock() + RECHECK_RETRY_MS);
      if (detail === undefined) throw error;
      // A shared store holds only fresh answers in this process: an expired one is asked of Redis.
      const kept = held ?? (await store.peek(key));
      if (kept === undefined || clock() >= kept.keepUntilMs) throw error;
      const status = error instanceof UpstreamAnswer ? error.statusCode : undefined;
      return { answer: kept, outcome: 'stale', stored: true, failure: { detail, status }, rechecked };
    }
  }

  /**
   * Which answer another replica stored may answer for the partition's
   * credential: one still fresh, from a call made no earlier than
   * `askedAfterMs`, and within authRecheckMs of the credential's latest
   * acceptance (that call counts: Deskie answered it 200).
   */
  #reusable(partition: string, askedAfterMs: number): ReusePolicy {
    return (answer) => {
      const nowMs = this.#options.clock();
      if (nowMs >= answer.expiresAtMs || answer.askedAtMs < askedAfterMs) return false;
      // Deskie refused the credential here after that call was made: its 200 proves nothing now.
      const refusedAtMs = this.#refusedLast.peek(partition)?.atMs;
      if (refusedAtMs !== undefined && answer.askedAtMs <= refusedAtMs) return false;
      const acceptedAtMs = Math.max(this.#accepted.peek(partition) ?? Number.NEGATIVE_INFINITY, answer.askedAtMs);
      return acceptedAtMs <= nowMs && nowMs - acceptedAtMs < this.#options.authRecheckMs;
    };
  }

  /**
   * An answer this process did not fetch (another replica's, from a shared
   * store) tells that Deskie accepted the credential when it was asked,
   * unless Deskie refused it here since.
   */
  #acceptedElsewhere(result: StoreResult, call: CredentialCall): void {
    if (result.outcome !== 'hit' && result.outcome !== 'collapsed') return;
    const refusal = call.refusedSince();
    if (refusal !== undefined) throw refusal.asRemembered();
    const { partition } = call;
    const acceptedAtMs = this.#accepted.peek(partition);
    if (acceptedAtMs === undefined || acceptedAtMs < result.answer.askedAtMs) {
      this.#accepted.set(partition, result.answer.askedAtMs);
      this.#recheckRetryAt.delete(partition);
    }
  }

  /** Ends background refreshes: none starts, and those under way are waited for. */
  async close(): Promise<void> {
    this.#closed = true;
    await Promise.allSettled([...this.#refreshes]);
  }

  /**
   * A call for the partition's credential. Deskie's 200 accepts the
   * credential as of when the call was made, unless Deskie refused it while
   * the call ran: a refusal is newer news than a call sent before it.
   */
  #call(authorization: string, partition: string, priority: UpstreamCall['priority'], held: CachedAnswer | undefined): CredentialCall {
    const refusalsBefore = this.#credentialRefusals;
    const madeAtMs = this.#options.clock();
    const refusedSince = (): UpstreamAnswer | undefined => {
      const last = this.#refusedLast.peek(partition);
      return last !== undefined && last.number > refusalsBefore ? last.error : undefined;
    };
    return {
      authorization,
      partition,
      priority,
      expectedCalls: held?.upstreamCalls ?? 1,
      isNewCredential: () => !this.#accepted.has(partition),
      accepted: () => {
        if (refusedSince() !== undefined) return;
        this.#accepted.set(partition, madeAtMs);
        this.#recheckRetryAt.delete(partition);
        this.#refusals.delete(credentialKey(partition));
      },
      refusedSince,
    };
  }

  /** Fetches from Deskie and renders `variants` (the asking request's, and those in use on the entry replaced) before it is stored. */
  async #load(
    key: string,
    query: StatsQuery,
    call: CredentialCall,
    partition: string,
    variants: readonly Variant[],
    previousGapMs: number,
  ): Promise<CachedAnswer> {
    const { upstream, clock, lifetimes, keeping } = this.#options;
    const askedAtMs = clock();
    let page;
    try {
      page = await upstream.fetch(query, call);
    } catch (error) {
      await this.#rememberRefusal(error, key, query, partition, askedAtMs);
      throw error;
    }
    // Refused while this call ran (its partition has been dropped): nothing of it is kept or served.
    const refusal = call.refusedSince();
    if (refusal !== undefined) throw refusal.asRemembered();
    const receivedAtMs = clock();
    this.#options.afterFetch?.();
    const { window } = query;
    const fetched = answerSource(query.endpoint.name, page.body, page.contentType, {
      fromMs: window.from.toMillis(),
      toMs: window.to.toMillis(),
      zone: window.from.zoneName ?? 'UTC',
    });
    const { source, representations } = withOwnedBytes(
      fetched,
      variants.map((variant) => renderVariant(fetched, key, variant, page.parsed)),
    );
    return {
      key,
      freshness: query.freshness,
      source,
      variants: representations,
      lastModified: new Date(receivedAtMs).toUTCString(),
      fetchedAtMs: receivedAtMs,
      askedAtMs,
      lastAskedAtMs: receivedAtMs,
      hits: 0,
      upstreamMs: Math.round(page.upstreamMs * 100) / 100,
      longestGapMs: 0,
      previousGapMs,
      upstreamCalls: page.calls,
      ...answerTimes(query, askedAtMs, receivedAtMs, lifetimes, keeping),
    };
  }

  /**
   * Starts one refresh of a fresh entry in the last part of its lifetime; the
   * hit that triggered it is answered at once. A failed refresh leaves the
   * entry as it was and is not retried: when the entry expires, the next
   * request fetches (and falls back to it if Deskie still fails).
   */
  #refreshAhead(key: string, query: StatsQuery, authorization: string, partition: string, held: CachedAnswer): void {
    if (this.#closed || this.#refreshStarted.has(held)) return;
    this.#refreshStarted.add(held);
    // Another replica's newer answer is the refresh: a hot key is refreshed once for the cluster.
    this.#refreshInBackground(key, query, authorization, partition, held, held.askedAtMs + 1, () => {});
  }

  /** Refreshes `held` with no client waiting; `failed` hears why it did not. */
  #refreshInBackground(
    key: string,
    query: StatsQuery,
    authorization: string,
    partition: string,
    held: CachedAnswer,
    askedAfterMs: number,
    failed: (error: unknown) => void,
    settled?: () => void,
  ): void {
    const { store, log } = this.#options;
    const call = this.#call(authorization, partition, 'refresh', held);
    const refresh = store
      .fetch(key, () => this.#load(key, query, call, partition, renderedVariants(held), held.longestGapMs), this.#reusable(partition, askedAfterMs))
      .then((result) => {
        this.#acceptedElsewhere(result, call);
        return result;
      })
      .then(
        (result) => log.debug({ key, outcome: result.outcome, stored: result.stored }, 'refreshed ahead of expiry'),
        (error: unknown) => {
          log.info({ key, err: error }, 'refresh ahead failed; the entry stays until it expires');
          failed(error);
        },
      )
      .finally(() => {
        this.#refreshes.delete(refresh);
        settled?.();
      });
    this.#refreshes.add(refresh);
  }

  /**
   * One background refresh of the entry hit, for its credential's recheck:
   * one per partition at a time, whatever became of earlier refreshes of the
   * entry. When Deskie cannot answer it, the partition waits RECHECK_RETRY_MS
   * before the next try, as after a failed recheck a request waited for.
   */
  #recheckAhead(key: string, query: StatsQuery, authorization: string, partition: string, held: CachedAnswer, nowMs: number): void {
    if (this.#closed || this.#recheckingAhead.has(partition)) return;
    const retryAtMs = this.#recheckRetryAt.peek(partition);
    if (retryAtMs !== undefined && nowMs < retryAtMs) return;
    this.#recheckingAhead.add(partition);
    this.#refreshInBackground(
      key,
      query,
      authorization,
      partition,
      held,
      // Another replica's answer rechecks the credential if it leaves it accepted for a while.
      nowMs - this.#options.authRecheckMs * (1 - RECHECK_AHEAD),
      (error) => {
        if (upstreamFailureOf(error) !== undefined) this.#recheckRetryAt.set(partition, this.#options.clock() + RECHECK_RETRY_MS);
      },
      () => this.#recheckingAhead.delete(partition),
    );
  }

  /**
   * Deskie's 401 or 403 is remembered for the credential (any query), a
   * `page=all` too large to merge for its key until the answer would have
   * expired: asking again cannot change either sooner.
   */
  async #rememberRefusal(error: unknown, key: string, query: StatsQuery, partition: string, nowMs: number): Promise<void> {
    const { authFailureTtlMs, lifetimes } = this.#options;
    if (error instanceof UpstreamAnswer && error.refusesCredential) {
      this.#credentialRefusals += 1;
      this.#refusedLast.set(partition, { number: this.#credentialRefusals, error, atMs: this.#options.clock() });
      this.#recheckRetryAt.delete(partition);
      this.#accepted.delete(partition);
      // Every time, not only for a partition still remembered as accepted: one forgotten among many may still hold entries.
      // A credential's refusals are remembered for AUTH_FAILURE_TTL_SECONDS, so it drops at most once in that time.
      if (authFailureTtlMs > 0) this.#refusals.set(credentialKey(partition), { error, untilMs: nowMs + authFailureTtlMs });
      await this.#dropPartition(partition, error.statusCode);
    } else if (error instanceof ProxyError && error.code === 'TOO_MANY_PAGES') {
      this.#refusals.set(key, { error, untilMs: freshUntil(query, nowMs, lifetimes) });
    }
  }

  /** Deskie refused the credential: none of its entries may answer again (a load under way is not kept either). */
  async #dropPartition(partition: string, status: number): Promise<void> {
    const { store, log } = this.#options;
    // On every replica, for a shared store; a load under way elsewhere is not kept either.
    const removed = await store.dropEnding(`#${partition}`);
    if (removed > 0) {
      log.warn({ partition: partition.slice(0, PARTITION_ID_LENGTH), status, removed }, "Deskie refused a credential: its cached answers were dropped");
    }
  }

  #throwIfRefused(key: string, partition: string, nowMs: number): void {
    for (const refusalKey of [credentialKey(partition), key]) {
      const refusal = this.#refusals.get(refusalKey);
      if (refusal === undefined) continue;
      if (nowMs < refusal.untilMs) throw refusal.error.asRemembered();
      this.#refusals.delete(refusalKey);
    }
  }

  #logUnstored(key: string, answer: CachedAnswer): void {
    const { log } = this.#options;
    if (answer.keepUntilMs <= answer.fetchedAtMs) {
      log.info({ key }, 'the period changed window while Deskie answered: answered, not stored');
    } else {
      log.warn(
        { key, bytes: answerBytes(answer) },
        'an answer is too large for the cache and is not stored: every repeat costs Deskie calls; raise CACHE_MAX_BYTES',
      );
    }
  }
}

const credentialKey = (partition: string): string => `credential#${partition}`;

/** A call to Deskie that can tell whether its credential was refused while it ran (and by which answer). */
interface CredentialCall extends UpstreamCall {
  readonly partition: string;
  refusedSince(): UpstreamAnswer | undefined;
}



/** The variants rendered on `held` (those in use), and `also`: a new answer for the key renders them up front. */
function renderedVariants(held: CachedAnswer | undefined, also?: Variant): Variant[] {
  const variants = also === undefined ? [] : [also];
  for (const { variant } of held?.variants ?? []) if (variant !== also) variants.push(variant);
  return variants;
}
