import type { BudgetRequest } from '../../src/upstream/budget.js';

/** A deadline `ms` of real time from now. */
export const soon = (ms = 50): number => performance.now() + ms;

/** One client call asking for one turn, until `soon()`, unless told otherwise. */
export const call = (overrides: Partial<BudgetRequest> = {}): BudgetRequest => ({
  calls: 1,
  priority: 'client',
  isNewCredential: () => false,
  deadline: soon(),
  ...overrides,
});

/** `granted`, or the error a reservation was refused with. */
export const refusalOf = (pending: Promise<unknown>): Promise<unknown> => pending.then(() => 'granted', (error: unknown) => error);
