import type { AnswerStore } from '../cache/store.js';

export type ReadinessState = 'starting' | 'ready' | 'draining';

/**
 * Whether a load balancer should send this process requests: not while starting, draining or without a usable store.
 * Not Deskie's state: cached answers serve while it is down, and failing on it would take every replica out at once.
 */
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
