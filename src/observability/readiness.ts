import type { AnswerStore } from '../cache/store.js';

export type ReadinessState = 'starting' | 'ready' | 'draining';

/** Unready if starting, draining or storeless, not for Deskie: cached answers serve; all replicas would go at once. */
export class Readiness {
  #state: ReadinessState = 'starting';

  markReady(): void {
    if (this.#state === 'starting') this.#state = 'ready';
  }

  /** From now on /readyz answers 503; requests are still served until the server closes. */
  startDraining(): void {
    this.#state = 'draining';
  }

  get state(): ReadinessState {
    return this.#state;
  }

  check(store: AnswerStore): { readonly ready: boolean; readonly status: string } {
    if (this.#state !== 'ready') return { ready: false, status: this.#state };
    if (!store.usable) return { ready: false, status: 'store-unusable' };
    return { ready: true, status: 'ready' };
  }
}
