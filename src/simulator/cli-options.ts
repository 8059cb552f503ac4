// The simulator's flags, parsed apart from cli.ts so tests check every flag without starting a process.
import { parseArgs } from 'node:util';
import {
  DEFAULT_RATE_LIMIT_PER_MINUTE,
  DEMO_API_KEY,
  DEMO_EMAIL,
  SIMULATOR_FAULTS,
  type SimulatorFault,
  type SimulatorKnobs,
  type SimulatorOptions,
} from './index.js';

const DEFAULT_CLI_PORT = 3001;
const DEFAULT_CLI_HOST = '127.0.0.1';
const MAX_PORT = 65_535;

export const CLI_USAGE =
  `usage: simulator [--port ${DEFAULT_CLI_PORT}] [--host ${DEFAULT_CLI_HOST}] [--latency-ms 0] ` +
  `[--rate-limit ${DEFAULT_RATE_LIMIT_PER_MINUTE}] [--timezone UTC] [--fault ${SIMULATOR_FAULTS.join('|')}] [--user email:key ...]`;

export type CliOptions = Required<Pick<SimulatorOptions, 'host' | 'port' | 'users' | 'rateLimitPerMinute' | 'timezone'>> & {
  readonly knobs: Pick<SimulatorKnobs, 'latencyMs' | 'fault'>;
};

/** The simulator's options from the arguments after `cli.js`; throws with a message naming the flag. */
export function parseCliOptions(argv: readonly string[]): CliOptions {
  const { values } = parseArgs({
    args: [...argv],
    options: {
      port: { type: 'string', default: String(DEFAULT_CLI_PORT) },
      host: { type: 'string', default: DEFAULT_CLI_HOST },
      'latency-ms': { type: 'string', default: '0' },
      'rate-limit': { type: 'string', default: String(DEFAULT_RATE_LIMIT_PER_MINUTE) },
      timezone: { type: 'string', default: 'UTC' },
      fault: { type: 'string', default: 'none' },
      user: { type: 'string', multiple: true, default: [`${DEMO_EMAIL}:${DEMO_API_KEY}`] },
    },
  });
  const port = wholeNumber(values.port, 'port', 0, MAX_PORT, `an integer from 0 to ${MAX_PORT}`);
  const latencyMs = wholeNumber(values['latency-ms'], 'latency-ms', 0, Infinity, 'a whole number of milliseconds');
  const rateLimitPerMinute = wholeNumber(values['rate-limit'], 'rate-limit', 1, Infinity, 'a positive number of calls a minute');
  if (!(SIMULATOR_FAULTS as readonly string[]).includes(values.fault)) {
    throw new TypeError(`--fault must be one of ${SIMULATOR_FAULTS.join(', ')}, got "${values.fault}"`);
  }
  const users: Record<string, string> = {};
  for (const user of values.user) {
    const colon = user.indexOf(':');
    if (colon < 1) throw new TypeError(`--user must be email:key, got "${user}"`);
    users[user.slice(0, colon)] = user.slice(colon + 1);
  }
  return { host: values.host, port, users, rateLimitPerMinute, timezone: values.timezone, knobs: { latencyMs, fault: values.fault as SimulatorFault } };
}

/** A flag's whole number from `min` to `max`; the TypeError names the flag and what it takes. */
function wholeNumber(text: string, flag: string, min: number, max: number, what: string): number {
  const value = Number(text);
  if (!Number.isInteger(value) || value < min || value > max) throw new TypeError(`--${flag} must be ${what}, got "${text}"`);
  return value;
}
