/** Client misses go out before background refreshes. */
export type CallPriority = 'client' | 'refresh';

export interface BudgetRequest {
  /** Calls reserved at once: 1, or every page a `page=all` merge is known to need. */
  readonly calls: number;
  readonly priority: CallPriority;
  /**
   * Whether Deskie has never accepted the credential (it then draws from the
   * small share). Asked each time the queue is looked at, so calls that waited
   * behind a credential's first answer leave the share once it is accepted.
   */
  readonly isNewCredential: () => boolean;
  /** `performance.now()` by which the calls must be granted, or the wait ends with a 503. */
  readonly deadline: number;
  /**
   * A `page=all` merge: before its first call it waits, until the deadline,
   * for the merge turn, which it keeps until the grant is released.
   */
  readonly merge?: boolean;
}
