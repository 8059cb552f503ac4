import type { CancelTask, Scheduler } from '../../src/cache/scheduler.js';
import type { ManualClock } from './stack.js';

/** A scheduler on a ManualClock: tasks run when the test moves the clock past them, in order of their time, never by themselves. */
export class ManualScheduler implements Scheduler {
  readonly #tasks = new Set<{ readonly atMs: number; readonly task: () => void }>();

  constructor(readonly clock: ManualClock) {}

  at(atMs: number, task: () => void): CancelTask {
    const entry = { atMs, task };
    this.#tasks.add(entry);
    return () => this.#tasks.delete(entry);
  }

  /** When the next task is due (epoch ms), or undefined when none is. */
  get nextAtMs(): number | undefined {
    let next: number | undefined;
    for (const { atMs } of this.#tasks) if (next === undefined || atMs < next) next = atMs;
    return next;
  }

  get pending(): number {
    return this.#tasks.size;
  }

  /** Moves the clock by `ms` and runs every task due by then, earliest first (tasks they add included, if due). */
  advance(ms: number): void {
    this.clock.advance(ms);
    this.runDue();
  }

  /** Sets the clock (ISO instant) and runs what is due. */
  set(iso: string): void {
    this.clock.set(iso);
    this.runDue();
  }

  runDue(): void {
    for (;;) {
      const due = [...this.#tasks].filter(({ atMs }) => atMs <= this.clock.nowMs).sort((a, b) => a.atMs - b.atMs)[0];
      if (due === undefined) return;
      this.#tasks.delete(due);
      due.task();
    }
  }
}
