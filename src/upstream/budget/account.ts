import type { FastifyBaseLogger } from 'fastify';
import { BUDGET_WINDOW_MS } from './window.js';
import { HTTP_DATE } from '../../http/conditional.js';

/** The smallest plan's limit: what is assumed until Deskie's headers tell the account's own. */
const SMALLEST_PLAN_PER_MINUTE = 20;
/** How long a 429 closes the way to Deskie when it says nothing of when to come back. */
const DEFAULT_CIRCUIT_OPEN_SECONDS = 60;
/** Largest `retry_after` taken from Deskie; anything longer is not a usable number. */
const MAX_RETRY_AFTER_SECONDS = 3_600;

/** What Deskie said about the account's limit on one answer (deskie-api-notes.md, "Rate limits"). */
export interface DeskieLimitHeaders {
  readonly statusCode: number;
  readonly rateLimitPerMinute: string | undefined;
  readonly callsLeft: string | undefined;
  /** Seconds, already checked (parseRetryAfter). */
  readonly retryAfterSeconds: number | undefined;
}

/** The account as the replicas share it: limit and calls left (null until heard), pause and circuit ends (clock ms, 0: never). */
export interface SharedAccount {
  readonly accountLimit: number | null;
  readonly callsLeft: number | null;
  readonly pausedUntil: number;
  readonly circuitOpenUntil: number;
}

export type BudgetState = 'open' | 'paused' | 'circuit-open';

export interface AccountOptions {
  /** The operator's cap on calls a minute (UPSTREAM_RATE_PER_MIN), if set. */
  readonly ratePerMinute: number | undefined;
  /** Fraction of the account's limit left to its other integrations (UPSTREAM_RESERVE). */
  readonly reserve: number;
  readonly log: FastifyBaseLogger;
}

/**
 * As Deskie tells it (here or to another replica): its limit less the reserve, under the operator's cap, bounds calls
 * a minute; `api_calls_left` at or below the reserve pauses a minute; a 429 opens a circuit for its `retry_after`.
 */
export class DeskieAccount {
  readonly #options: AccountOptions;
  #limit: number | null = null;
  #callsLeft: number | null = null;
  #pausedUntil = 0;
  #circuitOpenUntil = 0;
  #state: BudgetState = 'open';

  constructor(options: AccountOptions) {
    this.#options = options;
  }

  get limitPerMinute(): number {
    const { ratePerMinute, reserve } = this.#options;
    if (this.#limit === null) return ratePerMinute ?? SMALLEST_PLAN_PER_MINUTE;
    const ours = Math.max(1, Math.floor(this.#limit * (1 - reserve)));
    return Math.min(ratePerMinute ?? ours, ours);
  }

  get known(): SharedAccount {
    return { accountLimit: this.#limit, callsLeft: this.#callsLeft, pausedUntil: this.#pausedUntil, circuitOpenUntil: this.#circuitOpenUntil };
  }

  /** The state as of the last `update`. */
  get state(): BudgetState {
    return this.#state;
  }

  /** Clock ms until which neither the circuit nor the pause holds calls back. */
  get closedUntil(): number {
    return Math.max(this.#circuitOpenUntil, this.#pausedUntil);
  }

  /** True when the limit, pause or circuit changed: the other replicas must hear at once (calls left wait for their next take). */
  observe(headers: DeskieLimitHeaders, now: number): boolean {
    const before = this.known;
    const callsLeft = wholeNumber(headers.callsLeft) ?? null;
    const is429 = headers.statusCode === 429;
    this.adopt({
      accountLimit: wholeNumber(headers.rateLimitPerMinute) ?? null,
      callsLeft,
      pausedUntil: 0,
      circuitOpenUntil: is429 ? now + (headers.retryAfterSeconds ?? DEFAULT_CIRCUIT_OPEN_SECONDS) * 1000 : 0,
    });
    // Calls the account keeps for its other integrations; with a 429, its retry_after ends the minute: the circuit covers it.
    const reserve = this.#limit === null ? 0 : Math.ceil(this.#limit * this.#options.reserve);
    if (!is429 && callsLeft !== null && callsLeft <= reserve) this.#pausedUntil = Math.max(this.#pausedUntil, now + BUDGET_WINDOW_MS);
    return this.#limit !== before.accountLimit || this.#pausedUntil !== before.pausedUntil || this.#circuitOpenUntil !== before.circuitOpenUntil;
  }

  /** What another replica heard: its limit and calls left as said, the pause and circuit if they end later. */
  adopt({ accountLimit, callsLeft, pausedUntil, circuitOpenUntil }: SharedAccount): void {
    if (accountLimit !== null && accountLimit > 0) this.#limit = accountLimit;
    if (callsLeft !== null) this.#callsLeft = callsLeft;
    this.#pausedUntil = Math.max(this.#pausedUntil, pausedUntil);
    this.#circuitOpenUntil = Math.max(this.#circuitOpenUntil, circuitOpenUntil);
  }

  /** Moves between open, paused and circuit-open as the clock passes, logging each change once; the new state if it changed. */
  update(now: number): BudgetState | undefined {
    const state: BudgetState = now < this.#circuitOpenUntil ? 'circuit-open' : now < this.#pausedUntil ? 'paused' : 'open';
    if (state === this.#state) return undefined;
    const was = this.#state;
    this.#state = state;
    const { log } = this.#options;
    if (state === 'circuit-open') {
      log.warn({ budget: state, untilMs: this.#circuitOpenUntil }, 'Deskie answered 429: no calls until its retry_after has passed');
    } else if (state === 'paused') {
      log.warn({ budget: state, untilMs: this.#pausedUntil, deskieCallsLeft: this.#callsLeft }, "the account's calls are down to its reserve: calls to Deskie paused");
    } else {
      log.info({ budget: state, was }, 'calls to Deskie resumed');
    }
    return state;
  }
}

function wholeNumber(value: string | undefined): number | undefined {
  return value !== undefined && /^\d{1,9}$/.test(value.trim()) ? Number(value.trim()) : undefined;
}

/** Deskie's `retry_after` or `Retry-After` (seconds, or an HTTP date: RFC 9110 §10.2.3) as seconds from now; undefined if untrusted. */
export function parseRetryAfter(value: string | undefined, nowMs: number): number | undefined {
  if (value === undefined) return undefined;
  const trimmed = value.trim();
  let seconds: number;
  if (/^\d{1,5}$/.test(trimmed)) seconds = Number(trimmed);
  else if (HTTP_DATE.test(trimmed)) seconds = Math.max(0, Math.ceil((Date.parse(trimmed) - nowMs) / 1000));
  else return undefined;
  return seconds <= MAX_RETRY_AFTER_SECONDS ? seconds : undefined;
}
