import { LRUCache } from 'lru-cache';
import type { UpstreamAnswer } from '../http/errors.js';

/** Partitions remembered in each role (accepted, refused, waiting a retry); a dashboard fleet uses a handful. */
const REMEMBERED_PARTITIONS = 10_000;
/** The last part of the recheck time, in which a hit starts one background recheck: dashboards in use never wait for it. */
export const RECHECK_AHEAD = 0.2;
/** After a recheck Deskie could not answer (down, slow, or held back by the budget), the wait before the next: one call, not one per request. */
export const RECHECK_RETRY_MS = 30_000;
/** A miss for a credential accepted this recently calls at once, else after one call decides it (a round trip more). */
export const CALLS_AT_ONCE_MS = 5_000;

/** accepted: in recheck time; due soon: its last part, recheck starts; deferred: recheck failed, served till retry. */
export type Standing = 'accepted' | 'due soon' | 'deferred' | 'due';

export interface CredentialStandingOptions {
  readonly clock: () => number;
  /** How long after Deskie last accepted a credential the cache may answer it (AUTH_RECHECK_SECONDS). */
  readonly recheckMs: number;
  /** How long Deskie's 401 or 403 for a credential is answered from memory (AUTH_FAILURE_TTL_SECONDS; 0: never). */
  readonly refusalTtlMs: number;
}

/** A call with a partition's credential: its 200 accepts it as of when made, unless refused meanwhile (a refusal is newer news). */
export interface CredentialCall {
  readonly partition: string;
  /** Deskie has never accepted the credential (as far as remembered): its calls draw from the new-credential share. */
  isNewCredential(): boolean;
  /** Deskie answered this call 200. */
  accepted(): void;
  /** Deskie's refusal of the credential since this call was made, if any. */
  refusedSince(): UpstreamAnswer | undefined;
}

/** A due partition's turn: go now and call `done` with any failure, or wait for `verdict` (what the deciding call failed with, if anything). */
export type Turn = { readonly done: (failure?: unknown) => void; readonly verdict?: undefined } | { readonly verdict: Promise<unknown>; readonly done?: undefined };

/** The call deciding a due partition: the key it is for, and how its waiters hear the verdict. */
interface Deciding {
  readonly key: string;
  readonly settle: (failure?: unknown) => void;
  readonly verdict: Promise<unknown>;
}

/** 200 accepts a partition, 401/403 refuse; cache answers within recheckMs or till a failed recheck's retry. No I/O. */
export class CredentialStanding {
  readonly #options: CredentialStandingOptions;
  readonly #acceptedAt = new LRUCache<string, number>({ max: REMEMBERED_PARTITIONS });
  /** Partitions whose recheck Deskie could not answer: when to try again. */
  readonly #recheckRetryAt = new LRUCache<string, number>({ max: REMEMBERED_PARTITIONS });
  /** Partitions with a recheck ahead under way: one at a time each. */
  readonly #recheckingAhead = new Set<string>();
  /** Refusals are numbered in order: a call tells by it whether its credential was refused while it ran. */
  #refusalCount = 0;
  readonly #lastRefusal = new LRUCache<string, { readonly number: number; readonly error: UpstreamAnswer; readonly atMs: number }>({ max: REMEMBERED_PARTITIONS });
  /** Refusals answered from memory, until when: a dashboard polling with a revoked key costs one call, not one per poll. */
  readonly #rememberedRefusals = new LRUCache<string, { readonly error: UpstreamAnswer; readonly untilMs: number }>({ max: REMEMBERED_PARTITIONS });
  /** Due partitions with a call under way that decides them for their other keys. */
  readonly #deciding = new Map<string, Deciding>();

  constructor(options: CredentialStandingOptions) {
    this.#options = options;
  }

  /** A clock set back before the acceptance makes the partition due: the time since is unknown. */
  standing(partition: string, nowMs: number): Standing {
    const acceptedAtMs = this.#acceptedAt.peek(partition);
    if (acceptedAtMs === undefined || nowMs < acceptedAtMs) return 'due';
    const { recheckMs } = this.#options;
    const sinceMs = nowMs - acceptedAtMs;
    if (sinceMs < recheckMs * (1 - RECHECK_AHEAD)) return 'accepted';
    if (sinceMs < recheckMs) return 'due soon';
    return this.#retryPending(partition, nowMs) ? 'deferred' : 'due';
  }

  /** Whether a miss may call Deskie at once rather than wait for the call deciding the partition (see CALLS_AT_ONCE_MS). */
  callsAtOnce(partition: string, nowMs: number): boolean {
    const acceptedAtMs = this.#acceptedAt.peek(partition);
    return acceptedAtMs !== undefined && acceptedAtMs <= nowMs && nowMs - acceptedAtMs < CALLS_AT_ONCE_MS;
  }

  call(partition: string): CredentialCall {
    const refusalsBefore = this.#refusalCount;
    const madeAtMs = this.#options.clock();
    const refusedSince = (): UpstreamAnswer | undefined => {
      const last = this.#lastRefusal.peek(partition);
      return last !== undefined && last.number > refusalsBefore ? last.error : undefined;
    };
    return {
      partition,
      refusedSince,
      isNewCredential: () => !this.#acceptedAt.has(partition),
      accepted: () => {
        if (refusedSince() !== undefined) return;
        this.#acceptedAt.set(partition, madeAtMs);
        this.#recheckRetryAt.delete(partition);
        this.#rememberedRefusals.delete(partition);
        this.#settle(partition);
      },
    };
  }

  /** An answer fetched elsewhere, for a call made at `askedAtMs`, tells that Deskie accepted the credential then (if not refused since: the caller's check). */
  acceptedAt(partition: string, askedAtMs: number): void {
    const acceptedAtMs = this.#acceptedAt.peek(partition);
    if (acceptedAtMs !== undefined && acceptedAtMs >= askedAtMs) return;
    this.#acceptedAt.set(partition, askedAtMs);
    this.#recheckRetryAt.delete(partition);
    this.#settle(partition);
  }

  /** Deskie refused the credential on a call made at `askedAtMs`: due at once, calls under way learn of it, and it is answered from memory for refusalTtlMs. */
  refused(partition: string, error: UpstreamAnswer, askedAtMs: number): void {
    const { clock, refusalTtlMs } = this.#options;
    this.#refusalCount += 1;
    this.#lastRefusal.set(partition, { number: this.#refusalCount, error, atMs: clock() });
    this.#recheckRetryAt.delete(partition);
    this.#acceptedAt.delete(partition);
    if (refusalTtlMs > 0) this.#rememberedRefusals.set(partition, { error, untilMs: askedAtMs + refusalTtlMs });
    this.#settle(partition);
  }

  /** One call decides a due partition: a call for the same key goes too (the store joins it), one for another key waits. */
  turn(partition: string, key: string): Turn {
    const deciding = this.#deciding.get(partition);
    if (deciding !== undefined) return deciding.key === key ? { done: () => {} } : { verdict: deciding.verdict };
    let settle: (failure?: unknown) => void = () => {};
    const verdict = new Promise<unknown>((resolve) => (settle = resolve));
    const mine: Deciding = { key, settle, verdict };
    this.#deciding.set(partition, mine);
    return { done: (failure) => this.#settle(partition, mine, failure) };
  }

  /** Deskie's refusal of the partition's credential while it is still answered from memory. */
  rememberedRefusal(partition: string, nowMs: number): UpstreamAnswer | undefined {
    const remembered = this.#rememberedRefusals.get(partition);
    if (remembered === undefined) return undefined;
    if (nowMs < remembered.untilMs) return remembered.error;
    this.#rememberedRefusals.delete(partition);
    return undefined;
  }

  /** Whether another replica's answer to a call made at `askedAtMs` may serve now: not refused since, within recheckMs of acceptance. */
  vouchesFor(partition: string, askedAtMs: number, nowMs: number): boolean {
    const refusedAtMs = this.#lastRefusal.peek(partition)?.atMs;
    if (refusedAtMs !== undefined && askedAtMs <= refusedAtMs) return false;
    const acceptedAtMs = Math.max(this.#acceptedAt.peek(partition) ?? Number.NEGATIVE_INFINITY, askedAtMs);
    return acceptedAtMs <= nowMs && nowMs - acceptedAtMs < this.#options.recheckMs;
  }

  /** Deskie could not answer the partition's recheck (one a request waited for, or one ahead): the next try waits RECHECK_RETRY_MS. */
  recheckFailed(partition: string): void {
    this.#recheckRetryAt.set(partition, this.#options.clock() + RECHECK_RETRY_MS);
  }

  /** Marks a recheck ahead of the partition under way; false when one already is, or the last failed under RECHECK_RETRY_MS ago. */
  startRecheckAhead(partition: string, nowMs: number): boolean {
    if (this.#recheckingAhead.has(partition) || this.#retryPending(partition, nowMs)) return false;
    this.#recheckingAhead.add(partition);
    return true;
  }

  recheckAheadEnded(partition: string, deskieFailed: boolean): void {
    this.#recheckingAhead.delete(partition);
    if (deskieFailed) this.recheckFailed(partition);
  }

  /** Calls made since leave a credential accepted past the recheck-ahead part: another replica's answer to one rechecks it. */
  recheckAheadAskedAfter(nowMs: number): number {
    return nowMs - this.#options.recheckMs * (1 - RECHECK_AHEAD);
  }

  /** The partition is decided (or its deciding call, `only` when given, has ended): the calls waiting go on. */
  #settle(partition: string, only?: Deciding, failure?: unknown): void {
    const deciding = this.#deciding.get(partition);
    if (deciding === undefined || (only !== undefined && deciding !== only)) return;
    this.#deciding.delete(partition);
    deciding.settle(failure);
  }

  #retryPending(partition: string, nowMs: number): boolean {
    const retryAtMs = this.#recheckRetryAt.peek(partition);
    return retryAtMs !== undefined && nowMs < retryAtMs;
  }
}
