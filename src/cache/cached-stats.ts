import { LRUCache } from 'lru-cache';
import type { FastifyBaseLogger } from 'fastify';
import type { Lifetimes, Period, PeriodWindows } from '../deskie/periods.js';
import type { StatsQuery } from '../deskie/query.js';
import { ProxyError, UpstreamAnswer, type UpstreamFailure, upstreamBusy, upstreamFailureOf } from '../http/errors.js';
import { answerSource, ownedBy, renderVariant, type Representation, withOwnedBytes } from '../formats/render.js';
import type { Variant } from '../formats/representations.js';
import type { DeskieUpstream, UpstreamCall } from '../upstream/deskie.js';
import { type CredentialCall, CredentialStanding } from './credential-standing.js';
import { answerTimes, cacheKey, credentialPartition, freshUntil, type KeepingRules } from './policy.js';
import type { CancelTask, Scheduler } from './scheduler.js';
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
  /** How long past its expiry an entry whose refresh is due or under way answers at once (STALE_WHILE_REVALIDATE_SECONDS). */
  readonly staleWhileRevalidateMs: number;
  /** Runs each refresh in phase when due, on `clock`. */
  readonly scheduler: Scheduler;
  /** The account's period windows: a refresh due at a window change asks for the next window. */
  readonly windows: PeriodWindows;
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
  /** With `stale`: the entry expired and its refresh is due or under way (RFC 5861 stale-while-revalidate); Deskie did not fail. */
  readonly revalidating?: boolean;
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

/** A key's refresh in phase with Deskie's cache, due at its answer's refreshAtMs, with the credential that last asked. */
interface PhaseRefresh {
  readonly asked: Asked;
  /** The answer it replaces, which answers meanwhile (stale-while-revalidate). */
  readonly answer: CachedAnswer;
  cancel: CancelTask;
  running: boolean;
  /** A request came while the call ran: its answer was asked for in its own lifetime. */
  askedWhileRunning: boolean;
}

/** Answers from the store while fresh and the credential lately accepted, else Deskie once per key; stale-if-error. */
export class CachedStats {
  readonly #options: CachedStatsOptions;
  readonly #credentials: CredentialStanding;
  /** Authorization value -> its HMAC partition, computed once per credential. */
  readonly #partitions: LRUCache<string, string>;
  /** `page=all` keys Deskie's answer had too many pages for, until the answer would have expired. */
  readonly #tooManyPages = new LRUCache<string, { readonly error: ProxyError; readonly untilMs: number }>({ max: REMEMBERED_REFUSALS });
  /** Keys asked for while fresh, by key: each is refreshed once Deskie's cache for it has expired. */
  readonly #phases = new Map<string, PhaseRefresh>();
  readonly #refreshes = new Set<Promise<void>>();
  /** Each checked query as the credential that last asked it: the same key string, which keeps its hash, while it asks again. */
  readonly #lastAsked = new WeakMap<StatsQuery, Asked>();
  /** Live subscribers (event streams) by key: told when a scheduled refresh of their key settles or its window rolls. */
  readonly #watchers = new Map<string, Set<() => void>>();
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
    const fresh = held !== undefined && nowMs < held.expiresAtMs;
    const standing = fresh ? this.#credentials.standing(asked.partition, nowMs) : 'due';
    if (!fresh || standing === 'due') {
      const fetch = (): Promise<StatsAnswer> => (inTurn ? this.#fetchInTurn(asked, held, nowMs, variant, priority) : this.#fetch(asked, held, nowMs, variant, priority));
      const phase = fresh ? undefined : this.#revalidating(asked, held, nowMs);
      if (phase === undefined) return fetch();
      return held === phase.answer ? this.#answerRevalidating(phase, nowMs) : this.#revalidatingIfKept(phase, nowMs, fetch);
    }
    held.lastAskedAtMs = nowMs;
    held.hits += 1;
    // A `page=all` entry would cost all its pages for what one page proves: another entry rechecks it, or its own request when due.
    if (standing === 'due soon' && !query.allPages) this.#recheckAhead(asked, held, nowMs);
    this.#askedWhileFresh(asked, held);
    return { answer: held, outcome: 'hit', stored: true };
  }

  /** The variant of an answer, rendered now when this is its first request, kept with the entry and counted by the store. */
  representation(answer: CachedAnswer, variant: Variant): Representation {
    const rendered = ownedBy(answer.source, renderVariant(answer.source, answer.key, variant));
    answer.variants.push(rendered);
    this.#options.store.resize(answer);
    return rendered;
  }

  /** Refreshes as if polled; `changed` hears each refresh settle or the window roll, and re-asks. Returns unwatch. */
  watch(query: StatsQuery, authorization: string, changed: () => void): () => void {
    const asked = this.#asked(query, authorization);
    let watchers = this.#watchers.get(asked.key);
    if (watchers === undefined) this.#watchers.set(asked.key, (watchers = new Set()));
    watchers.add(changed);
    // An answer its watcher fetched (a miss) was not asked for again yet: being watched is.
    const held = this.#options.store.get(asked.key);
    if (held !== undefined && this.#options.clock() < held.expiresAtMs) this.#askedWhileFresh(asked, held);
    return () => {
      watchers.delete(changed);
      if (watchers.size === 0 && this.#watchers.get(asked.key) === watchers) this.#watchers.delete(asked.key);
    };
  }

  /** Ends background refreshes: none starts, those due are cancelled, and those under way are waited for. */
  async close(): Promise<void> {
    this.#closed = true;
    for (const phase of this.#phases.values()) phase.cancel();
    this.#phases.clear();
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

  // A credential not accepted in the last CALLS_AT_ONCE_MS is asked about once for all its keys; the others await that
  // call's verdict (a 401 or 403 too), so a revoked key costs one call however many panels ask.
  async #fetchInTurn(asked: Asked, held: CachedAnswer | undefined, nowMs: number, variant: Variant, priority: UpstreamCall['priority']): Promise<StatsAnswer> {
    const { key, partition } = asked;
    this.#throwIfRefused(asked, nowMs);
    if (this.#credentials.callsAtOnce(partition, nowMs)) return this.#fetch(asked, held, nowMs, variant, priority);
    const turn = this.#credentials.turn(partition, key);
    if (turn.verdict !== undefined) return this.#afterVerdict(asked, turn.verdict, variant, priority);
    const fetching = this.#fetch(asked, held, nowMs, variant, priority);
    fetching.then(() => turn.done(), (error: unknown) => turn.done(error));
    return fetching;
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
        () => this.#load(asked, call, renderedVariants(held, variant)),
        // Another replica's answer to a call made after this recheck was decided proves as much as this one's would.
        this.#reusable(partition, rechecked ? nowMs + 1 : Number.NEGATIVE_INFINITY),
      );
      this.#acceptedElsewhere(result, call);
      if (result.outcome === 'collapsed') return { ...result, replacesExpired: held !== undefined, rechecked };
      if (result.outcome === 'hit') {
        // Another replica's fresh answer, asked for here: this replica has its refresh due too (one call goes for the cluster).
        this.#askedWhileFresh(asked, result.answer);
        return result;
      }
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
  async #load(asked: Asked, call: Call, variants: readonly Variant[]): Promise<CachedAnswer> {
    const { upstream, clock, lifetimes, keeping } = this.#options;
    const { key, query } = asked;
    const askedAtMs = clock();
    const page = await upstream.fetch(query, call).catch(async (error: unknown) => {
      await this.#rememberRefusal(error, asked, askedAtMs);
      throw error;
    });
    // Refused while this call ran (its partition has been dropped): nothing of it is kept or served.
    const refusal = call.refusedSince();
    if (refusal !== undefined) throw refusal.asRemembered();
    const receivedAtMs = clock();
    // Sent once its turn came: the answer's time less Deskie's (a merge's last page went out at the latest before the answer).
    const sentAtMs = receivedAtMs - (page.calls === 1 ? page.upstreamMs : 0);
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
      upstreamCalls: page.calls,
      ...answerTimes(query, { askedAtMs, sentAtMs, receivedAtMs }, lifetimes, keeping),
    };
  }

  /** A fresh answer was asked for: its key is refreshed when Deskie's cache for it has expired (refreshAtMs). */
  #askedWhileFresh(asked: Asked, held: CachedAnswer): void {
    const phase = this.#phases.get(asked.key);
    if (phase?.answer === held) return;
    if (phase?.running) {
      phase.askedWhileRunning = true;
      return;
    }
    // Due for an answer since replaced (a recheck's, another request's): the one now held sets the time.
    phase?.cancel();
    this.#schedule(asked, held);
  }

  #schedule(asked: Asked, answer: CachedAnswer): void {
    if (this.#closed || !Number.isFinite(answer.refreshAtMs)) return;
    const phase: PhaseRefresh = { asked, answer, cancel: () => {}, running: false, askedWhileRunning: false };
    this.#phases.set(asked.key, phase);
    phase.cancel = this.#options.scheduler.at(answer.refreshAtMs, () => this.#refreshInPhase(phase));
  }

  /** Refresh whose expired answer may serve STALE_WHILE_REVALIDATE_SECONDS more; not for refused or due credentials. */
  #revalidating({ key, partition }: Asked, held: CachedAnswer | undefined, nowMs: number): PhaseRefresh | undefined {
    const phase = this.#phases.get(key);
    if (phase === undefined || (held !== undefined && held !== phase.answer)) return undefined;
    const { expiresAtMs } = phase.answer;
    if (nowMs < expiresAtMs || nowMs >= expiresAtMs + this.#options.staleWhileRevalidateMs) return undefined;
    if (this.#credentials.rememberedRefusal(partition, nowMs) !== undefined || this.#credentials.standing(partition, nowMs) === 'due') return undefined;
    return phase;
  }

  /** The expired answer, marked revalidating (RFC 5861); a refresh whose timer is late (the clock jumped past it) starts now. */
  #answerRevalidating(phase: PhaseRefresh, nowMs: number): StatsAnswer {
    if (phase.running) phase.askedWhileRunning = true;
    else if (nowMs >= phase.answer.refreshAtMs) this.#refreshInPhase(phase);
    return { answer: phase.answer, outcome: 'stale', stored: true, revalidating: true };
  }

  /** An answer this process no longer holds (a shared store's copies are fresh ones) answers only while the store keeps it: not once purged. */
  async #revalidatingIfKept(phase: PhaseRefresh, nowMs: number, fetch: () => Promise<StatsAnswer>): Promise<StatsAnswer> {
    const kept = await this.#options.store.peek(phase.asked.key);
    if (kept !== undefined && kept.fetchedAtMs === phase.answer.fetchedAtMs && kept.askedAtMs === phase.answer.askedAtMs) return this.#answerRevalidating(phase, nowMs);
    return fetch();
  }

  /** The due refresh: for the same key, or across a window change for the next window's; nothing if a newer answer is held. */
  #refreshInPhase(phase: PhaseRefresh): void {
    const { store, clock } = this.#options;
    const { asked, answer } = phase;
    if (this.#closed || phase.running || this.#phases.get(asked.key) !== phase) return;
    phase.cancel();
    const nowMs = clock();
    const changesAtMs = asked.query.window.changesAt?.toMillis() ?? Number.POSITIVE_INFINITY;
    if (nowMs >= changesAtMs) {
      this.#phases.delete(asked.key);
      this.#rollOver(asked, answer, nowMs, changesAtMs);
      this.#tellWatchers(asked.key);
      return;
    }
    const current = store.get(asked.key);
    if (current !== undefined && current !== answer && nowMs < current.expiresAtMs) {
      this.#phases.delete(asked.key);
      // Replaced meanwhile (a recheck's answer): a watcher asking again sees it, and its asking schedules the next refresh.
      this.#tellWatchers(asked.key);
      return;
    }
    phase.running = true;
    // Another replica's newer answer is the refresh: a key is refreshed once for the cluster.
    this.#refreshInBackground(asked, answer, answer.askedAtMs + 1, (error, result) => {
      if (this.#phases.get(asked.key) === phase) this.#phases.delete(asked.key);
      if (error === undefined && result !== undefined && result.stored) {
        // Asked for while it ran, watched, or the window's last answer (asked for in this window): its own refresh is due too.
        const lastOfWindow = result.answer.expiresAtMs >= changesAtMs;
        if (phase.askedWhileRunning || lastOfWindow || this.#watchers.has(asked.key)) this.#schedule(asked, result.answer);
      }
      this.#tellWatchers(asked.key);
    });
  }

  #tellWatchers(key: string): void {
    for (const changed of [...(this.#watchers.get(key) ?? [])]) changed();
  }

  /** The next window's answer for a query asked for in the window that just ended, unless already held. */
  #rollOver(asked: Asked, previous: CachedAnswer, nowMs: number, changesAtMs: number): void {
    const { query, partition } = asked;
    const next: StatsQuery = { ...query, window: this.#options.windows.at(query.freshness as Period, nowMs) };
    const nextAsked: Asked = { ...asked, query: next, key: cacheKey(next, partition) };
    const held = this.#options.store.get(nextAsked.key);
    if (held !== undefined && nowMs < held.expiresAtMs) return;
    // The variants in use are rendered up front; an answer asked for since the change (another replica's) serves.
    this.#refreshInBackground(nextAsked, previous, changesAtMs);
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

  /** Fetches `asked` with no client waiting, at the budget's lower priority, rendering the variants in use on `held`. */
  #refreshInBackground(asked: Asked, held: CachedAnswer, askedAfterMs: number, settled?: (error: unknown, result?: StoreResult) => void): void {
    const { store, log } = this.#options;
    const { key, partition } = asked;
    const call = this.#call(asked, 'refresh', held);
    const refresh = Promise.resolve()
      .then(() => {
        this.#throwIfRefused(asked, this.#options.clock());
        return store.fetch(key, () => this.#load(asked, call, renderedVariants(held)), this.#reusable(partition, askedAfterMs));
      })
      .then((result) => {
        this.#acceptedElsewhere(result, call);
        log.debug({ key, outcome: result.outcome, stored: result.stored }, 'refreshed in the background');
        settled?.(undefined, result);
      })
      .catch((error: unknown) => {
        log.info({ key, err: error }, 'background refresh failed: the entry stays as it was, and a request once it has expired asks Deskie itself');
        settled?.(error);
      })
      .finally(() => this.#refreshes.delete(refresh));
    this.#refreshes.add(refresh);
  }

  /** A 401 or 403 is remembered for the credential, a `page=all` too large for its key until it would have expired: asking again changes neither. */
  async #rememberRefusal(error: unknown, { key, query, partition }: Asked, askedAtMs: number): Promise<void> {
    if (error instanceof UpstreamAnswer && error.refusesCredential) {
      this.#credentials.refused(partition, error, askedAtMs);
      // Every time, not only for a partition remembered as accepted: at most once per AUTH_FAILURE_TTL_SECONDS.
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

/** The variants rendered on `held` (those in use), and `also`: a new answer for the key renders them up front. */
function renderedVariants(held: CachedAnswer | undefined, also?: Variant): Variant[] {
  const variants = also === undefined ? [] : [also];
  for (const { variant } of held?.variants ?? []) if (variant !== also) variants.push(variant);
  return variants;
}
