import { realpathSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import type { FastifyInstance } from 'fastify';
import type { DestinationStream, Logger } from 'pino';
import type { Config } from './config/config.js';

const entry = process.argv[1];
const isEntry = entry !== undefined && realpathSync(entry) === fileURLToPath(import.meta.url);
// A supervisor's SIGHUP mid-start would end the process: ignored from here, so all else is imported dynamically below.
if (isEntry) process.on('SIGHUP', () => {});

/** How long before SHUTDOWN_TIMEOUT_MS runs out the waits for Deskie are cut: time to write those answers and the last log lines. */
const CUT_BEFORE_EXIT_MS = 1_000;
/** Connections the kernel queues before accept: with Node's 511, the rest of a stampede retry their SYN a second later (capped by somaxconn). */
const LISTEN_BACKLOG = 4096;
/** How often, while closing, connections that have gone idle are closed (keep-alive clients would hold them). */
const IDLE_SWEEP_MS = 100;
/** How long a stopped server waits for its last log lines to be taken by a slow stdout reader (pino writes what is left at exit). */
const LOG_DRAIN_MS = 2_000;

export interface RunningServer {
  readonly app: FastifyInstance;
  readonly config: Config;
  readonly logger: Logger;
  /**
   * /readyz turns 503, the rest is served SHUTDOWN_DRAIN_SECONDS (unless `drain: false`, as for Ctrl-C), then requests
   * and log lines are awaited; near SHUTDOWN_TIMEOUT_MS Deskie waits are cut: stale if kept, else 503, Retry-After.
   */
  stop(options?: { readonly drain?: boolean }): Promise<void>;
}

/** Reads the configuration, starts the simulator when no Deskie is configured, and listens; ConfigError for a bad env. */
export async function startServer(env: Readonly<Record<string, string | undefined>>, logDestination?: DestinationStream): Promise<RunningServer> {
  const [{ buildApp }, { loadConfig }, { createLogger, flushed, stdoutDestination }] = await Promise.all([
    import('./app.js'),
    import('./config/config.js'),
    import('./observability/logging.js'),
  ]);
  const config = loadConfig(env);
  const destination = logDestination ?? (await stdoutDestination(config.production));
  const logger = createLogger(config.logLevel, destination);

  // Without DESKIE_URL (never in production), a simulated Deskie, loaded only then, lets `npm start` just work.
  let deskieUrl = config.deskieUrl;
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
  // SIGHUP is handled once the server listens (a failed start leaves no listener behind) and until it closes.
  let stopReloading = (): void => {};
  app.addHook('onClose', async () => stopReloading());
  await app.listen({ port: config.port, host: config.host, backlog: LISTEN_BACKLOG });
  stopReloading = reloadTokensOnHangup(app, logger);
  logger.info({ deskie: simulator ? 'simulated' : deskieUrl, timezone: config.timezone, port: config.port }, 'deskie-stats-proxy ready');
  const stop = async ({ drain = true } = {}): Promise<void> => {
    app.readiness.startDraining();
    const cut = setTimeout(() => {
      logger.warn({ timeoutMs: config.shutdownTimeoutMs }, 'shutting down: requests still waiting for Deskie are answered without it (SHUTDOWN_TIMEOUT_MS)');
      app.cutUpstream();
    }, config.shutdownTimeoutMs - CUT_BEFORE_EXIT_MS);
    if (drain && config.shutdownDrainSeconds > 0) {
      logger.info({ seconds: config.shutdownDrainSeconds }, 'draining: /readyz answers 503, requests are still served');
      await new Promise((resolve) => setTimeout(resolve, config.shutdownDrainSeconds * 1000));
    }
    // Keep-alive connections that go idle after their answer are closed at once.
    const sweep = setInterval(() => app.server.closeIdleConnections(), IDLE_SWEEP_MS).unref();
    try {
      await app.close();
    } finally {
      clearTimeout(cut);
      clearInterval(sweep);
      // The process exits next: lines still buffered (and a write under way, which an exit would cut) are written out now.
      await flushed(destination, LOG_DRAIN_MS);
    }
  };
  return { app, config, logger, stop };
}

// SIGHUP rereads PROXY_TOKENS_FILE; a bad file changes nothing (logged, never a token); a reload never ends the server.
function reloadTokensOnHangup(app: FastifyInstance, logger: Logger): () => void {
  const reload = app.reloadClientTokens;
  const onHangup = (): void => {
    if (reload === undefined) {
      logger.info({ signal: 'SIGHUP' }, 'nothing to reload: client tokens are read again only from PROXY_TOKENS_FILE');
      return;
    }
    try {
      const { clients } = reload();
      if (clients.length === 0) logger.warn({ signal: 'SIGHUP', clients }, 'client tokens reloaded: the file holds none, so every request is refused');
      else logger.info({ signal: 'SIGHUP', clients }, 'client tokens reloaded');
    } catch (error) {
      logger.error({ signal: 'SIGHUP', reason: (error as Error).message }, 'client tokens not reloaded: the previous ones stay');
    }
  };
  process.on('SIGHUP', onHangup);
  return () => process.off('SIGHUP', onHangup);
}

/* c8 ignore start: the process entry, exercised by npm start and the container */
async function main(): Promise<void> {
  let started: RunningServer;
  try {
    started = await startServer(process.env);
  } catch (error) {
    const { ConfigError } = await import('./config/config.js');
    if (!(error instanceof ConfigError)) throw error;
    process.stderr.write(`deskie-stats-proxy: ${error.message}\n`);
    process.exit(1);
  }
  const { config, logger, stop } = started;

  let closing = false;
  const shutdown = (signal: string): void => {
    if (closing) return;
    closing = true;
    logger.info({ signal }, 'shutting down');
    // The waits for Deskie are cut a second before this (stop()): only something else hung would reach it.
    setTimeout(() => process.exit(1), config.shutdownTimeoutMs).unref();
    // SIGTERM comes from an orchestrator, which needs the drain; Ctrl-C from a person, who does not.
    stop({ drain: signal === 'SIGTERM' }).then(
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

if (isEntry) {
  main().catch((error: unknown) => {
    process.stderr.write(`deskie-stats-proxy failed to start: ${(error as Error).stack ?? String(error)}\n`);
    process.exit(1);
  });
}
/* c8 ignore stop */
