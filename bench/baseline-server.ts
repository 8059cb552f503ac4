/**
 * The hit path's baseline: a Fastify route that sends the bytes and headers
 * the proxy sent for the same request, and logs as the proxy does, with the
 * proxy's own parts: its logger on its stdout destination (pino at info),
 * Fastify's request logging off, and its onResponse access line, told what
 * a hit of the proxy tells it; and its HTTP server's limits, whose timers
 * Node re-arms at every read and write (docs/benchmarks.md says what they
 * cost). What the proxy costs beyond this is its own work for a hit: the
 * credentials, the query, the cache look-up.
 * Run as its own process: `node --import tsx bench/baseline-server.ts <port> <answer.json> <format>`.
 */
import { readFileSync } from 'node:fs';
import Fastify, { type FastifyBaseLogger, LogController } from 'fastify';
import { serverLimits } from '../src/app.js';
import { loadConfig } from '../src/config/config.js';
import { registerAccessLog, type StatsAccess } from '../src/observability/access-log.js';
import { createLogger, stdoutDestination } from '../src/observability/logging.js';

const [port, answerFile, format] = process.argv.slice(2);
if (!port || !answerFile || !format) throw new Error('usage: baseline-server.ts <port> <answer.json> <format>');
const answer = JSON.parse(readFileSync(answerFile, 'utf8')) as { headers: Record<string, string>; body: string };
const body = Buffer.from(answer.body, 'base64');
const access: StatsAccess = { query: { route: 'stats_leaderboard', period: 'this_month', format, coding: 'identity' }, outcome: 'hit' };

const logger: FastifyBaseLogger = createLogger('info', await stdoutDestination(true));
const app = Fastify({
  loggerInstance: logger,
  logController: new LogController({ disableRequestLogging: true }),
  // As the proxy's, from the same environment (the bench's, with its defaults).
  ...serverLimits(loadConfig({ ...process.env, DESKIE_URL: 'http://127.0.0.1:9' })),
});
registerAccessLog(app);
app.get('/api/stats_leaderboard.json', (request, reply) => {
  request.access = access;
  return reply.headers(answer.headers).send(body);
});
await app.listen({ port: Number(port), host: '127.0.0.1' });
process.once('SIGTERM', () => void app.close().then(() => process.exit(0)));
