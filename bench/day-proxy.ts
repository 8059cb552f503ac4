/**
 * The proxy of the dashboard day (day.ts), as a process of its own: built
 * from the environment and logging to stdout as server.ts does, but on the
 * day's clock, which each request brings in an X-Bench-Now header (epoch ms)
 * and which holds until the next request. day.ts compiles this file into
 * dist/bench/ and runs it with the Node flags of `npm start`, so its RSS is
 * the compiled proxy's. Imports only from src/ (pointed at dist/ when
 * compiled) and Node.
 */
import type { IncomingMessage } from 'node:http';
import { buildApp } from '../src/app.js';
import { loadConfig } from '../src/config/config.js';
import { createLogger, stdoutDestination } from '../src/observability/logging.js';

const CLOCK_HEADER = 'x-bench-now';

let nowMs = Number(process.env.BENCH_START_MS ?? Date.now());
const config = loadConfig(process.env);
if (config.deskieUrl === null) throw new Error('DESKIE_URL is required');
const logger = createLogger(config.logLevel, await stdoutDestination(config.production));
const app = buildApp({ ...config, deskieUrl: config.deskieUrl }, { clock: () => nowMs, logger });
// Before Fastify sees the request, so that all it does for the request happens at the request's time.
app.server.prependListener('request', (request: IncomingMessage) => {
  const now = request.headers[CLOCK_HEADER];
  if (typeof now === 'string') nowMs = Number(now);
});
await app.listen({ port: config.port, host: config.host });
process.once('SIGTERM', () => void app.close().then(() => process.exit(0)));
