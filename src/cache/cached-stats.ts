import { LRUCache } from 'lru-cache';
import type { FastifyBaseLogger } from 'fastify';
import type { Lifetimes } from '../deskie/periods.js';
import type { StatsQuery } from '../deskie/query.js';
import { ProxyError, UpstreamAnswer, type UpstreamFailure, upstreamBusy, upstreamFailureOf } from '../http/errors.js';
import { answerSource, ownedBy, renderVariant, type Representation, withOwnedBytes } from '../formats/render.js';
import type { Variant } from '../formats/representations.js';
import type { DeskieUpstream, UpstreamCall } from '../upstream/deskie.js';
import { type CredentialCall, CredentialStanding } from './credential-standing.js';
import { answerTimes, cacheKey, credentialPartition, freshUntil, type KeepingRules } from './policy.js';
import { type AnswerStore, answerBytes, type CachedAnswer, type CacheOutcome, PARTITION_ID_LENGTH, type ReusePolicy, type StoreResult } from './store.js';

/** Credentials whose partition is remembered; a dashboard fleet uses a handful. */
const REMEMBERED_CREDENTIALS = 1024;
/** `page=all` queries remembered as too large to merge. */
const REMEMBERED_REFUSALS = 10_000;
/** What a request waiting for a verdict on its credential hears when its wait is over first. */
const TURN_TIMED_OUT = Symbol('turn timed out');

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
  /** How long a request may wait for its turn to call Deskie, in real ms (UPSTREAM_QUEUE_MS): the budget's, or its credential's verdict. */
  readonly turnWaitMs: number;
  readonly cacheKeySecret: Buffer;
  readonly log: FastifyBaseLogger;
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
  /** The entry was fresh, but its credential was due its recheck, so Deskie was asked again (RFC 9211 `fwd=request`). */
  readonly rechecked?: boolean;
}

/** A query asked with a credential, and its key in the credential's partition. */
interface Asked {
  readonly query: StatsQuery;
  readonly authorization: string;
  readonly partition: string;
  readonly key: string;
}

/** A call to Deskie, as the budget and the credential's standing see it. */
type Call = UpstreamCall & CredentialCall;

/**
 * Answers a checked query: from the store while fresh and Deskie accepted the credential recently enough
 * (CredentialStanding), else from Deskie once per key however many ask; when Deskie fails, from an expired entry still
 * kept (stale-if-error). Refusals a retry cannot change are remembered (#rememberRefusal, #fetchInTurn).
 */
export class CachedStats {
  readonly #options: CachedStatsOptions;
  readonly #credentials: CredentialStanding;
  /** Authorization value -> its HMAC partition, computed once per credential. */
  readonly #partitions: LRUCache<string, string>;
  /** `page=all` keys Deskie's answer had too many pages for, until the answer would have expired. */
  readonly #tooManyPages = new LRUCache<string, { readonly error: ProxyError; readonly untilMs: number }>({ max: REMEMBERED_REFUSALS });
  /** Entries a refresh has been started for: one per entry, and none again after it failed. */
  readonly #refreshStarted = new WeakSet<CachedAnswer>();
  readonly #refreshes = new Set<Promise<void>>();
  /** Each checked query as the credential that last asked it: the same key string, which keeps its hash, while it asks again. */
  readonly #lastAsked = new WeakMap<StatsQuery, Asked>();
  #closed = false;

  constructor(options: CachedStatsOptions) {
    this.#options = options;
    this.#credentials = new CredentialStanding({ clock: options.clock, recheckMs: options.authRecheckMs, refusalTtlMs: options.authFailureTtlMs });
    this.#partitions = new LRUCache({
      max: REMEMBERED_CREDENTIALS,
      memoMethod: (authorization) => credentialPartition(authorization, options.cacheKeySecret),
    });
  }

  /** A hit is answered at once, without a promise. `priority` `refresh` is for work no client waits on (prewarm): dashboards go first. */
  answer(query: StatsQuery, authorization: string, nowMs: number, variant: Variant, priority: UpstreamCall['priority'] = 'client'): StatsAnswer | Promise<StatsAnswer> {
    return this.#answer(this.#asked(query, authorization), nowMs, variant, priority, true);
  }

  /** answer(); `inTurn`: a fetch for a credential Deskie has not vouched for lately first waits its turn (see #fetchInTurn). */
  #answer(asked: Asked, nowMs: number, variant: Variant, priority: UpstreamCall['priority'], inTurn: boolean): StatsAnswer | Promise<StatsAnswer> {
    const { query } = asked;
    const held = this.#options.store.get(asked.key);
    const standing = held !== undefined && nowMs < held.expiresAtMs ? this.#credentials.standing(asked.partition, nowMs) : 'due';
    if (held === undefined || standing === 'due') return inTurn ? this.#fetchInTurn(asked, held, nowMs, variant, priority) : this.#fetch(asked, held, nowMs, variant, priority);
    const gapMs = nowMs - held.lastAskedAtMs;
    if (gapMs > held.longestGapMs) held.longestGapMs = gapMs;
    held.lastAskedAtMs = nowMs;
    held.hits += 1;
    if (standing === 'due soon') {
      // A `page=all` entry would cost all its pages for what one page proves: another entry rechecks it, or its own request when due.
      if (!query.allPages) this.#recheckAhead(asked, held, nowMs);
    } else if (refreshAheadDue(held, nowMs)) {
      this.#refreshAhead(asked, held);
    }
    return { answer: held, outcome: 'hit', stored: true };
  }

  /** The variant of an answer, rendered now when this is its first request, kept with the entry and counted by the store. */
  representation(answer: CachedAnswer, variant: Variant): Representation {
    const rendered = ownedBy(answer.source, renderVariant(answer.source, answer.key, variant));
    answer.variants.push(rendered);
    this.#options.store.resize(answer);
    return rendered;
  }

  /** Ends background refreshes: none starts, and those under way are waited for. */
  async close(): Promise<void> {
    this.#closed = true;
    await Promise.allSettled([...this.#refreshes]);
  }

  #asked(query: StatsQuery, authorization: string): Asked {
    let asked = this.#lastAsked.get(query);
    if (asked?.authorization !== authorization) {
      const partition = this.#partitions.memo(authorization);
      asked = { query, authorization, partition, key: cacheKey(query, partition) };
      this.#lastAsked.set(query, asked);
    }
    return asked;
  }

  /**
   * A credential Deskie has not vouched for lately is asked about once for all its keys: requests for its other keys
   * wait for that call's verdict and, refused, get its 401 or 403, so a bad or revoked key costs one call however many
   * panels ask; accepted, they are answered as any request then is. Otherwise each then calls, once.
   */
  async #fetchInTurn(asked: Asked, held: CachedAnswer | undefined, nowMs: number, variant: Variant, priority: UpstreamCall['priority']): Promise<StatsAnswer> {
    const { key, partition } = asked;
    this.#throwIfRefused(asked, nowMs);
    if (this.#credentials.standing(partition, nowMs) !== 'due') return this.#fetch(asked, held, nowMs, variant, priority);
    const turn = this.#credentials.turn(partition, key);
    if (turn.verdict !== undefined) return this.#afterVerdict(asked, turn.verdict, variant, priority);
    try {
      const answered = await this.#fetch(asked, held, nowMs, variant, priority);
      turn.done();
      return answered;
    } catch (error) {
      turn.done(error);
      throw error;
    }
  }

  /** Waits for the verdict on the credential (what the deciding call failed with, if anything), then answers as it allows. */
  async #afterVerdict(asked: Asked, verdict: Promise<unknown>, variant: Variant, priority: UpstreamCall['priority']): Promise<StatsAnswer> {
    const { store, clock, turnWaitMs } = this.#options;
    // Made before the wait, to hear of a refusal during it (remembered or not: AUTH_FAILURE_TTL_SECONDS=0).
    const news = this.#credentials.call(asked.partition);
    let timer: NodeJS.Timeout | undefined;
    const waited = new Promise<typeof TURN_TIMED_OUT>((resolve) => (timer = setTimeout(resolve, turnWaitMs, TURN_TIMED_OUT)).unref());
    const failure = await Promise.race([verdict, waited]).finally(() => clearTimeout(timer));
    const refusal = news.refusedSince();
    if (refusal !== undefined) throw refusal.asRemembered();
    // As long as a call may wait its turn in the budget; then what it would get (a stale entry, where one is kept).
    if (failure === TURN_TIMED_OUT) {
      const retryAfter = Math.max(1, Math.ceil(turnWaitMs / 1000));
      const busy = upstreamBusy(`no call to Deskie could go out in time: its first call with this credential is still under way; retry in ${retryAfter} s`, retryAfter, 'budget-exhausted');
      return this.#failed(busy, asked, store.get(asked.key), undefined);
    }
    // The calls behind one the budget did not let out in time would not go out either: a second wait would double the client's.
    if (failure instanceof ProxyError && (failure.failure === 'budget-exhausted' || failure.failure === 'circuit-open')) {
      return this.#failed(failure, asked, store.get(asked.key), undefined);
    }
    return this.#answer(asked, clock(), variant, priority, false);
  }

  async #fetch(asked: Asked, held: CachedAnswer | undefined, nowMs: number, variant: Variant, priority: UpstreamCall['priority']): Promise<StatsAnswer> {
    const { store } = this.#options;
    const { key, partition } = asked;
    this.#throwIfRefused(asked, nowMs);
    // Still fresh: here only because the credential is due its recheck.
    const rechecked = held !== undefined && nowMs < held.expiresAtMs ? true : undefined;
    const call = this.#call(asked, priority, held);
    try {
      const result = await store.fetch(
        key,
        () => this.#load(asked, call, renderedVariants(held, variant), held?.longestGapMs ?? 0),
        // Another replica's answer to a call made after this recheck was decided proves as much as this one's would.
        this.#reusable(partition, rechecked ? nowMs + 1 : Number.NEGATIVE_INFINITY),
      );
      this.#acceptedElsewhere(result, call);
      if (result.outcome === 'collapsed') return { ...result, replacesExpired: held !== undefined, rechecked };
      if (result.outcome === 'hit') return result;
      if (!result.stored) this.#logUnstored(key, result);
      return rechecked ? { ...result, rechecked } : result;
    } catch (error) {
      return this.#failed(error, asked, held, rechecked);
    }
  }

  /** When Deskie could not answer (not a refusal), an expired entry still kept answers instead (stale-if-error); else `error` is thrown. */
  async #failed(error: unknown, { key, partition }: Asked, held: CachedAnswer | undefined, rechecked: true | undefined): Promise<StatsAnswer> {
    const { store, clock } = this.#options;
    const detail = upstreamFailureOf(error);
    if (detail === undefined) throw error;
    if (rechecked) this.#credentials.recheckFailed(partition);
    // A shared store holds only fresh answers in this process: an expired one is asked of Redis.
    const kept = held ?? (await store.peek(key));
    if (kept === undefined || clock() >= kept.keepUntilMs) throw error;
    const status = error instanceof UpstreamAnswer ? error.statusCode : undefined;
    return { answer: kept, outcome: 'stale', stored: true, failure: { detail, status }, rechecked };
  }

  #call({ authorization, partition }: Asked, priority: UpstreamCall['priority'], held: CachedAnswer | undefined): Call {
    return { ...this.#credentials.call(partition), authorization, priority, expectedCalls: held?.upstreamCalls ?? 1 };
  }

  /** Another replica's answer may serve if fresh, asked no earlier than `askedAfterMs`, and vouched for by the credential's standing. */
  #reusable(partition: string, askedAfterMs: number): ReusePolicy {
    return (answer) => {
      const nowMs = this.#options.clock();
      return nowMs < answer.expiresAtMs && answer.askedAtMs >= askedAfterMs && this.#credentials.vouchesFor(partition, answer.askedAtMs, nowMs);
    };
  }

  /** An answer fetched by another call tells Deskie accepted the credential when it was asked, unless refused here since. */
  #acceptedElsewhere(result: StoreResult, credential: CredentialCall): void {
    if (result.outcome !== 'hit' && result.outcome !== 'collapsed') return;
    const refusal = credential.refusedSince();
    if (refusal !== undefined) throw refusal.asRemembered();
    this.#credentials.acceptedAt(credential.partition, result.answer.askedAtMs);
  }

  /** Fetches from Deskie and renders `variants` (the asking request's, and those in use on the entry replaced) before it is stored. */
  async #load(asked: Asked, call: Call, variants: readonly Variant[], previousGapMs: number): Promise<CachedAnswer> {
    const { upstream, clock, lifetimes, keeping } = this.#options;
    const { key, query } = asked;
    const askedAtMs = clock();
    let page;
    try {
      page = await upstream.fetch(query, call);
    } catch (error) {
      await this.#rememberRefusal(error, asked, askedAtMs);
      throw error;
    }
    // Refused while this call ran (its partition has been dropped): nothing of it is kept or served.
    const refusal = call.refusedSince();
    if (refusal !== undefined) throw refusal.asRemembered();
    const receivedAtMs = clock();
    const { window } = query;
    const span = { fromMs: window.from.toMillis(), toMs: window.to.toMillis(), zone: window.from.zoneName ?? 'UTC' };
    const fetched = answerSource(query.endpoint.name, page.body, page.contentType, span);
    const { source, representations } = withOwnedBytes(fetched, variants.map((variant) => renderVariant(fetched, key, variant, page.parsed)));
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

  /** One refresh per entry; a failed one is not retried: on expiry the next request fetches (and falls back to it if Deskie fails). */
  #refreshAhead(asked: Asked, held: CachedAnswer): void {
    if (this.#closed || this.#refreshStarted.has(held)) return;
    this.#refreshStarted.add(held);
    // Another replica's newer answer is the refresh: a hot key is refreshed once for the cluster.
    this.#refreshInBackground(asked, held, held.askedAtMs + 1);
  }

  /** A background refresh for the credential's recheck, one per partition at a time; Deskie failing it defers the next (RECHECK_RETRY_MS). */
  #recheckAhead(asked: Asked, held: CachedAnswer, nowMs: number): void {
    const { partition } = asked;
    if (this.#closed || !this.#credentials.startRecheckAhead(partition, nowMs)) return;
    // Another replica's answer rechecks the credential if it leaves it accepted for a while.
    this.#refreshInBackground(asked, held, this.#credentials.recheckAheadAskedAfter(nowMs), (error) =>
      this.#credentials.recheckAheadEnded(partition, upstreamFailureOf(error) !== undefined),
    );
  }

  /** Refreshes `held` with no client waiting; `settled` hears what it failed with (undefined when it did not). */
  #refreshInBackground(asked: Asked, held: CachedAnswer, askedAfterMs: number, settled?: (error: unknown) => void): void {
    const { store, log } = this.#options;
    const { key, partition } = asked;
    const call = this.#call(asked, 'refresh', held);
    const refresh = store
      .fetch(key, () => this.#load(asked, call, renderedVariants(held), held.longestGapMs), this.#reusable(partition, askedAfterMs))
      .then((result) => {
        this.#acceptedElsewhere(result, call);
        log.debug({ key, outcome: result.outcome, stored: result.stored }, 'refreshed ahead of expiry');
        settled?.(undefined);
      })
      .catch((error: unknown) => {
        log.info({ key, err: error }, 'refresh ahead failed; the entry stays until it expires');
        settled?.(error);
      })
      .finally(() => this.#refreshes.delete(refresh));
    this.#refreshes.add(refresh);
  }

  /** A 401 or 403 is remembered for the credential, a `page=all` too large for its key until it would have expired: asking again changes neither. */
  async #rememberRefusal(error: unknown, { key, query, partition }: Asked, askedAtMs: number): Promise<void> {
    if (error instanceof UpstreamAnswer && error.refusesCredential) {
      this.#credentials.refused(partition, error, askedAtMs);
      // Its entries go every time, not only for a partition remembered as accepted (one forgotten may still hold some);
      // the refusal is remembered for AUTH_FAILURE_TTL_SECONDS, so that is at most once in that time.
      const { store, log } = this.#options;
      const removed = await store.dropEnding(`#${partition}`);
      if (removed > 0) {
        const status = error.statusCode;
        log.warn({ partition: partition.slice(0, PARTITION_ID_LENGTH), status, removed }, "Deskie refused a credential: its cached answers were dropped");
      }
    } else if (error instanceof ProxyError && error.code === 'TOO_MANY_PAGES') {
      this.#tooManyPages.set(key, { error, untilMs: freshUntil(query, askedAtMs, this.#options.lifetimes) });
    }
  }

  #throwIfRefused({ key, partition }: Asked, nowMs: number): void {
    const credentialRefusal = this.#credentials.rememberedRefusal(partition, nowMs);
    if (credentialRefusal !== undefined) throw credentialRefusal.asRemembered();
    const tooManyPages = this.#tooManyPages.get(key);
    if (tooManyPages === undefined) return;
    if (nowMs < tooManyPages.untilMs) throw tooManyPages.error.asRemembered();
    this.#tooManyPages.delete(key);
  }

  #logUnstored(key: string, { answer, purged }: StoreResult): void {
    const { log } = this.#options;
    if (purged === true) {
      // Its caller still gets it (it was fetched for them); the next request asks Deskie anew.
      log.info({ key }, 'entries were purged while Deskie answered: answered, not stored');
    } else if (answer.keepUntilMs <= answer.fetchedAtMs) {
      log.info({ key }, 'the period changed window while Deskie answered: answered, not stored');
    } else {
      const bytes = answerBytes(answer);
      log.warn({ key, bytes }, 'an answer is too large for the cache and is not stored: every repeat costs Deskie calls; raise CACHE_MAX_BYTES');
    }
  }
}

/**
 * A hit refreshes ahead at the last request before expiry: when the next, as far off as the longest gap seen (this life
 * or the one before), would find it expired; earlier costs calls for nothing. Never before refreshAtMs.
 */
function refreshAheadDue(held: CachedAnswer, nowMs: number): boolean {
  return nowMs >= held.refreshAtMs && nowMs + Math.max(held.longestGapMs, held.previousGapMs) >= held.expiresAtMs;
}

/** The variants rendered on `held` (those in use), and `also`: a new answer for the key renders them up front. */
function renderedVariants(held: CachedAnswer | undefined, also?: Variant): Variant[] {
  const variants = also === undefined ? [] : [also];
  for (const { variant } of held?.variants ?? []) if (variant !== also) variants.push(variant);
  return variants;
}
