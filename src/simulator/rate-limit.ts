// Deskie's account-wide budget: so many calls a minute, then 429 with `retry_after` (deskie-api-notes.md, Rate limits).

/** Deskie counts calls per minute; a sliding minute keeps tests free of clock-edge flakes. */
const RATE_LIMIT_WINDOW_MS = 60_000;
const MS_PER_SECOND = 1_000;

export interface RateLimitQuota {
  /** False when the minute's budget was already spent; the request gets a 429. */
  readonly admitted: boolean;
  /** Value of the `rate_limit_per_minute` header: the limit when the call was counted. */
  readonly limitPerMinute: number;
  /** Value of the `api_calls_left` header. */
  readonly callsLeft: number;
  /** Value of the `retry_after` header when not admitted, in seconds. */
  readonly retryAfterSeconds: number;
}

export class RateLimitWindow {
  /** Arrival times (ms) of the admitted requests of the last minute, oldest first. */
  readonly #arrivals: number[] = [];

  /** Calls a minute; lowered at run time below the calls made, it refuses calls until enough have aged out. */
  constructor(public limitPerMinute: number) {}

  /** Spends one call at `nowMs`. Refused calls are not stored, so the list never outgrows the highest limit set. */
  take(nowMs: number): RateLimitQuota {
    const limitPerMinute = this.limitPerMinute;
    while (this.#arrivals.length > 0 && (this.#arrivals[0] ?? 0) <= nowMs - RATE_LIMIT_WINDOW_MS) {
      this.#arrivals.shift();
    }
    if (this.#arrivals.length >= limitPerMinute) {
      // Admitted again when the call at this index turns a minute old.
      const freeing = this.#arrivals[this.#arrivals.length - limitPerMinute] ?? nowMs;
      const waitMs = freeing + RATE_LIMIT_WINDOW_MS - nowMs;
      return { admitted: false, limitPerMinute, callsLeft: 0, retryAfterSeconds: Math.max(1, Math.ceil(waitMs / MS_PER_SECOND)) };
    }
    this.#arrivals.push(nowMs);
    return { admitted: true, limitPerMinute, callsLeft: limitPerMinute - this.#arrivals.length, retryAfterSeconds: 0 };
  }
}
