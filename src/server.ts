import { realpathSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import type { FastifyInstance } from 'fastify';
import { pino, type DestinationStream, type Logger } from 'pino';
import { buildApp } from './app.js';
import { type Config, ConfigError, loadConfig } from './config.js';

/** Extra time on shutdown, beyond the upstream timeout, for requests in flight to finish. */
const SHUTDOWN_GRACE_MS = 5_000;
/**
 * Connections the kernel may queue before they are accepted. Node's default
 * (511) makes the rest of a dashboard stampede retry their SYN a second later;
 * the kernel still caps it at net.core.somaxconn.
 */
const LISTEN_BACKLOG = 4096;
/** How often, while closing, connections that have gone idle are closed (keep-alive clients would hold them). */
const IDLE_SWEEP_MS = 100;

/**
 * Reads the configuration, starts the embedded simulator when no Deskie is
 * configured, and listens. Throws ConfigError for a bad environment.
 */
export async function startServer(
  env: Readonly<Record<string, string | undefined>>,
  logDestination?: DestinationStream,
): Promise<{ app: FastifyInstance; config: Config; logger: Logger }> {
  const config = loadConfig(env);
  const logger = pino({ level: config.logLevel, name: 'deskie-stats-proxy' }, logDestination);

  // With no Deskie account configured (and not in production: loadConfig
  // refuses that), serve a simulated one so that `npm ci && npm start` works
  // on a fresh machine.
  let deskieUrl = config.deskieUrl;
  // Loaded only when used, so a production process never holds the simulator.
  const simulator = deskieUrl === null ? await (await import('./simulator/index.js')).startSimulator({ host: '127.0.0.1', port: 0, timezone: config.timezone }) : null;
  if (simulator) {
    deskieUrl = simulator.url;
    logger.warn(
      { simulator: deskieUrl, user: 'demo@example.com', password: 'demo' },
      'DESKIE_URL is not set: serving SIMULATED data from a built-in Deskie stand-in. Set DESKIE_URL to your account for real numbers.',
    );
  }

  if (config.production && config.cacheKeySecretIsRandom) {
    logger.warn(
      'CACHE_KEY_SECRET is not set: a random one is used, so every restart changes every ETag (clients lose their 304s). ' +
        'Set it to a fixed secret of at least 16 characters.',
    );
  }
  const app = buildApp({ ...config, deskieUrl: deskieUrl as string }, { logger });
  if (simulator) app.addHook('onClose', () => simulator.close());
  await app.listen({ port: config.port, host: config.host, backlog: LISTEN_BACKLOG });
  logger.info({ deskie: simulator ? 'simulated' : deskieUrl, timezone: config.timezone }, 'deskie-stats-proxy ready');
  return { app, config, logger };
}

/* c8 ignore start: the process entry, exercised by npm start and the container */
async function main(): Promise<void> {
  let started: { app: FastifyInstance; config: Config; logger: Logger };
  try {
    started = await startServer(process.env);
  } catch (error) {
    if (!(error instanceof ConfigError)) throw error;
    process.stderr.write(`deskie-stats-proxy: ${error.message}\n`);
    process.exit(1);
  }
  const { app, config, logger } = started;

  let closing = false;
  const shutdown = (signal: string): void => {
    if (closing) return;
    closing = true;
    logger.info({ signal }, 'shutting down');
    // Requests in flight may wait for their turn in the upstream budget, then
    // for Deskie up to its timeout (a page=all merge up to its own, plus the
    // page under way); a keep-alive connection that goes idle after its
    // answer is closed at once.
    const longestWaitMs = config.upstreamQueueMs + config.pageAllTimeoutMs + config.upstreamTimeoutMs;
    setTimeout(() => process.exit(1), longestWaitMs + SHUTDOWN_GRACE_MS).unref();
    setInterval(() => app.server.closeIdleConnections(), IDLE_SWEEP_MS).unref();
    app.close().then(
      () => process.exit(0),
      (error: unknown) => {
        logger.error({ err: error }, 'error while closing');
        process.exit(1);
      },
    );
  };
  process.once('SIGINT', () => shutdown('SIGINT'));
  process.once('SIGTERM', () => shutdown('SIGTERM'));
}

const entry = process.argv[1];
if (entry !== undefined && realpathSync(entry) === fileURLToPath(import.meta.url)) {
  main().catch((error: unknown) => {
    process.stderr.write(`deskie-stats-proxy failed to start: ${(error as Error).stack ?? String(error)}\n`);
    process.exit(1);
  });
}
/* c8 ignore stop */
