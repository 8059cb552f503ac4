// The account-wide request budget Deskie enforces: so many calls a minute,
// HTTP 429 with `retry_after` beyond it (deskie-api-notes.md, "Rate limits").

/** Deskie counts calls per minute; a sliding minute keeps tests free of clock-edge flakes. */
const RATE_LIMIT_WINDOW_MS = 60_000;
const MS_PER_SECOND = 1_000;

export interface RateLimitQuota {
  /** False when the minute's budget was already spent; the request gets a 429. */
  readonly admitted: boolean;
  /** Value of the `api_calls_left` header. */
  readonly callsLeft: number;
  /** Value of the `retry_after` header when not admitted, in seconds. */
  readonly retryAfterSeconds: number;
}

export class RateLimitWindow {
  /** Arrival times (ms) of the admitted requests of the last minute, oldest first. */
  readonly #arrivals: number[] = [];

  constructor(readonly limitPerMinute: number) {}

  /**
   * Spend one call from the budget at `nowMs`. Refused calls are not stored, so
   * the list never outgrows the limit and a refused client is admitted again as
   * soon as its oldest call leaves the window.
   */
  take(nowMs: number): RateLimitQuota {
    while (this.#arrivals.length > 0 && (this.#arrivals[0] ?? 0) <= nowMs - RATE_LIMIT_WINDOW_MS) {
      this.#arrivals.shift();
    }
    if (this.#arrivals.length >= this.limitPerMinute) {
      const oldest = this.#arrivals[0] ?? nowMs;
      const waitMs = oldest + RATE_LIMIT_WINDOW_MS - nowMs;
      return { admitted: false, callsLeft: 0, retryAfterSeconds: Math.max(1, Math.ceil(waitMs / MS_PER_SECOND)) };
    }
    this.#arrivals.push(nowMs);
    return { admitted: true, callsLeft: this.limitPerMinute - this.#arrivals.length, retryAfterSeconds: 0 };
  }
}
