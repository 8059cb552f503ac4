/**
 * A process that logs to its stdout as the server does (stdoutDestination in
 * production), for tests that read that stdout through a real pipe or file:
 * `node --import tsx test/helpers/stdout-writer.ts <lines> <mode> [maxBytes]`.
 *
 * It logs `<lines>` numbered lines of about 150 bytes, a thousand a turn of
 * the event loop, then by mode:
 * - `exit`: exits as the server does once stopped: lines written out
 *   (flushed(), as server.ts's stop() does), then process.exit();
 * - `linger`: tells stderr `alive` and how much its heap grew while
 *   writing (`heap=<bytes>`), then stays up until SIGTERM, which exits as
 *   `exit` does.
 */
import { createLogger, flushed, stdoutDestination } from '../../src/observability/logging.js';

const [lines, mode, maxBytes] = [Number(process.argv[2]), process.argv[3], process.argv[4]];
const destination = await stdoutDestination(true, maxBytes === undefined ? {} : { maxBytes: Number(maxBytes) });
const logger = createLogger('info', destination);
const heapBefore = process.memoryUsage().heapUsed;
const padding = 'x'.repeat(80);
for (let n = 0; n < lines; n++) {
  logger.info({ n, padding }, 'line');
  if (n % 1000 === 999) await new Promise((resolve) => setImmediate(resolve));
}
const exit = (): void => void flushed(destination, 2_000).then(() => process.exit(0));
if (mode === 'exit') exit();
else {
  globalThis.gc?.();
  process.stderr.write(`alive heap=${process.memoryUsage().heapUsed - heapBefore}\n`);
  // Nothing else may hold the event loop once stdout has failed.
  const linger = setInterval(() => {}, 1_000);
  process.once('SIGTERM', () => {
    clearInterval(linger);
    exit();
  });
}
