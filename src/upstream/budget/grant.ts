import type { BudgetRequest } from './types.js';

/** What a grant's calls do to the budget that granted them. */
export interface GrantLedger {
  /** Reserves more calls for the grant, first in the queue, until the deadline. */
  extend(grant: BudgetGrant, calls: number, deadline: number): Promise<void>;
  /** A reserved call goes out now (`member`: its entry in the shared log, if it took one). */
  spend(newCredential: boolean, member: string | undefined): void;
  /** Deskie accepted the grant's credential: its slot and reserved calls leave the new-credential share. */
  trust(grant: BudgetGrant): void;
  /** The grant is done: its slot, unspent calls and merge turn go back, here and in the shared log. */
  release(grant: BudgetGrant, unspent: number, unspentMembers: readonly string[]): void;
}

/** Calls reserved for one answer and its slot in flight; each is spent when sent. `release` must be called once, whatever happened. */
export class BudgetGrant {
  readonly #ledger: GrantLedger;
  #reserved = 0;
  #spent = 0;
  #released = false;
  #newCredential = false;
  /** Entries taken in the shared log and not yet sent (fewer than #reserved for calls granted on the fallback share). */
  readonly #members: string[] = [];

  constructor(
    ledger: GrantLedger,
    readonly request: BudgetRequest,
  ) {
    this.#ledger = ledger;
  }

  /** @internal The slot was granted from the new-credential share or not. */
  granted(newCredential: boolean): void {
    this.#newCredential = newCredential;
  }

  get newCredential(): boolean {
    return this.#newCredential;
  }

  /** Deskie has just accepted the credential: the rest of this answer's calls are an ordinary client's. */
  trust(): void {
    if (!this.#newCredential || this.#released) return;
    this.#ledger.trust(this);
    this.#newCredential = false;
  }

  get spent(): number {
    return this.#spent;
  }

  /** Calls reserved and not yet sent. */
  get remaining(): number {
    return this.#reserved;
  }

  /** @internal */
  add(calls: number): void {
    this.#reserved += calls;
  }

  /** @internal Entries the shared log gave for reserved calls. */
  hold(members: readonly string[]): void {
    this.#members.push(...members);
  }

  extend(calls: number, deadline: number): Promise<void> {
    return this.#ledger.extend(this, calls, deadline);
  }

  /** One reserved call is being sent now. */
  spend(): void {
    if (this.#reserved <= 0) throw new Error('no reserved call left to spend');
    this.#reserved -= 1;
    this.#spent += 1;
    this.#ledger.spend(this.#newCredential, this.#members.pop());
  }

  release(): void {
    if (this.#released) return;
    this.#released = true;
    this.#ledger.release(this, this.#reserved, this.#members.splice(0));
    this.#reserved = 0;
  }
}
