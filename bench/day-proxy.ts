/**
 * The proxy of the dashboard day (day.ts), as a process of its own: built
 * from the environment and logging to stdout as server.ts does, but on the
 * day's clock, which each request brings in an X-Bench-Now header (epoch ms)
 * and which holds until the next request. day.ts compiles this file into
 * dist/bench/ and runs it with the Node flags of `npm start`, so its RSS is
 * the compiled proxy's. Imports only from src/ (pointed at dist/ when
 * compiled) and Node.
 *
 * Refreshes due on the day's clock run when a request moves the clock past
 * them, and that request (and any that came with it) is handled once their
 * calls have ended: Deskie answers in far less than the 0.6 s between two
 * polls of the day.
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import { buildApp } from '../src/app.js';
import type { Scheduler } from '../src/cache/scheduler.js';
import { loadConfig } from '../src/config/config.js';
import { createLogger, stdoutDestination } from '../src/observability/logging.js';

const CLOCK_HEADER = 'x-bench-now';
/** On every answer, the earliest task scheduled, epoch ms (Infinity for none): day.ts sends polls before it together. */
const NEXT_DUE_HEADER = 'x-bench-next-due';

let nowMs = Number(process.env['BENCH_START_MS'] ?? Date.now());
const tasks = new Set<{ readonly atMs: number; readonly task: () => void }>();
const scheduler: Scheduler = {
  at(atMs, task) {
    const entry = { atMs, task };
    tasks.add(entry);
    return () => tasks.delete(entry);
  },
};
/** Runs the tasks due by now, earliest first; whether any ran. */
function runDue(): boolean {
  let ran = false;
  for (;;) {
    const due = [...tasks].filter(({ atMs }) => atMs <= nowMs).sort((a, b) => a.atMs - b.atMs)[0];
    if (due === undefined) return ran;
    tasks.delete(due);
    due.task();
    ran = true;
  }
}

const config = loadConfig(process.env);
if (config.deskieUrl === null) throw new Error('DESKIE_URL is required');
const logger = createLogger(config.logLevel, await stdoutDestination(config.production));
// BENCH_REFRESH_MARGIN_MS below zero (which REFRESH_MARGIN_MS refuses) replays refresh-ahead, a refresh before expiry, for contrast.
const margin = process.env['BENCH_REFRESH_MARGIN_MS'];
const app = buildApp(
  { ...config, deskieUrl: config.deskieUrl, ...(margin === undefined ? {} : { refreshMarginMs: Number(margin) }) },
  { clock: () => nowMs, logger, scheduler },
);

/** Until no call to Deskie is in flight or queued. */
async function upstreamIdle(): Promise<void> {
  // A refresh just run reaches the budget a few turns of the event loop later (its lease, its turn).
  await new Promise((resolve) => setImmediate(resolve));
  for (;;) {
    const { upstream } = (await app.inject('/healthz')).json<{ upstream: { inFlight: number; queued: number } }>();
    if (upstream.inFlight === 0 && upstream.queued === 0) return;
    await new Promise((resolve) => setImmediate(resolve));
  }
}

/** Done once the refreshes the last clock move made due have ended. */
let settling: Promise<void> = Promise.resolve();

await app.ready();
// Before Fastify sees the request, so that all it does for the request happens at the request's time.
const fastify = app.server.listeners('request') as ((request: IncomingMessage, response: ServerResponse) => void)[];
app.server.removeAllListeners('request');
app.server.on('request', (request: IncomingMessage, response: ServerResponse) => {
  // Written with the answer's headers, when the tasks the request scheduled are in.
  const writeHead = response.writeHead;
  response.writeHead = function (this: ServerResponse, ...args: Parameters<ServerResponse['writeHead']>) {
    this.setHeader(NEXT_DUE_HEADER, String(Math.min(...[...tasks].map(({ atMs }) => atMs))));
    return writeHead.apply(this, args);
  } as ServerResponse['writeHead'];
  const now = request.headers[CLOCK_HEADER];
  const atMs = typeof now === 'string' ? Number(now) : nowMs;
  nowMs = atMs;
  const handle = (): void => {
    // Polls sent together (day.ts) are each answered at their own time: a hit is answered in this turn.
    nowMs = atMs;
    for (const listener of fastify) listener.call(app.server, request, response);
  };
  // A dashboard's panels come at once: those after the one that ran the due refreshes wait for them too.
  if (runDue()) settling = upstreamIdle();
  void settling.then(handle);
});
await app.listen({ port: config.port, host: config.host });
process.once('SIGTERM', () => void app.close().then(() => process.exit(0)));
