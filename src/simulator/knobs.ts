// Knobs a test's `set()` or POST /_simulator/knobs turn to make the simulator slow, faulty or stingy; both: checkKnobs.

export const SIMULATOR_FAULTS = [
  'none',
  'error500',
  'rateLimited',
  'hang',
  'malformed',
  'redirect',
  'drop',
  'nonObject',
  'deepJson',
] as const;
export type SimulatorFault = (typeof SIMULATOR_FAULTS)[number];

export interface SimulatorKnobs {
  latencyMs: number; // delay before answering, default 0
  fault: SimulatorFault; // default 'none'
  /** The fault starts only after this many calls have been answered normally (a failure on page 3, say); default 0. */
  faultAfterCalls: number;
  /** `retry_after` the `rateLimited` fault sends, in seconds; default 30. */
  retryAfterSeconds: number;
  /** Sent verbatim as `retry_after` by `rateLimited` in place of `retryAfterSeconds` ("soon", "999999999"); default null. */
  retryAfter: string | null;
  /** The account's budget, calls a minute; default the `rateLimitPerMinute` option (1500). */
  rateLimitPerMinute: number;
  /** Status changes every staff-status window holds (100 a page), to make a merge of known length; default null, the data's own count. */
  staffStatusChanges: number | null;
  /** Deskie's own cache: a query's numbers are computed once per lifetime of its period; default true. False computes at every call. */
  deskieCache: boolean;
  /** Another client of the account calls every query at random moments, so its calls, not only ours, start cache periods; default false. */
  foreignClient: boolean;
  /** Seeds the foreign client's moments, so a run can be repeated; default 1. */
  foreignClientSeed: number;
  /** The foreign client calls each query once in every interval this long, at a random moment within it; default 60000. */
  foreignClientIntervalMs: number;
}

/** Every knob but the rate limit, whose default comes from the simulator's options. */
export const DEFAULT_KNOBS: Readonly<Omit<SimulatorKnobs, 'rateLimitPerMinute'>> = {
  latencyMs: 0,
  fault: 'none',
  faultAfterCalls: 0,
  retryAfterSeconds: 30,
  retryAfter: null,
  staffStatusChanges: null,
  deskieCache: true,
  foreignClient: false,
  foreignClientSeed: 1,
  // A dashboard polling every minute.
  foreignClientIntervalMs: 60_000,
};

/** A knob value the simulator cannot run with; POST /_simulator/knobs answers it with 400. */
export class InvalidKnobError extends Error {
  override readonly name = 'InvalidKnobError';
}

type KnobRule = { readonly accepts: (value: unknown) => boolean; readonly expected: string };

const KNOB_RULES: Readonly<Record<keyof SimulatorKnobs, KnobRule>> = {
  latencyMs: { accepts: isWholeNumber, expected: 'a whole number of milliseconds' },
  fault: { accepts: (value) => (SIMULATOR_FAULTS as readonly unknown[]).includes(value), expected: `one of ${SIMULATOR_FAULTS.join(', ')}` },
  faultAfterCalls: { accepts: isWholeNumber, expected: 'a whole number of calls' },
  retryAfterSeconds: { accepts: isWholeNumber, expected: 'a whole number of seconds' },
  retryAfter: { accepts: (value) => value === null || typeof value === 'string', expected: 'a string or null' },
  // Zero would refuse every call forever; Deskie's smallest budget is 20 a minute.
  rateLimitPerMinute: { accepts: (value) => isWholeNumber(value) && value > 0, expected: 'a positive integer' },
  staffStatusChanges: { accepts: (value) => value === null || isWholeNumber(value), expected: 'a whole number of changes or null' },
  deskieCache: { accepts: isBoolean, expected: 'true or false' },
  foreignClient: { accepts: isBoolean, expected: 'true or false' },
  foreignClientSeed: { accepts: isWholeNumber, expected: 'a whole number' },
  foreignClientIntervalMs: { accepts: (value) => isWholeNumber(value) && value > 0, expected: 'a positive whole number of milliseconds' },
};

/** Checks each change (undefined: as is); an unknown name is refused: a typo would leave a test without its fault. */
export function checkKnobs(changes: unknown): Partial<SimulatorKnobs> {
  if (typeof changes !== 'object' || changes === null || Array.isArray(changes)) {
    throw new InvalidKnobError('knobs must be an object');
  }
  const checked: Record<string, unknown> = {};
  for (const [name, value] of Object.entries(changes)) {
    if (!Object.hasOwn(KNOB_RULES, name)) {
      throw new InvalidKnobError(`unknown knob "${name}"; knobs are ${Object.keys(KNOB_RULES).join(', ')}`);
    }
    if (value === undefined) continue;
    const rule = KNOB_RULES[name as keyof SimulatorKnobs];
    if (!rule.accepts(value)) {
      throw new InvalidKnobError(`${name} must be ${rule.expected}, got ${JSON.stringify(value)}`);
    }
    checked[name] = value;
  }
  return checked as Partial<SimulatorKnobs>;
}

function isWholeNumber(value: unknown): value is number {
  return Number.isSafeInteger(value) && (value as number) >= 0;
}

function isBoolean(value: unknown): value is boolean {
  return typeof value === 'boolean';
}
