/** Client misses go out before background refreshes. */
export type CallPriority = 'client' | 'refresh';

export interface BudgetRequest {
  /** Calls reserved at once: 1, or every page a `page=all` merge is known to need. */
  readonly calls: number;
  readonly priority: CallPriority;
  /** Whether the credential is new (it draws on the small share); asked at each look, so waiting calls leave the share once accepted. */
  readonly isNewCredential: () => boolean;
  /** `performance.now()` by which the calls must be granted, or the wait ends with a 503. */
  readonly deadline: number;
  /** A `page=all` merge: waits for the merge turn before its first call and keeps it until the grant is released. */
  readonly merge?: boolean;
}
