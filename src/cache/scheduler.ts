/** Cancels a task that has not run yet. */
export type CancelTask = () => void;

/** Runs work at an instant of the injected clock; tests move their clock and fire what is due, without sleeping. */
export interface Scheduler {
  /** Runs `task` once, when the clock reaches `atMs` (on a later turn if it already has). */
  at(atMs: number, task: () => void): CancelTask;
}

/** setTimeout's longest delay (about 24.8 days): a month-long lifetime's task is re-armed on the way. */
const LONGEST_TIMER_MS = 2 ** 31 - 1;

/** Runs the task when its delay ends if the clock agrees (set back: re-armed); unref'ed, it never holds the process. */
export function timerScheduler(clock: () => number): Scheduler {
  return {
    at(atMs, task) {
      let timer: NodeJS.Timeout | undefined;
      const arm = (): void => {
        const delayMs = atMs - clock();
        timer = setTimeout(() => (atMs <= clock() ? task() : arm()), Math.min(Math.max(0, delayMs), LONGEST_TIMER_MS));
        timer.unref();
      };
      arm();
      return () => clearTimeout(timer);
    },
  };
}
