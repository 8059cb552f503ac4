import { pino } from 'pino';
import { buildApp } from './app.js';
import { ConfigError, loadConfig } from './config.js';
import { startSimulator, type Simulator } from './simulator/index.js';

/** Longest wait for in-flight requests on shutdown before the process exits anyway. */
const SHUTDOWN_GRACE_MS = 10_000;

async function main(): Promise<void> {
  let config;
  try {
    config = loadConfig(process.env);
  } catch (error) {
    if (!(error instanceof ConfigError)) throw error;
    process.stderr.write(`deskie-stats-proxy: ${error.message}\n`);
    process.exit(1);
  }
  const logger = pino({ level: config.logLevel, name: 'deskie-stats-proxy' });

  // With no Deskie account configured (and not in production), serve a
  // simulated one so that `npm ci && npm start` works on a fresh machine.
  let simulator: Simulator | null = null;
  let deskieUrl = config.deskieUrl;
  if (deskieUrl === null) {
    simulator = await startSimulator({ host: '127.0.0.1', port: 0 });
    deskieUrl = simulator.url;
    logger.warn(
      { simulator: deskieUrl, user: 'demo@example.com', password: 'demo' },
      'DESKIE_URL is not set: serving SIMULATED data from a built-in Deskie stand-in. Set DESKIE_URL to your account for real numbers.',
    );
  }

  const app = buildApp({ ...config, deskieUrl }, { logger });
  if (simulator) app.addHook('onClose', () => simulator.close());

  let closing = false;
  const shutdown = (signal: string): void => {
    if (closing) return;
    closing = true;
    logger.info({ signal }, 'shutting down');
    setTimeout(() => process.exit(1), SHUTDOWN_GRACE_MS).unref();
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

  await app.listen({ port: config.port, host: config.host });
  logger.info({ deskie: simulator ? 'simulated' : deskieUrl, timezone: config.timezone }, 'deskie-stats-proxy ready');
}

main().catch((error: unknown) => {
  process.stderr.write(`deskie-stats-proxy failed to start: ${(error as Error).stack ?? String(error)}\n`);
  process.exit(1);
});
