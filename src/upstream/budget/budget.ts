import type { FastifyBaseLogger } from 'fastify';
import { overBudget, shuttingDown, upstreamBusy } from '../../http/errors.js';
import type { SharedAccount, SharedBudget } from './shared.js';

/** Deskie counts its limit per minute (deskie-api-notes.md, "Rate limits"). */
export const BUDGET_WINDOW_MS = 60_000;
/** The smallest plan's limit: what is assumed until Deskie's headers tell the account's own. */
export const SMALLEST_PLAN_PER_MINUTE = 20;
/** How long a 429 closes the way to Deskie when it says nothing of when to come back. */
export const DEFAULT_CIRCUIT_OPEN_SECONDS = 60;
/** Largest `retry_after` taken from Deskie; anything longer is not a usable number. */
export const MAX_RETRY_AFTER_SECONDS = 3_600;
/** Shortest wait before the queue is looked at again for calls the clock lets out. */
const MIN_WAKE_MS = 25;
/**
 * Longest wait, in real ms, before a call the shared log refused asks again:
 * another replica may give back calls it took and never sent before the
 * oldest leaves the minute.
 */
const SHARED_RETRY_MS = 1_000;

/** Client misses go out before background refreshes. */
export type CallPriority = 'client' | 'refresh';

export interface BudgetOptions {
  /** The operator's cap on calls a minute (UPSTREAM_RATE_PER_MIN), if set. */
  readonly ratePerMinute: number | undefined;
  /** Fraction of the account's limit left to its other integrations (UPSTREAM_RESERVE). */
  readonly reserve: number;
  /** Most calls in flight at once (UPSTREAM_CONCURRENCY). */
  readonly concurrency: number;
  /** Share of the calls a minute and of the concurrency that credentials Deskie has never accepted may use. */
  readonly newCredentialShare: number;
  /** Most calls waiting for their turn (UPSTREAM_QUEUE_LENGTH). */
  readonly queueLength: number;
  /** Epoch ms; the minute, pauses and the circuit are measured on it, so tests move time instead of sleeping. */
  readonly clock: () => number;
  readonly log: FastifyBaseLogger;
  /**
   * The part the replicas share in Redis (REDIS_URL): their calls of the
   * minute, the account's limit, pause and circuit. Without it the budget is
   * this process's alone. The budget closes it.
   */
  readonly shared?: SharedBudget | undefined;
}

export interface BudgetRequest {
  /** Calls reserved at once: 1, or every page a `page=all` merge is known to need. */
  readonly calls: number;
  readonly priority: CallPriority;
  /**
   * Whether Deskie has never accepted the credential (it then draws from the
   * small share). Asked each time the queue is looked at, so calls that waited
   * behind a credential's first answer leave the share once it is accepted.
   */
  readonly isNewCredential: () => boolean;
  /** `performance.now()` by which the calls must be granted, or the wait ends with a 503. */
  readonly deadline: number;
}

/** What Deskie said about the account's limit on one answer (deskie-api-notes.md, "Rate limits"). */
export interface DeskieLimitHeaders {
  readonly statusCode: number;
  readonly rateLimitPerMinute: string | undefined;
  readonly callsLeft: string | undefined;
  /** Seconds, already checked (parseRetryAfter). */
  readonly retryAfterSeconds: number | undefined;
}

/** The budget's state, for /healthz and logs. */
export interface BudgetSnapshot {
  readonly limitPerMinute: number;
  readonly accountLimitPerMinute: number | null;
  readonly callsLeftThisMinute: number;
  readonly deskieCallsLeft: number | null;
  readonly state: BudgetState;
  readonly inFlight: number;
  readonly queued: number;
  readonly sharing: BudgetSharing;
}

/**
 * Where the minute's calls are counted: with the other replicas in Redis;
 * by this replica alone on its share of the limit while Redis is
 * unreachable; or locally, without Redis.
 */
export type BudgetSharing =
  | { readonly mode: 'redis'; readonly replicas: number }
  | { readonly mode: 'replica-share'; readonly replicas: number; readonly perMinute: number }
  | { readonly mode: 'local' };

type BudgetState = 'open' | 'paused' | 'circuit-open';

interface Waiter {
  readonly request: BudgetRequest;
  readonly grant: BudgetGrant;
  /** A grant that asks for more calls already holds its slot. */
  readonly needsSlot: boolean;
  readonly resolve: () => void;
  readonly reject: (error: Error) => void;
  readonly timer: NodeJS.Timeout;
}

/** A granted call waiting for room in the shared log. */
interface SharedWait {
  readonly reject: (error: Error) => void;
  readonly timer: NodeJS.Timeout;
}

/**
 * One budget for every call to Deskie (client misses, `page=all` pages,
 * refreshes), because Deskie's limit belongs to the whole account:
 * - at most `limitPerMinute` calls in any 60 seconds (a sliding log, so no
 *   minute boundary lets twice the limit through): the operator's cap, else
 *   20 until Deskie's `rate_limit_per_minute` says more, less the reserve;
 * - `api_calls_left` at or below the reserve pauses calls for a minute;
 * - a 429 opens a circuit for its `retry_after` (60 s without one): no call
 *   goes out and waiting clients are answered at once;
 * - at most `concurrency` calls in flight;
 * - credentials Deskie has never accepted share a small part of all of it,
 *   so junk credentials cannot starve known dashboards.
 * Calls wait in a bounded queue, client misses before refreshes, each until
 * its own deadline. A call is counted when it is sent, not when reserved.
 *
 * With a SharedBudget (several replicas, one Redis), the minute's limit,
 * pause and circuit are the account's across replicas: a call the local
 * budget grants is handed out only once the shared log has room for it too
 * (see #takeShared), and each replica adopts the others' 429s and pauses.
 * While Redis is unreachable the local log is held to this replica's share.
 */
export class UpstreamBudget {
  readonly #options: BudgetOptions;
  /** Clock times of the calls sent in the last minute, oldest first; the same for new credentials. */
  readonly #sent: number[] = [];
  readonly #sentNew: number[] = [];
  #reserved = 0;
  #reservedNew = 0;
  #inFlight = 0;
  #inFlightNew = 0;
  #accountLimit: number | null = null;
  #deskieCallsLeft: number | null = null;
  #pausedUntil = 0;
  #circuitOpenUntil = 0;
  #state: BudgetState = 'open';
  readonly #queues: Record<CallPriority, Waiter[]> = { client: [], refresh: [] };
  #wakeTimer: NodeJS.Timeout | undefined;
  #wakeTimerAt = Number.POSITIVE_INFINITY;
  readonly #shared: SharedBudget | undefined;
  readonly #sharedWaits = new Set<SharedWait>();
  #closed = false;

  constructor(options: BudgetOptions) {
    this.#options = options;
    this.#shared = options.shared;
    this.#shared?.attach({ account: (account) => this.#adopt(account), modeChanged: () => this.#dispatch() });
  }

  /** Calls allowed in any minute. */
  get limitPerMinute(): number {
    const { ratePerMinute, reserve } = this.#options;
    if (this.#accountLimit === null) return ratePerMinute ?? SMALLEST_PLAN_PER_MINUTE;
    const ours = Math.max(1, Math.floor(this.#accountLimit * (1 - reserve)));
    return Math.min(ratePerMinute ?? ours, ours);
  }

  /**
   * Reserves `calls` calls and one slot in flight, waiting in the queue until
   * they fit or the deadline passes. Refused at once while the circuit is
   * open, when the queue is full, or when the calls could never fit in a minute.
   */
  async reserve(request: BudgetRequest): Promise<BudgetGrant> {
    const grant = new BudgetGrant(this, request);
    await this.#wait(request, grant, true);
    if (this.#shared !== undefined) {
      try {
        await this.#takeShared(this.#shared, grant, request.calls, request.deadline);
      } catch (error) {
        grant.release();
        throw error;
      }
    }
    return grant;
  }

  /** Where the minute's calls are counted (for /readyz and the metrics). */
  get sharing(): BudgetSharing {
    const shared = this.#shared;
    if (shared === undefined) return { mode: 'local' };
    const { replicas } = shared;
    return shared.mode === 'redis' ? { mode: 'redis', replicas } : { mode: 'replica-share', replicas, perMinute: shared.share(this.limitPerMinute) };
  }

  /** Deskie's answer tells the budget about the account: its limit, what is left, a 429. */
  observe(headers: DeskieLimitHeaders): void {
    const now = this.#options.clock();
    const before = { accountLimit: this.#accountLimit, pausedUntil: this.#pausedUntil, circuitOpenUntil: this.#circuitOpenUntil };
    const limit = wholeNumber(headers.rateLimitPerMinute);
    if (limit !== undefined && limit > 0) this.#accountLimit = limit;
    const left = wholeNumber(headers.callsLeft);
    if (left !== undefined) {
      this.#deskieCallsLeft = left;
      // With a 429, its retry_after says when the minute ends: the circuit covers it.
      if (headers.statusCode !== 429 && left <= this.#reserveCalls() && this.#pausedUntil < now + BUDGET_WINDOW_MS) {
        this.#pausedUntil = now + BUDGET_WINDOW_MS;
      }
    }
    if (headers.statusCode === 429) {
      const seconds = headers.retryAfterSeconds ?? DEFAULT_CIRCUIT_OPEN_SECONDS;
      this.#circuitOpenUntil = Math.max(this.#circuitOpenUntil, now + seconds * 1000);
    }
    this.#updateState(now);
    this.#dispatch();
    const account: SharedAccount = {
      accountLimit: this.#accountLimit,
      callsLeft: this.#deskieCallsLeft,
      pausedUntil: this.#pausedUntil,
      circuitOpenUntil: this.#circuitOpenUntil,
    };
    // A 429, a pause or a new limit stops or changes every replica at once; calls left only matter at the next take.
    const urgent =
      account.accountLimit !== before.accountLimit || account.pausedUntil !== before.pausedUntil || account.circuitOpenUntil !== before.circuitOpenUntil;
    this.#shared?.report(account, urgent);
  }

  snapshot(): BudgetSnapshot {
    const now = this.#options.clock();
    this.#updateState(now);
    return {
      limitPerMinute: this.limitPerMinute,
      accountLimitPerMinute: this.#accountLimit,
      callsLeftThisMinute: Math.max(0, this.#windowLimit() - this.#used(this.#sent, now) - this.#reserved),
      deskieCallsLeft: this.#deskieCallsLeft,
      state: this.#state,
      inFlight: this.#inFlight,
      queued: this.#queues.client.length + this.#queues.refresh.length,
      sharing: this.sharing,
    };
  }

  /** Refuses every waiting call and any new one; calls in flight finish. */
  close(): void {
    this.#closed = true;
    clearTimeout(this.#wakeTimer);
    for (const queue of Object.values(this.#queues)) {
      for (const waiter of queue.splice(0)) {
        clearTimeout(waiter.timer);
        waiter.reject(shuttingDown());
      }
    }
    this.#refuseSharedWaits(shuttingDown());
    this.#shared?.close();
  }

  /** @internal BudgetGrant's way in. */
  extend(grant: BudgetGrant, calls: number, deadline: number): Promise<void> {
    const granted = this.#wait({ ...grant.request, calls, deadline }, grant, false);
    const shared = this.#shared;
    return shared === undefined || calls === 0 ? granted : granted.then(() => this.#extendShared(shared, grant, calls, deadline));
  }

  /** The calls an extension was granted here, taken from the shared log too. */
  async #extendShared(shared: SharedBudget, grant: BudgetGrant, calls: number, deadline: number): Promise<void> {
    try {
      await this.#takeShared(shared, grant, calls, deadline);
    } catch (error) {
      // The grant stays (its earlier calls may be under way); only these calls go back.
      this.#reserved -= calls;
      if (grant.newCredential) this.#reservedNew -= calls;
      grant.add(-calls);
      this.#dispatch();
      throw error;
    }
  }

  /** @internal A reserved call goes out now (`member`: its entry in the shared log, if it took one). */
  spend(newCredential: boolean, member?: string): void {
    const now = this.#options.clock();
    this.#reserved -= 1;
    this.#sent.push(now);
    if (newCredential) {
      this.#reservedNew -= 1;
      this.#sentNew.push(now);
    }
    this.#shared?.sent(member);
  }

  /** @internal Deskie accepted the grant's credential: its slot and reserved calls leave the new-credential share. */
  trust(grant: BudgetGrant): void {
    this.#inFlightNew -= 1;
    this.#reservedNew -= grant.remaining;
    this.#dispatch();
  }

  /** @internal The grant is done: its slot and unspent calls go back, here and in the shared log. */
  release(newCredential: boolean, unspent: number, unspentMembers: readonly string[] = []): void {
    this.#shared?.giveBack(unspentMembers);
    this.#inFlight -= 1;
    this.#reserved -= unspent;
    if (newCredential) {
      this.#inFlightNew -= 1;
      this.#reservedNew -= unspent;
    }
    this.#dispatch();
  }

  #wait(request: BudgetRequest, grant: BudgetGrant, needsSlot: boolean): Promise<void> {
    if (this.#closed) return Promise.reject(shuttingDown());
    const now = this.#options.clock();
    this.#updateState(now);
    const total = request.calls + grant.spent + grant.remaining;
    const allowance = this.#allowance(needsSlot ? request.isNewCredential() : grant.newCredential);
    if (total > allowance) return Promise.reject(overBudget(total, allowance));
    if (this.#state === 'circuit-open') return Promise.reject(this.#busy(now));
    const queued = this.#queues.client.length + this.#queues.refresh.length;
    if (needsSlot && queued >= this.#options.queueLength) {
      return Promise.reject(upstreamBusy(`too many calls to Deskie are waiting (UPSTREAM_QUEUE_LENGTH ${this.#options.queueLength})`, this.#retryAfterSeconds(now), 'budget-exhausted'));
    }
    const remainingMs = request.deadline - performance.now();
    if (remainingMs <= 0) return Promise.reject(this.#busy(now));
    return new Promise<void>((resolve, reject) => {
      const waiter: Waiter = {
        request,
        grant,
        needsSlot,
        resolve,
        reject,
        timer: setTimeout(() => {
          this.#remove(waiter);
          reject(this.#busy(this.#options.clock()));
        }, remainingMs),
      };
      waiter.timer.unref();
      // A merge under way asks before anything new: it has already spent calls.
      if (needsSlot) this.#queues[request.priority].push(waiter);
      else this.#queues.client.unshift(waiter);
      this.#dispatch();
    });
  }

  /**
   * Grants waiting calls in order while they fit. A call blocked only by the
   * new-credential share lets the calls behind it pass; any other block stops
   * the queue (refreshes included) until a slot frees or the clock lets a
   * call out, whichever the block is waiting for.
   */
  #dispatch(): void {
    if (this.#closed) return;
    const now = this.#options.clock();
    this.#updateState(now);
    let wakeAt = Number.POSITIVE_INFINITY;
    for (const priority of ['client', 'refresh'] as const) {
      const queue = this.#queues[priority];
      for (let index = 0; index < queue.length; ) {
        const waiter = queue[index] as Waiter;
        const block = this.#blocked(waiter, now);
        if (block === undefined) {
          queue.splice(index, 1);
          clearTimeout(waiter.timer);
          this.#grant(waiter);
          continue;
        }
        wakeAt = Math.min(wakeAt, block.freesAt);
        if (!block.shareOnly) {
          this.#wakeAt(wakeAt, now);
          return;
        }
        index += 1;
      }
    }
    this.#wakeAt(wakeAt, now);
  }

  /**
   * Why a waiting call cannot go now, and when the clock will lift that
   * (+Infinity when only a released slot or call can); undefined if it can go.
   */
  #blocked({ request, grant, needsSlot }: Waiter, now: number): { shareOnly: boolean; freesAt: number } | undefined {
    const never = Number.POSITIVE_INFINITY;
    if (this.#state === 'paused') return { shareOnly: false, freesAt: this.#pausedUntil };
    if (this.#state === 'circuit-open') return { shareOnly: false, freesAt: this.#circuitOpenUntil };
    if (needsSlot && this.#inFlight >= this.#options.concurrency) return { shareOnly: false, freesAt: never };
    if (this.#used(this.#sent, now) + this.#reserved + request.calls > this.#windowLimit()) {
      return { shareOnly: false, freesAt: (this.#sent[0] ?? never) + BUDGET_WINDOW_MS };
    }
    if (!(needsSlot ? request.isNewCredential() : grant.newCredential)) return undefined;
    if (needsSlot && this.#inFlightNew >= this.#newCredentialSlots()) return { shareOnly: true, freesAt: never };
    if (this.#used(this.#sentNew, now) + this.#reservedNew + request.calls > this.#allowance(true, this.#windowLimit())) {
      return { shareOnly: true, freesAt: (this.#sentNew[0] ?? never) + BUDGET_WINDOW_MS };
    }
    return undefined;
  }

  #grant({ request, grant, needsSlot, resolve }: Waiter): void {
    if (needsSlot) {
      const newCredential = request.isNewCredential();
      this.#inFlight += 1;
      if (newCredential) this.#inFlightNew += 1;
      grant.granted(newCredential);
    }
    this.#reserved += request.calls;
    if (grant.newCredential) this.#reservedNew += request.calls;
    grant.add(request.calls);
    resolve();
  }

  #remove(waiter: Waiter): void {
    for (const queue of Object.values(this.#queues)) {
      const index = queue.indexOf(waiter);
      if (index !== -1) queue.splice(index, 1);
    }
  }

  /** Looks at the queue again when the clock lets a call out (the pause ends, the oldest call leaves the minute). */
  #wakeAt(at: number, now: number): void {
    if (at === Number.POSITIVE_INFINITY || (this.#wakeTimer !== undefined && this.#wakeTimerAt <= at)) return;
    clearTimeout(this.#wakeTimer);
    this.#wakeTimerAt = at;
    this.#wakeTimer = setTimeout(() => {
      this.#wakeTimer = undefined;
      this.#wakeTimerAt = Number.POSITIVE_INFINITY;
      this.#dispatch();
    }, Math.max(MIN_WAKE_MS, at - now));
    this.#wakeTimer.unref();
  }

  /**
   * The calls a minute this replica's own log is held to: the whole limit,
   * or its share of it while the shared log is unreachable. (Whether a merge
   * could ever fit, the 422, is still asked of the whole limit: the share is
   * a passing state, worth a 503 and a retry.)
   */
  #windowLimit(): number {
    const shared = this.#shared;
    const limit = this.limitPerMinute;
    return shared !== undefined && shared.mode === 'replica-share' ? shared.share(limit) : limit;
  }

  /**
   * After the local grant: the same calls taken from the log the replicas
   * share, so that together they stay under the limit. The grant keeps its
   * slot while it waits, so at most `concurrency` calls of this replica ask
   * Redis again (each ask bounded by REDIS_TIMEOUT_MS); the circuit, close
   * and the deadline end the wait at once. Taken at reserve time like the
   * local calls, so a merge waits or is refused before its first call;
   * whatever is not sent is given back on release.
   */
  async #takeShared(shared: SharedBudget, grant: BudgetGrant, calls: number, deadline: number): Promise<void> {
    let notBefore = 0;
    for (;;) {
      const now = this.#options.clock();
      if (performance.now() >= deadline) throw this.#busy(now, notBefore);
      const take = await shared.take(calls, this.limitPerMinute);
      if (take.outcome === 'taken') {
        if (this.#closed) {
          shared.giveBack(take.members);
          throw shuttingDown();
        }
        grant.hold(take.members);
        return;
      }
      if (this.#closed) throw shuttingDown();
      this.#updateState(now);
      if (this.#state === 'circuit-open') throw this.#busy(now);
      if (take.outcome === 'wait') notBefore = take.until;
      else {
        // Redis is away: this replica's log, on its share, decides. The call was granted under the whole limit if Redis fell meanwhile.
        if (this.#used(this.#sent, now) + this.#reserved <= this.#windowLimit()) return;
        notBefore = (this.#sent[0] ?? now) + BUDGET_WINDOW_MS;
      }
      await this.#sharedWait(notBefore, deadline, now);
    }
  }

  /** Sleeps until `notBefore` (clock ms), at most SHARED_RETRY_MS and no later than the deadline; refused by the circuit or close. */
  #sharedWait(notBefore: number, deadline: number, now: number): Promise<void> {
    const ms = Math.min(Math.max(MIN_WAKE_MS, notBefore - now), SHARED_RETRY_MS, Math.max(0, deadline - performance.now()));
    return new Promise<void>((resolve, reject) => {
      const wait: SharedWait = {
        reject,
        timer: setTimeout(() => {
          this.#sharedWaits.delete(wait);
          resolve();
        }, ms),
      };
      wait.timer.unref();
      this.#sharedWaits.add(wait);
    });
  }

  #refuseSharedWaits(error: Error): void {
    for (const wait of this.#sharedWaits) {
      clearTimeout(wait.timer);
      wait.reject(error);
    }
    this.#sharedWaits.clear();
  }

  /** What another replica heard from Deskie: its limit and calls left as said, the pause and circuit if they end later. */
  #adopt({ accountLimit, callsLeft, pausedUntil, circuitOpenUntil }: SharedAccount): void {
    if (this.#closed) return;
    if (accountLimit !== null && accountLimit > 0) this.#accountLimit = accountLimit;
    if (callsLeft !== null) this.#deskieCallsLeft = callsLeft;
    this.#pausedUntil = Math.max(this.#pausedUntil, pausedUntil);
    this.#circuitOpenUntil = Math.max(this.#circuitOpenUntil, circuitOpenUntil);
    this.#updateState(this.#options.clock());
    this.#dispatch();
  }

  /** Calls in the last minute, forgetting older ones. */
  #used(log: number[], now: number): number {
    let expired = 0;
    while (expired < log.length && (log[expired] as number) <= now - BUDGET_WINDOW_MS) expired += 1;
    if (expired > 0) log.splice(0, expired);
    return log.length;
  }

  #allowance(newCredential: boolean, limit = this.limitPerMinute): number {
    return newCredential ? Math.max(1, Math.floor(limit * this.#options.newCredentialShare)) : limit;
  }

  #newCredentialSlots(): number {
    return Math.max(1, Math.floor(this.#options.concurrency * this.#options.newCredentialShare));
  }

  /** Calls the account keeps for its other integrations, once Deskie has told its limit. */
  #reserveCalls(): number {
    return this.#accountLimit === null ? 0 : Math.ceil(this.#accountLimit * this.#options.reserve);
  }

  /** Moves between open, paused and circuit-open as the clock passes, logging each change once. */
  #updateState(now: number): void {
    const state: BudgetState = now < this.#circuitOpenUntil ? 'circuit-open' : now < this.#pausedUntil ? 'paused' : 'open';
    if (state === this.#state) return;
    const previous = this.#state;
    this.#state = state;
    const { log } = this.#options;
    if (state === 'circuit-open') {
      log.warn({ budget: state, untilMs: this.#circuitOpenUntil }, 'Deskie answered 429: no calls until its retry_after has passed');
      for (const queue of Object.values(this.#queues)) {
        for (const waiter of queue.splice(0)) {
          clearTimeout(waiter.timer);
          waiter.reject(this.#busy(now));
        }
      }
      this.#refuseSharedWaits(this.#busy(now));
    } else if (state === 'paused') {
      log.warn({ budget: state, untilMs: this.#pausedUntil, deskieCallsLeft: this.#deskieCallsLeft }, "the account's calls are down to its reserve: calls to Deskie paused");
    } else {
      log.info({ budget: state, was: previous }, 'calls to Deskie resumed');
    }
  }

  /** The 503 for a call that cannot go out; `notBefore`, the shared log's answer, when it said later than the local one. */
  #busy(now: number, notBefore = 0): Error {
    const retryAfter = this.#retryAfterSeconds(now, notBefore);
    if (this.#state === 'circuit-open') {
      return upstreamBusy(`Deskie is rate-limiting this account; no call goes out for ${retryAfter} s`, retryAfter, 'circuit-open');
    }
    if (this.#state === 'paused') {
      return upstreamBusy(
        `the account's calls to Deskie are down to the reserve kept for its other integrations (UPSTREAM_RESERVE); retry in ${retryAfter} s`,
        retryAfter,
        'budget-exhausted',
      );
    }
    const perMinute = this.sharing.mode === 'replica-share' ? `${this.#windowLimit()} calls a minute, this replica's share while Redis is unreachable` : `${this.limitPerMinute} calls a minute`;
    return upstreamBusy(
      `no call to Deskie could go out in time: the upstream budget (${perMinute}, ` +
        `${this.#options.concurrency} at once) is spent; retry in ${retryAfter} s`,
      retryAfter,
      'budget-exhausted',
    );
  }

  /** Whole seconds until a call can go out, at least 1. */
  #retryAfterSeconds(now: number, notBefore = 0): number {
    let at = Math.max(this.#circuitOpenUntil, this.#pausedUntil, notBefore);
    if (this.#used(this.#sent, now) + this.#reserved >= this.#windowLimit() && this.#sent.length > 0) {
      at = Math.max(at, (this.#sent[0] as number) + BUDGET_WINDOW_MS);
    }
    return Math.max(1, Math.ceil((at - now) / 1000));
  }
}

/**
 * Calls reserved for one answer: one slot in flight and a number of calls.
 * Each call is spent when it is sent; `release` gives back the slot and what
 * was not spent, and must be called once whatever happened.
 */
export class BudgetGrant {
  #reserved = 0;
  #spent = 0;
  #released = false;
  #newCredential = false;
  /** Entries taken in the shared log and not yet sent (fewer than #reserved for calls granted on the fallback share). */
  readonly #members: string[] = [];

  constructor(
    readonly budget: UpstreamBudget,
    readonly request: BudgetRequest,
  ) {}

  /** @internal The slot was granted from the new-credential share or not. */
  granted(newCredential: boolean): void {
    this.#newCredential = newCredential;
  }

  /** Whether the grant still draws from the new-credential share. */
  get newCredential(): boolean {
    return this.#newCredential;
  }

  /** Deskie has just accepted the credential: the rest of this answer's calls are an ordinary client's. */
  trust(): void {
    if (!this.#newCredential || this.#released) return;
    this.budget.trust(this);
    this.#newCredential = false;
  }

  get spent(): number {
    return this.#spent;
  }

  /** Calls reserved and not yet sent. */
  get remaining(): number {
    return this.#reserved;
  }

  /** @internal */
  add(calls: number): void {
    this.#reserved += calls;
  }

  /** @internal Entries the shared log gave for reserved calls. */
  hold(members: readonly string[]): void {
    this.#members.push(...members);
  }

  /** Reserves more calls for the same answer, first in the queue, until the deadline. */
  extend(calls: number, deadline: number): Promise<void> {
    return this.budget.extend(this, calls, deadline);
  }

  /** One reserved call is being sent now. */
  spend(): void {
    if (this.#reserved <= 0) throw new Error('no reserved call left to spend');
    this.#reserved -= 1;
    this.#spent += 1;
    this.budget.spend(this.#newCredential, this.#members.pop());
  }

  release(): void {
    if (this.#released) return;
    this.#released = true;
    this.budget.release(this.#newCredential, this.#reserved, this.#members.splice(0));
    this.#reserved = 0;
  }
}

/** A header value that is a whole number, or undefined. */
function wholeNumber(value: string | undefined): number | undefined {
  return value !== undefined && /^\d{1,9}$/.test(value.trim()) ? Number(value.trim()) : undefined;
}

/** IMF-fixdate (RFC 9110 §5.6.7). */
const HTTP_DATE = /^(Mon|Tue|Wed|Thu|Fri|Sat|Sun), \d{2} (Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec) \d{4} \d{2}:\d{2}:\d{2} GMT$/;

/**
 * Deskie's `retry_after` or a standard `Retry-After` as seconds from now: a
 * small whole number, or an HTTP date (RFC 9110 §10.2.3). Anything else, or
 * a wait over MAX_RETRY_AFTER_SECONDS, is not trusted and gives undefined.
 */
export function parseRetryAfter(value: string | undefined, nowMs: number): number | undefined {
  if (value === undefined) return undefined;
  const trimmed = value.trim();
  let seconds: number;
  if (/^\d{1,5}$/.test(trimmed)) seconds = Number(trimmed);
  else if (HTTP_DATE.test(trimmed)) seconds = Math.max(0, Math.ceil((Date.parse(trimmed) - nowMs) / 1000));
  else return undefined;
  return seconds <= MAX_RETRY_AFTER_SECONDS ? seconds : undefined;
}
