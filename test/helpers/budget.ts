import type { BudgetOptions, BudgetRequest } from '../../src/upstream/budget/budget.js';

/** The budget the tests start from: no cap, a 20% reserve, 4 at once, 10% for new credentials, 100 waiting. */
export const BUDGET_DEFAULTS = {
  ratePerMinute: undefined,
  reserve: 0.2,
  concurrency: 4,
  newCredentialShare: 0.1,
  queueLength: 100,
} as const satisfies Partial<BudgetOptions>;

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
