import type { AnswerStore } from '../cache/store.js';

export type ReadinessState = 'starting' | 'ready' | 'draining';

/**
 * Whether a load balancer should send this process requests: not before it
 * has started, not once it is draining for shutdown, not while its store
 * cannot hold answers. Deskie's state is deliberately not part of it: cached
 * answers still serve while Deskie is limited or down, and every replica
 * sees the same Deskie, so failing on it would take them all out together.
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

  /** The state /readyz reports, and whether it is ready. */
  check(store: AnswerStore): { readonly ready: boolean; readonly status: string } {
    if (this.#state !== 'ready') return { ready: false, status: this.#state };
    if (!store.usable) return { ready: false, status: 'store-unusable' };
    return { ready: true, status: 'ready' };
  }
}
