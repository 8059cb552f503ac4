import { Writable } from 'node:stream';
import type { Logger } from 'pino';
import { createLogger } from '../../src/observability/logging.js';

/** Every line any capturedLog() of this test process has written, as written: a file's last test can grep them all for secrets. */
export const everyCapturedLine: string[] = [];

/** The proxy's logger (redaction and all), writing lines a test can read back, parsed. */
export function capturedLog(level = 'info'): { logger: Logger; lines: Array<Record<string, unknown>> } {
  const lines: Array<Record<string, unknown>> = [];
  const sink = new Writable({
    write(chunk: Buffer, _encoding, done) {
      for (const line of chunk.toString().split('\n').filter(Boolean)) {
        everyCapturedLine.push(line);
        lines.push(JSON.parse(line) as Record<string, unknown>);
      }
      done();
    },
  });
  return { logger: createLogger(level, sink), lines };
}
