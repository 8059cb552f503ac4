// `npm run simulator`: a Deskie stand-in to point the proxy at by hand.
//   node dist/simulator/cli.js [--port 3001] [--host 127.0.0.1]
import { parseArgs } from 'node:util';
import { DEMO_API_KEY, DEMO_EMAIL, startSimulator } from './index.js';

const DEFAULT_CLI_PORT = 3001;
const DEFAULT_CLI_HOST = '127.0.0.1';
const MAX_PORT = 65_535;
const USAGE = `usage: simulator [--port ${DEFAULT_CLI_PORT}] [--host ${DEFAULT_CLI_HOST}]`;
/** Exit code for a command line the tool cannot run with. */
const EXIT_USAGE = 2;

interface CliOptions {
  readonly host: string;
  readonly port: number;
}

function parseCli(argv: readonly string[]): CliOptions {
  const { values } = parseArgs({
    args: [...argv],
    options: {
      port: { type: 'string', default: String(DEFAULT_CLI_PORT) },
      host: { type: 'string', default: DEFAULT_CLI_HOST },
    },
  });
  const port = Number(values.port);
  if (!Number.isInteger(port) || port < 0 || port > MAX_PORT) {
    throw new TypeError(`--port must be an integer from 0 to ${MAX_PORT}, got "${values.port}"`);
  }
  return { host: values.host, port };
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
  console.log(`Demo credentials: ${DEMO_EMAIL} / ${DEMO_API_KEY}`);
  console.log(`Try: curl -u ${DEMO_EMAIL}:${DEMO_API_KEY} "${simulator.url}/api/stats_leaderboard.json?period=today"`);

  const stop = (signal: NodeJS.Signals): void => {
    console.log(`${signal} received, closing the simulator`);
    void simulator.close();
  };
  process.once('SIGINT', stop);
  process.once('SIGTERM', stop);
}

await main();
