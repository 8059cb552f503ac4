// `npm run simulator`: a Deskie to point the proxy at by hand; flags: CLI_USAGE; /_simulator/ (control.ts) steers it.
import { CLI_USAGE, type CliOptions, parseCliOptions } from './cli-options.js';
import { CONTROL_PATH_PREFIX, DEMO_API_KEY, DEMO_EMAIL, startSimulator } from './index.js';

/** Exit code for a command line the tool cannot run with. */
const EXIT_USAGE = 2;

async function main(): Promise<void> {
  let options: CliOptions;
  try {
    options = parseCliOptions(process.argv.slice(2));
  } catch (error) {
    console.error(`${(error as Error).message}\n${CLI_USAGE}`);
    process.exitCode = EXIT_USAGE;
    return;
  }

  const simulator = await startSimulator(options);
  console.log(`Deskie simulator listening on ${simulator.url}`);
  const [email, key] = Object.entries(options.users)[0] ?? [DEMO_EMAIL, DEMO_API_KEY];
  console.log(
    `Users: ${Object.keys(options.users).join(', ')}; latency ${options.knobs.latencyMs} ms; ` +
      `rate limit ${options.rateLimitPerMinute} a minute; fault ${options.knobs.fault}`,
  );
  console.log(`Try: curl -u ${email}:${key} "${simulator.url}/api/stats_leaderboard.json?period=today"`);
  console.log(`Steer: curl -X POST "${simulator.url}${CONTROL_PATH_PREFIX}knobs" -d '{"fault":"error500"}'`);

  const stop = (signal: NodeJS.Signals): void => {
    console.log(`${signal} received, closing the simulator`);
    void simulator.close();
  };
  process.once('SIGINT', stop);
  process.once('SIGTERM', stop);
}

await main();
