import { writeSync } from 'node:fs';
import { Socket } from 'node:net';
import type { Writable } from 'node:stream';
import { pino, type DestinationStream, type Logger, type LoggerOptions } from 'pino';

export const LOG_NAME = 'deskie-stats-proxy';

/**
 * What never reaches a log line, at any level, errors included: credentials
 * (the Authorization header wherever a request or its headers are logged, and
 * Node's `rawPacket`, the raw bytes of a request its parser refused, which
 * hold that header) and the proxy's own tokens. pino's redact replaces each
 * with the censor; a path that is absent costs nothing.
 */
export const REDACTED_PATHS: readonly string[] = [
  'authorization',
  'headers.authorization',
  'req.headers.authorization',
  'request.headers.authorization',
  'err.rawPacket',
  'error.rawPacket',
  'rawPacket',
  '*.authorization',
  '*.rawPacket',
  'err.cause.rawPacket',
  '*.headers.authorization',
  'token',
  'adminToken',
  'metricsToken',
];

/** Query parameters whose values name a person: logged as `[redacted]` wherever a query string is logged. */
const PERSONAL_PARAMETERS = /((?:^|[?&])user_(?:email|phone)(?:%5B%5D|\[\])?=)[^&]*/gi;

/** A query string or URL with the values of `user_email` and `user_phone` replaced. */
export function redactQuery(value: unknown): unknown {
  return typeof value === 'string' ? value.replace(PERSONAL_PARAMETERS, '$1[redacted]') : value;
}

export const LOGGER_OPTIONS: LoggerOptions = {
  name: LOG_NAME,
  redact: { paths: [...REDACTED_PATHS], censor: '[redacted]' },
  // Fields that may hold a query string: Deskie calls log `query`, debug lines `url`, cache lines the `key` (which holds the canonical query).
  serializers: { query: redactQuery, url: redactQuery, key: redactQuery, err: pino.stdSerializers.err },
};

/** The process's logger: redacting, writing to `destination` (stdout when none). */
export function createLogger(level: string, destination?: DestinationStream): Logger {
  return pino({ ...LOGGER_OPTIONS, level }, destination);
}

/** Buffer#utf8Write: Buffer#write without its argument juggling (in a CPU profile of hits, 0.17 against 0.6 µs a line; not measured side by side). Not documented, so only used when there. */
interface FastUtf8 {
  utf8Write(text: string, offset: number): number;
}
const UTF8_WRITE = typeof (Buffer.prototype as Partial<FastUtf8>).utf8Write === 'function';

/** How long a log line may wait to be written with others. */
export const LOG_FLUSH_MS = 10;
/** Bytes gathered before they are handed over without waiting. */
const LOG_BATCH_BYTES = 64 * 1024;
/** The most one UTF-16 code unit takes in UTF-8: room checked before a line is copied. */
const MAX_UTF8_PER_UNIT = 3;
/** Batch buffers kept for reuse once written: one being filled while one is written is the usual case. */
const SPARE_BATCHES = 2;

/**
 * Where batches of lines go. `write` hands one over and calls `reusable`
 * once its buffer may be written into again (a target that keeps buffers
 * never calls it); `writeAtExit` writes one before it returns, as far as it
 * can, when no asynchronous write will ever complete; `written` resolves
 * once everything handed over is written, or after `timeoutMs`.
 */
export interface BatchTarget {
  write(batch: Buffer, reusable: () => void): void;
  writeAtExit(batch: Buffer): void;
  written(timeoutMs: number): Promise<void>;
}

/**
 * Gathers log lines into one buffer and hands it to `target` at most
 * LOG_FLUSH_MS after the first line, or once 64 kB are gathered; a buffer
 * the target is done with is filled again rather than a new one allocated.
 * pino's stdout writes each line on its own: a system call each, 2 µs a
 * line in a microbenchmark. Gathering lines into one string instead showed
 * 0.8 µs a line in a CPU profile of hits (rope flattening and UTF-8
 * conversion when written), more than copying each line into a buffer as it
 * comes; the two were not measured side by side. A process killed outright
 * loses at most the last LOG_FLUSH_MS of lines; one that exits writes its
 * batch out first (`writeAtExit`).
 */
export class BatchedDestination implements DestinationStream {
  #batch: Buffer | null = null;
  #used = 0;
  #scheduled = false;
  readonly #spares: Buffer[] = [];
  readonly #target: BatchTarget;
  readonly #schedule: (flush: () => void) => void;

  /** `schedule` calls flush LOG_FLUSH_MS from now; a test passes its own. */
  constructor(
    target: BatchTarget,
    schedule = (flush: () => void): void => {
      setTimeout(flush, LOG_FLUSH_MS).unref();
    },
  ) {
    this.#target = target;
    this.#schedule = schedule;
    // Before pino's own exit handler, which writes out what its destination holds (SonicTarget).
    process.prependOnceListener('exit', () => {
      const lines = this.#take();
      if (lines !== null) this.#target.writeAtExit(lines);
    });
  }

  write(line: string): void {
    const batch = this.reserve(line.length * MAX_UTF8_PER_UNIT);
    this.commit(this.#used + (UTF8_WRITE ? (batch as Buffer & FastUtf8).utf8Write(line, this.#used) : batch.write(line, this.#used, 'utf8')));
  }

  /**
   * Room for `bytes` more in the batch: the buffer to write them into at
   * `used`, then commit() the end. For a line written in parts straight
   * into the batch, without joining them into a string first (access-log.ts).
   */
  reserve(bytes: number): Buffer {
    if (this.#batch !== null && this.#used + bytes > this.#batch.length) this.flush();
    if (this.#batch === null) {
      // A line longer than a batch gets a buffer of its own size, not kept.
      this.#batch = bytes > LOG_BATCH_BYTES ? Buffer.allocUnsafeSlow(bytes) : (this.#spares.pop() ?? Buffer.allocUnsafeSlow(LOG_BATCH_BYTES));
    }
    return this.#batch;
  }

  /** Where the next line goes in the buffer reserve() gave. */
  get used(): number {
    return this.#used;
  }

  /** The line written into the reserved buffer ends at `end`. */
  commit(end: number): void {
    this.#used = end;
    if (!this.#scheduled) {
      this.#scheduled = true;
      this.#schedule(this.flush);
    }
  }

  /** Hands over what is gathered; a scheduled flush finding nothing does nothing. */
  readonly flush = (): void => {
    this.#scheduled = false;
    const batch = this.#batch;
    const lines = this.#take();
    if (batch === null || lines === null) return;
    this.#target.write(lines, () => {
      if (batch.length === LOG_BATCH_BYTES && this.#spares.length < SPARE_BATCHES) this.#spares.push(batch);
    });
  };

  /** Hands over what is gathered and resolves once the target has written it all, or after `timeoutMs`. */
  written(timeoutMs: number): Promise<void> {
    this.flush();
    return this.#target.written(timeoutMs);
  }

  /** The lines gathered, and a fresh start: null when there are none. */
  #take(): Buffer | null {
    if (this.#batch === null || this.#used === 0) return null;
    const lines = this.#batch.subarray(0, this.#used);
    this.#batch = null;
    this.#used = 0;
    return lines;
  }
}

/**
 * A pipe or socket (stdout under a container runtime or a process
 * supervisor): Node's own non-blocking stream for it, process.stdout, which
 * writes at once on the calling thread and waits for the reader through the
 * event loop only when the pipe is full. pino's asynchronous destination
 * writes on libuv's thread pool instead: one thread woken per batch, and a
 * fresh buffer per batch for the garbage collector's threads to free.
 * Side by side (servers on one core), the two together cost a hit 1 to 2 µs
 * and doubled its context switches (BENCHMARKS.md). A reader that stops
 * reading makes batches wait in memory, never the server.
 */
export class PipeTarget implements BatchTarget {
  readonly #stream: Writable & { readonly fd?: number };
  #failed = false;

  constructor(stream: Writable & { readonly fd?: number }) {
    this.#stream = stream;
    // A reader gone (EPIPE) or any other failure must not end the server: lines are dropped from then on, and that is said once.
    stream.on('error', (error: NodeJS.ErrnoException) => {
      if (this.#failed) return;
      this.#failed = true;
      process.stderr.write(`${LOG_NAME}: log lines are no longer written to stdout (${error.code ?? error.message})\n`);
    });
  }

  write(batch: Buffer, reusable: () => void): void {
    if (this.#failed) return reusable();
    this.#stream.write(batch, () => reusable());
  }

  /**
   * Writes the batch straight to the file descriptor, waiting out a full
   * pipe for up to EXIT_WRITE_MS; unless earlier batches are still queued,
   * whose lines it would cut into (a shutdown waits for them: written()).
   */
  writeAtExit(batch: Buffer): void {
    const fd = this.#stream.fd;
    if (this.#failed || fd === undefined || this.#stream.writableLength > 0) return;
    let rest = batch;
    const deadline = Date.now() + EXIT_WRITE_MS;
    while (rest.length > 0) {
      try {
        rest = rest.subarray(writeSync(fd, rest));
      } catch (error) {
        if ((error as NodeJS.ErrnoException).code !== 'EAGAIN' || Date.now() >= deadline) return;
        Atomics.wait(EXIT_PAUSE, 0, 0, 10);
      }
    }
  }

  written(timeoutMs: number): Promise<void> {
    if (this.#failed || this.#stream.writableLength === 0) return Promise.resolve();
    return new Promise((resolve) => {
      const done = (): void => {
        clearTimeout(timer);
        this.#stream.off('drain', done);
        resolve();
      };
      const timer = setTimeout(done, timeoutMs);
      this.#stream.once('drain', done);
    });
  }
}

/** How long an exiting process waits for a full stdout pipe to take its last batch. */
const EXIT_WRITE_MS = 1_000;
/** Something to wait on, synchronously, between two tries at exit. */
const EXIT_PAUSE = new Int32Array(new SharedArrayBuffer(4));

/**
 * A file or a terminal: pino's asynchronous destination (sonic-boom), whose
 * writes run on libuv's thread pool, so a slow disk or terminal never holds
 * the server; it keeps each batch until written, and writes out what it
 * holds when the process exits.
 */
class SonicTarget implements BatchTarget {
  readonly #boom = pino.destination({ dest: 1, sync: false, contentMode: 'buffer' });

  write(batch: Buffer): void {
    // In buffer mode sonic-boom takes Buffers, which its types do not say.
    this.#boom.write(batch as unknown as string);
  }

  writeAtExit(batch: Buffer): void {
    this.write(batch);
  }

  written(timeoutMs: number): Promise<void> {
    return new Promise((resolve) => {
      const timer = setTimeout(resolve, timeoutMs);
      this.#boom.flush(() => {
        clearTimeout(timer);
        resolve();
      });
    });
  }
}

/**
 * stdout for a server: JSON lines, written in batches; or, on a terminal
 * outside production, readable lines through pino-pretty (loaded only then).
 */
export async function stdoutDestination(production: boolean): Promise<DestinationStream> {
  if (process.stdout.isTTY && !production) {
    const { default: pretty } = await import('pino-pretty');
    return pretty({ colorize: true, sync: true, translateTime: 'SYS:HH:MM:ss.l', ignore: 'pid,hostname,name' });
  }
  // process.stdout is a net.Socket on a pipe or a socket, and on a terminal (tty.WriteStream, whose writes block).
  const pipe = process.stdout instanceof Socket && !process.stdout.isTTY;
  return new BatchedDestination(pipe ? new PipeTarget(process.stdout) : new SonicTarget());
}
