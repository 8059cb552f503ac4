/**
 * A process that logs to its stdout as the server does (stdoutDestination in
 * production), for tests that read that stdout through a real pipe:
 * `node --import tsx test/helpers/stdout-writer.ts <lines> <mode>`.
 *
 * It writes `<lines>` numbered lines of about 100 bytes, then by mode:
 * - `exit`: exits at once, its last batch not yet handed over;
 * - `wait`: tells stderr `alive` once a timer set after the writes has run
 *   (the event loop was never held), then waits for everything to be
 *   written, then exits;
 * - `linger`: tells stderr `alive` as for `wait`, then stays up until SIGTERM.
 */
import { stdoutDestination, BatchedDestination } from '../../src/observability/logging.js';

const [lines, mode] = [Number(process.argv[2]), process.argv[3]];
const destination = (await stdoutDestination(true)) as BatchedDestination;
for (let n = 0; n < lines; n++) destination.write(`{"n":${n},"padding":"${'x'.repeat(80)}"}\n`);
if (mode === 'exit') process.exit(0);
setTimeout(() => {
  process.stderr.write('alive\n');
  if (mode === 'wait') void destination.written(10_000).then(() => process.exit(0));
  else {
    // Nothing else holds the event loop once stdout has failed.
    const linger = setInterval(() => {}, 1_000);
    process.once('SIGTERM', () => {
      clearInterval(linger);
      process.exit(0);
    });
  }
}, 20);
