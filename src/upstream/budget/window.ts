/** Deskie counts its limit per minute (deskie-api-notes.md, "Rate limits"). */
export const BUDGET_WINDOW_MS = 60_000;

/** Drops the entries that have left the minute (sent at or before `now - BUDGET_WINDOW_MS`) from a log kept oldest first. */
export function forgetExpired<Entry>(log: Entry[], now: number, sentAt: (entry: Entry) => number): void {
  let expired = 0;
  while (expired < log.length && sentAt(log[expired] as Entry) <= now - BUDGET_WINDOW_MS) expired += 1;
  if (expired > 0) log.splice(0, expired);
}

/** Slots, reservations, a sliding minute of sends (no boundary passes 2× the limit); a reservation counts once sent. */
export class CallWindow {
  readonly #slots: number;
  /** Clock times of the calls sent in the last minute, oldest first. */
  readonly #sent: number[] = [];
  #reserved = 0;
  #inFlight = 0;

  constructor(slots: number) {
    this.#slots = slots;
  }

  get inFlight(): number {
    return this.#inFlight;
  }

  /** Calls sent in the last minute, and calls reserved. */
  used(now: number): number {
    forgetExpired(this.#sent, now, (at) => at);
    return this.#sent.length + this.#reserved;
  }

  /** When the oldest call sent in the last minute leaves it; undefined when there is none. */
  freesAt(now: number): number | undefined {
    forgetExpired(this.#sent, now, (at) => at);
    const oldest = this.#sent[0];
    return oldest === undefined ? undefined : oldest + BUDGET_WINDOW_MS;
  }

  /** When `calls` more (and a slot, if `needsSlot`) fit: undefined for now, +Infinity if only a slot or call given back makes room. */
  waitsUntil(calls: number, needsSlot: boolean, perMinute: number, now: number): number | undefined {
    if (needsSlot && this.#inFlight >= this.#slots) return Number.POSITIVE_INFINITY;
    if (this.used(now) + calls <= perMinute) return undefined;
    return this.freesAt(now) ?? Number.POSITIVE_INFINITY;
  }

  hold(slots: number, calls: number): void {
    this.#inFlight += slots;
    this.#reserved += calls;
  }

  free(slots: number, calls: number): void {
    this.#inFlight -= slots;
    this.#reserved -= calls;
  }

  send(now: number): void {
    this.#reserved -= 1;
    this.#sent.push(now);
  }
}
