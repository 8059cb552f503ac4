import { overBudget, shuttingDown, upstreamBusy } from '../../http/errors.js';
import { type AccountOptions, DeskieAccount, type DeskieLimitHeaders, type SharedAccount } from './account.js';
import { BudgetGrant, type GrantLedger } from './grant.js';
import { type Block, CallQueue, MIN_WAKE_MS } from './queue.js';
import type { SharedBudget } from './shared.js';
import type { BudgetRequest } from './types.js';
import { BUDGET_WINDOW_MS, CallWindow } from './window.js';

export { parseRetryAfter } from './account.js';
export { BudgetGrant } from './grant.js';
export type { BudgetRequest, CallPriority } from './types.js';

/** Longest wait (real ms) before a call the shared log refused asks again: another replica may give back unsent calls sooner. */
const SHARED_RETRY_MS = 1_000;

export interface BudgetOptions extends AccountOptions {
  readonly concurrency: number;
  /** Share of the calls a minute and of the concurrency that credentials Deskie has never accepted may use. */
  readonly newCredentialShare: number;
  readonly queueLength: number;
  /** Epoch ms; the minute, pauses and the circuit are measured on it, so tests move time instead of sleeping. */
  readonly clock: () => number;
  /** The part the replicas share in Redis (REDIS_URL), else the budget is this process's alone. The budget closes it. */
  readonly shared?: SharedBudget | undefined;
}

/** Where the minute's calls are counted: in Redis, on this replica's share while Redis is unreachable, or locally without Redis. */
export type BudgetSharing =
  | { readonly mode: 'redis'; readonly replicas: number }
  | { readonly mode: 'replica-share'; readonly replicas: number; readonly perMinute: number }
  | { readonly mode: 'local' };

/** The merge turn is held: a merge waits until it is passed on, whatever the clock does. */
const TURN_HELD: Block = { shareOnly: false, freesAt: Number.POSITIVE_INFINITY };

/** Calls asked for in the queue: a new grant's, or more for a grant under way. */
interface Ask {
  readonly request: BudgetRequest;
  readonly grant: BudgetGrant;
  /** A grant that asks for more calls already holds its slot. */
  readonly needsSlot: boolean;
}

/**
 * One budget for every call to Deskie, as its limit is the account's: calls a minute under the pause and 429 circuit,
 * `concurrency` in flight, a small share for credentials never accepted (junk cannot starve known dashboards), merges
 * in turn. Calls wait in a bounded queue until their deadlines and count when sent; a SharedBudget also has a say.
 */
export class UpstreamBudget {
  readonly #options: BudgetOptions;
  readonly #account: DeskieAccount;
  /** Every call, and those of credentials Deskie has never accepted, which also draw on a share of their own. */
  readonly #all: CallWindow;
  readonly #newCredentials: CallWindow;
  readonly #queue: CallQueue<Ask>;
  /** Merges waiting for the merge turn, and the grant that holds it. */
  readonly #turns: CallQueue<BudgetGrant>;
  #turnHolder: BudgetGrant | undefined;
  readonly #shared: SharedBudget | undefined;
  readonly #ledger: GrantLedger = {
    extend: (grant, calls, deadline) => this.#take({ request: { ...grant.request, calls, deadline }, grant, needsSlot: false }),
    spend: (newCredential, member) => this.#spend(newCredential, member),
    trust: (grant) => this.#trust(grant),
    release: (grant, unspent, unspentMembers) => this.#release(grant, unspent, unspentMembers),
  };
  /** Once closed: what a call asked for is refused with. */
  #closedWith: (() => Error) | undefined;

  constructor(options: BudgetOptions) {
    this.#options = options;
    this.#account = new DeskieAccount(options);
    this.#all = new CallWindow(options.concurrency);
    this.#newCredentials = new CallWindow(this.#newCredentialShare(options.concurrency));
    this.#queue = new CallQueue<Ask>({ blocked: (ask, now) => this.#blocked(ask, now), grant: (ask) => this.#grant(ask), wake: () => this.#dispatch() });
    this.#turns = new CallQueue<BudgetGrant>({
      blocked: () => (this.#turnHolder === undefined ? undefined : TURN_HELD),
      grant: (grant) => (this.#turnHolder = grant),
      wake: () => undefined,
    });
    this.#shared = options.shared;
    this.#shared?.attach({ account: (account) => this.#adopt(account), modeChanged: () => this.#dispatch() });
  }

  get limitPerMinute(): number {
    return this.#account.limitPerMinute;
  }

  /**
   * Reserves `calls` calls and a slot, waiting until they fit or the deadline (a merge first waits for its turn); refused
   * at once while the circuit is open, the queue is full, or the calls could never fit in a minute.
   */
  async reserve(request: BudgetRequest): Promise<BudgetGrant> {
    const grant = new BudgetGrant(this.#ledger, request);
    if (request.merge === true) await this.#takeTurn(grant);
    try {
      await this.#take({ request, grant, needsSlot: true });
    } catch (error) {
      this.#passTurn(grant);
      throw error;
    }
    return grant;
  }

  get sharing(): BudgetSharing {
    const shared = this.#shared;
    if (shared === undefined) return { mode: 'local' };
    const { replicas } = shared;
    return shared.mode === 'redis' ? { mode: 'redis', replicas } : { mode: 'replica-share', replicas, perMinute: shared.share(this.limitPerMinute) };
  }

  /** Deskie's answer tells the budget about the account: its limit, what is left, a 429. */
  observe(headers: DeskieLimitHeaders): void {
    const now = this.#options.clock();
    const urgent = this.#account.observe(headers, now);
    this.#updateState(now);
    this.#dispatch();
    this.#shared?.report(this.#account.known, urgent);
  }

  /** The budget's state, for /healthz and logs. */
  snapshot() {
    const now = this.#options.clock();
    this.#updateState(now);
    const { accountLimit, callsLeft } = this.#account.known;
    return {
      limitPerMinute: this.limitPerMinute,
      accountLimitPerMinute: accountLimit,
      callsLeftThisMinute: Math.max(0, this.#windowLimit() - this.#all.used(now)),
      deskieCallsLeft: callsLeft,
      state: this.#account.state,
      inFlight: this.#all.inFlight,
      queued: this.#queue.length + this.#turns.length,
      sharing: this.sharing,
    };
  }

  /** Refuses every waiting call and any new one with `reason`; calls in flight finish. Closing again changes nothing. */
  close(reason: () => Error = shuttingDown): void {
    if (this.#closedWith !== undefined) return;
    this.#closedWith = reason;
    this.#queue.close(reason);
    this.#turns.close(reason);
    this.#shared?.close();
  }

  /** The calls granted here, then taken from the shared log too; if that fails, what was granted here goes back. */
  async #take(ask: Ask): Promise<void> {
    await this.#wait(ask);
    const { request, grant, needsSlot } = ask;
    if (this.#shared === undefined || request.calls === 0) return;
    try {
      await this.#takeShared(this.#shared, grant, request.calls, request.deadline);
    } catch (error) {
      if (needsSlot) grant.release();
      else {
        // The grant stays (its earlier calls may be under way); only these calls go back.
        for (const window of this.#windows(grant.newCredential)) window.free(0, request.calls);
        grant.add(-request.calls);
        this.#dispatch();
      }
      throw error;
    }
  }

  #spend(newCredential: boolean, member: string | undefined): void {
    const now = this.#options.clock();
    for (const window of this.#windows(newCredential)) window.send(now);
    this.#shared?.sent(member);
  }

  #trust(grant: BudgetGrant): void {
    this.#newCredentials.free(1, grant.remaining);
    this.#dispatch();
  }

  #release(grant: BudgetGrant, unspent: number, unspentMembers: readonly string[]): void {
    this.#shared?.giveBack(unspentMembers);
    for (const window of this.#windows(grant.newCredential)) window.free(1, unspent);
    this.#passTurn(grant);
    this.#dispatch();
  }

  /** This replica's merges take turns: sharing a minute page by page, none would finish. Late: refused, unspent. */
  #takeTurn(grant: BudgetGrant): Promise<void> {
    const { request } = grant;
    if (this.#closedWith !== undefined) return Promise.reject(this.#closedWith());
    const now = this.#options.clock();
    const full = this.#queueFull(now);
    if (full !== undefined) return Promise.reject(full);
    const waitMs = request.deadline - performance.now();
    if (waitMs <= 0) return Promise.reject(this.#turnBusy(now));
    const taken = this.#turns.wait(grant, request.priority, waitMs, () => this.#turnBusy(this.#options.clock()));
    this.#turns.dispatch(now);
    return taken;
  }

  #passTurn(grant: BudgetGrant): void {
    if (this.#turnHolder !== grant) return;
    this.#turnHolder = undefined;
    if (this.#closedWith === undefined) this.#turns.dispatch(this.#options.clock());
  }

  /** The windows a grant draws on: every call's, and the new-credential share's while Deskie has never accepted its credential. */
  #windows(newCredential: boolean): CallWindow[] {
    return newCredential ? [this.#all, this.#newCredentials] : [this.#all];
  }

  /** Refuses at once what cannot be granted in time, else waits in the queue. */
  #wait(ask: Ask): Promise<void> {
    const { request, grant, needsSlot } = ask;
    if (this.#closedWith !== undefined) return Promise.reject(this.#closedWith());
    const now = this.#options.clock();
    this.#updateState(now);
    const total = request.calls + grant.spent + grant.remaining;
    const limit = this.limitPerMinute;
    const allowance = (needsSlot ? request.isNewCredential() : grant.newCredential) ? this.#newCredentialShare(limit) : limit;
    if (total > allowance) return Promise.reject(overBudget(total, allowance));
    if (this.#account.state === 'circuit-open') return Promise.reject(this.#busy(now));
    const full = needsSlot ? this.#queueFull(now) : undefined;
    if (full !== undefined) return Promise.reject(full);
    const waitMs = request.deadline - performance.now();
    if (waitMs <= 0) return Promise.reject(this.#busy(now));
    const granted = this.#queue.wait(ask, needsSlot ? request.priority : 'first', waitMs, () => this.#busy(this.#options.clock()));
    this.#dispatch();
    return granted;
  }

  /** The 503 for a new call when UPSTREAM_QUEUE_LENGTH calls already wait (for the budget or the merge turn); undefined if there is room. */
  #queueFull(now: number): Error | undefined {
    const { queueLength } = this.#options;
    if (this.#queue.length + this.#turns.length < queueLength) return undefined;
    return upstreamBusy(`too many calls to Deskie are waiting (UPSTREAM_QUEUE_LENGTH ${queueLength})`, this.#retryAfterSeconds(now), 'budget-exhausted');
  }

  #dispatch(): void {
    if (this.#closedWith !== undefined) return;
    const now = this.#options.clock();
    this.#updateState(now);
    this.#queue.dispatch(now);
  }

  /** Why the asked calls cannot go now, and when the clock will lift that; undefined if they can go. */
  #blocked({ request, grant, needsSlot }: Ask, now: number): Block | undefined {
    if (this.#account.state !== 'open') return { shareOnly: false, freesAt: this.#account.closedUntil };
    const limit = this.#windowLimit();
    const all = this.#all.waitsUntil(request.calls, needsSlot, limit, now);
    if (all !== undefined) return { shareOnly: false, freesAt: all };
    if (!(needsSlot ? request.isNewCredential() : grant.newCredential)) return undefined;
    const share = this.#newCredentials.waitsUntil(request.calls, needsSlot, this.#newCredentialShare(limit), now);
    return share === undefined ? undefined : { shareOnly: true, freesAt: share };
  }

  #grant({ request, grant, needsSlot }: Ask): void {
    if (needsSlot) grant.granted(request.isNewCredential());
    for (const window of this.#windows(grant.newCredential)) window.hold(needsSlot ? 1 : 0, request.calls);
    grant.add(request.calls);
  }

  /** The whole limit, or this replica's share while Redis is away (the 422 still asks the whole limit: the share passes, worth a 503). */
  #windowLimit(): number {
    const shared = this.#shared;
    const limit = this.limitPerMinute;
    return shared !== undefined && shared.mode === 'replica-share' ? shared.share(limit) : limit;
  }

  // Takes the granted calls from the shared log at reserve time: a merge waits or is refused before its first call.
  // Keeping the slot meanwhile, at most `concurrency` calls ask Redis again; unsent calls go back on release.
  async #takeShared(shared: SharedBudget, grant: BudgetGrant, calls: number, deadline: number): Promise<void> {
    let notBefore = 0;
    for (;;) {
      const now = this.#options.clock();
      if (performance.now() >= deadline) throw this.#busy(now, notBefore);
      const take = await shared.take(calls, this.limitPerMinute);
      if (take.outcome === 'taken') {
        if (this.#closedWith !== undefined) {
          shared.giveBack(take.members);
          throw this.#closedWith();
        }
        return grant.hold(take.members);
      }
      if (this.#closedWith !== undefined) throw this.#closedWith();
      this.#updateState(now);
      if (this.#account.state === 'circuit-open') throw this.#busy(now);
      if (take.outcome === 'wait') notBefore = take.until;
      else {
        // Redis is away: this replica's log, on its share, decides. The call was granted under the whole limit if Redis fell meanwhile.
        if (this.#all.used(now) <= this.#windowLimit()) return;
        notBefore = this.#all.freesAt(now) ?? now + BUDGET_WINDOW_MS;
      }
      // The circuit and close end the sleep.
      await this.#queue.sleep(Math.min(Math.max(MIN_WAKE_MS, notBefore - now), SHARED_RETRY_MS, Math.max(0, deadline - performance.now())));
    }
  }

  #adopt(account: SharedAccount): void {
    if (this.#closedWith !== undefined) return;
    this.#account.adopt(account);
    this.#dispatch();
  }

  /** The account's state as the clock passes; a circuit that opens refuses every waiting call and merge at once. */
  #updateState(now: number): void {
    if (this.#account.update(now) !== 'circuit-open') return;
    this.#queue.refuseAll(() => this.#busy(now));
    this.#turns.refuseAll(() => this.#busy(now));
  }

  /** What credentials Deskie has never accepted may use of `amount` (calls a minute, or slots in flight): at least one. */
  #newCredentialShare(amount: number): number {
    return Math.max(1, Math.floor(amount * this.#options.newCredentialShare));
  }

  /** The 503 for a call that cannot go out; `notBefore`, the shared log's answer, when it said later than the local one. */
  #busy(now: number, notBefore = 0): Error {
    const retryAfter = this.#retryAfterSeconds(now, notBefore);
    if (this.#account.state === 'circuit-open') {
      return upstreamBusy(`Deskie is rate-limiting this account; no call goes out for ${retryAfter} s`, retryAfter, 'circuit-open');
    }
    if (this.#account.state === 'paused') {
      return upstreamBusy(
        `the account's calls to Deskie are down to the reserve kept for its other integrations (UPSTREAM_RESERVE); retry in ${retryAfter} s`,
        retryAfter,
        'budget-exhausted',
      );
    }
    const perMinute = this.#shared?.mode === 'replica-share' ? `${this.#windowLimit()} calls a minute, this replica's share while Redis is unreachable` : `${this.limitPerMinute} calls a minute`;
    return upstreamBusy(
      `no call to Deskie could go out in time: the upstream budget (${perMinute}, ` +
        `${this.#options.concurrency} at once) is spent; retry in ${retryAfter} s`,
      retryAfter,
      'budget-exhausted',
    );
  }

  #turnBusy(now: number): Error {
    const retryAfter = this.#retryAfterSeconds(now);
    return upstreamBusy(
      `another page=all merge is fetching its pages from Deskie and merges take turns, so that each one started can finish ` +
        `within the upstream budget (${this.limitPerMinute} calls a minute); this one has spent nothing: retry in ${retryAfter} s`,
      retryAfter,
      'budget-exhausted',
    );
  }

  /** Whole seconds until a call can go out, at least 1. */
  #retryAfterSeconds(now: number, notBefore = 0): number {
    let at = Math.max(this.#account.closedUntil, notBefore);
    const freesAt = this.#all.freesAt(now);
    if (freesAt !== undefined && this.#all.used(now) >= this.#windowLimit()) at = Math.max(at, freesAt);
    return Math.max(1, Math.ceil((at - now) / 1000));
  }
}
