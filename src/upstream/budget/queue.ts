import type { CallPriority } from './types.js';

/** Shortest wait before the queue is looked at again for calls the clock lets out. */
export const MIN_WAKE_MS = 25;

/** Why a waiting call cannot go now. */
export interface Block {
  /** Only the new-credential share holds it back: the calls behind it may pass. */
  readonly shareOnly: boolean;
  /** Clock ms at which the clock lifts the block; +Infinity when only a released slot or call can. */
  readonly freesAt: number;
}

/** What the budget decides for the queue. */
export interface QueueRules<Call> {
  blocked(call: Call, now: number): Block | undefined;
  /** Reserves what the call asked for, as it leaves the queue. */
  grant(call: Call): void;
  /** Looks at the queue again: the clock has let a call out. */
  wake(): void;
}

/** A call granted here, sleeping before it asks the shared log again. */
interface Sleeper {
  readonly reject: (error: Error) => void;
  readonly timer: NodeJS.Timeout;
}

interface Waiter<Call> extends Sleeper {
  readonly call: Call;
  readonly resolve: () => void;
}

/** Calls wait to deadlines: a merge's later calls (it has spent), client misses, refreshes; sleepers refused too. */
export class CallQueue<Call> {
  readonly #rules: QueueRules<Call>;
  readonly #lines: Record<CallPriority, Array<Waiter<Call>>> = { client: [], refresh: [] };
  #wakeTimer: NodeJS.Timeout | undefined;
  #wakeTimerAt = Number.POSITIVE_INFINITY;
  readonly #sleepers = new Set<Sleeper>();

  constructor(rules: QueueRules<Call>) {
    this.#rules = rules;
  }

  get length(): number {
    return this.#lines.client.length + this.#lines.refresh.length;
  }

  /** Waits until `call` is granted, or for `waitMs` real ms and is then refused with `timedOut()`. */
  wait(call: Call, line: CallPriority | 'first', waitMs: number, timedOut: () => Error): Promise<void> {
    return new Promise<void>((resolve, reject) => {
      const waiter: Waiter<Call> = {
        call,
        resolve,
        reject,
        timer: setTimeout(() => {
          this.#remove(waiter);
          reject(timedOut());
        }, waitMs).unref(),
      };
      if (line === 'first') this.#lines.client.unshift(waiter);
      else this.#lines[line].push(waiter);
    });
  }

  /** Sleeps `ms` real ms, unless every waiting call is refused first. */
  sleep(ms: number): Promise<void> {
    return new Promise<void>((resolve, reject) => {
      const sleeper: Sleeper = {
        reject,
        timer: setTimeout(() => {
          this.#sleepers.delete(sleeper);
          resolve();
        }, ms).unref(),
      };
      this.#sleepers.add(sleeper);
    });
  }

  /** Grants waiting calls in order; one blocked only by the new-credential share lets those behind pass, any other block stops the queue. */
  dispatch(now: number): void {
    let wakeAt = Number.POSITIVE_INFINITY;
    for (const line of [this.#lines.client, this.#lines.refresh]) {
      for (let index = 0; index < line.length; ) {
        const waiter = line[index] as Waiter<Call>;
        const block = this.#rules.blocked(waiter.call, now);
        if (block === undefined) {
          line.splice(index, 1);
          clearTimeout(waiter.timer);
          this.#rules.grant(waiter.call);
          waiter.resolve();
          continue;
        }
        wakeAt = Math.min(wakeAt, block.freesAt);
        if (!block.shareOnly) return this.#wakeAt(wakeAt, now);
        index += 1;
      }
    }
    this.#wakeAt(wakeAt, now);
  }

  /** Refuses every waiting and sleeping call, each with an error of its own. */
  refuseAll(error: () => Error): void {
    const waiting: Sleeper[] = [...this.#lines.client.splice(0), ...this.#lines.refresh.splice(0), ...this.#sleepers];
    this.#sleepers.clear();
    for (const { reject, timer } of waiting) {
      clearTimeout(timer);
      reject(error());
    }
  }

  close(error: () => Error): void {
    clearTimeout(this.#wakeTimer);
    this.refuseAll(error);
  }

  #remove(waiter: Waiter<Call>): void {
    for (const line of Object.values(this.#lines)) {
      const index = line.indexOf(waiter);
      if (index !== -1) line.splice(index, 1);
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
      this.#rules.wake();
    }, Math.max(MIN_WAKE_MS, at - now)).unref();
  }
}
