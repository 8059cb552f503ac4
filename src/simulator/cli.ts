// `npm run simulator`: a Deskie stand-in to point the proxy at by hand.
//   node dist/simulator/cli.js [--port 3001] [--host 127.0.0.1] [--latency-ms 0]
//     [--fault none|error500|rateLimited|hang|malformed|redirect] [--user email:key ...]
import { parseArgs } from 'node:util';
import { DEMO_API_KEY, DEMO_EMAIL, SIMULATOR_FAULTS, type SimulatorFault, type SimulatorOptions, startSimulator } from './index.js';

const DEFAULT_CLI_PORT = 3001;
const DEFAULT_CLI_HOST = '127.0.0.1';
const MAX_PORT = 65_535;
const USAGE =
  `usage: simulator [--port ${DEFAULT_CLI_PORT}] [--host ${DEFAULT_CLI_HOST}] [--latency-ms 0] ` +
  `[--fault ${SIMULATOR_FAULTS.join('|')}] [--user email:key ...]`;
/** Exit code for a command line the tool cannot run with. */
const EXIT_USAGE = 2;

type CliOptions = Required<Pick<SimulatorOptions, 'host' | 'port' | 'users' | 'knobs'>>;

function parseCli(argv: readonly string[]): CliOptions {
  const { values } = parseArgs({
    args: [...argv],
    options: {
      port: { type: 'string', default: String(DEFAULT_CLI_PORT) },
      host: { type: 'string', default: DEFAULT_CLI_HOST },
      'latency-ms': { type: 'string', default: '0' },
      fault: { type: 'string', default: 'none' },
      user: { type: 'string', multiple: true, default: [`${DEMO_EMAIL}:${DEMO_API_KEY}`] },
    },
  });
  const port = Number(values.port);
  if (!Number.isInteger(port) || port < 0 || port > MAX_PORT) {
    throw new TypeError(`--port must be an integer from 0 to ${MAX_PORT}, got "${values.port}"`);
  }
  const latencyMs = Number(values['latency-ms']);
  if (!Number.isInteger(latencyMs) || latencyMs < 0) {
    throw new TypeError(`--latency-ms must be a whole number of milliseconds, got "${values['latency-ms']}"`);
  }
  if (!(SIMULATOR_FAULTS as readonly string[]).includes(values.fault)) {
    throw new TypeError(`--fault must be one of ${SIMULATOR_FAULTS.join(', ')}, got "${values.fault}"`);
  }
  const users: Record<string, string> = {};
  for (const user of values.user) {
    const colon = user.indexOf(':');
    if (colon < 1) throw new TypeError(`--user must be email:key, got "${user}"`);
    users[user.slice(0, colon)] = user.slice(colon + 1);
  }
  return { host: values.host, port, users, knobs: { latencyMs, fault: values.fault as SimulatorFault } };
}

async function main(): Promise<void> {
  let options: CliOptions;
  try {
    options = parseCli(process.argv.slice(2));
  } catch (error) {
    console.error(`${(error as Error).message}\n${USAGE}`);
    process.exitCode = EXIT_USAGE;
    return;
  }

  const simulator = await startSimulator(options);
  console.log(`Deskie simulator listening on ${simulator.url}`);
  const [email, key] = Object.entries(options.users)[0] ?? [DEMO_EMAIL, DEMO_API_KEY];
  console.log(`Users: ${Object.keys(options.users).join(', ')}; latency ${options.knobs.latencyMs} ms; fault ${options.knobs.fault}`);
  console.log(`Try: curl -u ${email}:${key} "${simulator.url}/api/stats_leaderboard.json?period=today"`);

  const stop = (signal: NodeJS.Signals): void => {
    console.log(`${signal} received, closing the simulator`);
    void simulator.close();
  };
  process.once('SIGINT', stop);
  process.once('SIGTERM', stop);
}

await main();
