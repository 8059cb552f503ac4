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

/**
 * Gathers log lines into one buffer and hands it to `target` (pino's
 * asynchronous destination, in buffer mode) at most LOG_FLUSH_MS after the
 * first line, or once 64 kB are gathered. pino's stdout writes each line on
 * its own: a system call each, 2 µs a line in a microbenchmark. Gathering
 * lines into one string instead showed 0.8 µs a line in a CPU profile of
 * hits (rope flattening and UTF-8 conversion when written), more than
 * copying each line into a buffer as it comes; the two were not measured
 * side by side. Writing, EAGAIN on a full
 * pipe, and writing out what is left when the process exits stay
 * sonic-boom's; a process killed outright loses at most the last
 * LOG_FLUSH_MS of lines.
 */
export class BatchedDestination implements DestinationStream {
  #batch: Buffer | null = null;
  #used = 0;
  #scheduled = false;
  readonly #target: { write(chunk: Buffer): unknown };
  readonly #schedule: (flush: () => void) => void;

  /** `schedule` calls flush LOG_FLUSH_MS from now; a test passes its own. */
  constructor(
    target: { write(chunk: Buffer): unknown },
    schedule = (flush: () => void): void => {
      setTimeout(flush, LOG_FLUSH_MS).unref();
    },
  ) {
    this.#target = target;
    this.#schedule = schedule;
    // Before pino's own exit handler, which writes out what its destination holds.
    process.prependOnceListener('exit', () => this.flush());
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
    // A fresh buffer per batch: the target keeps the last one until it is written.
    this.#batch ??= Buffer.allocUnsafeSlow(Math.max(LOG_BATCH_BYTES, bytes));
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
    if (this.#batch === null || this.#used === 0) return;
    const lines = this.#batch.subarray(0, this.#used);
    this.#batch = null;
    this.#used = 0;
    this.#target.write(lines);
  };
}

/**
 * stdout for a server: JSON lines, written in batches; or,
 * on a terminal outside production, readable lines through pino-pretty
 * (loaded only then).
 */
export async function stdoutDestination(production: boolean): Promise<DestinationStream> {
  if (process.stdout.isTTY && !production) {
    const { default: pretty } = await import('pino-pretty');
    return pretty({ colorize: true, sync: true, translateTime: 'SYS:HH:MM:ss.l', ignore: 'pid,hostname,name' });
  }
  // Asynchronous underneath: a slow reader of stdout (a full pipe) makes
  // lines wait in memory rather than stall the server in a blocking write.
  const stdout = pino.destination({ dest: 1, sync: false, contentMode: 'buffer' });
  // In buffer mode sonic-boom takes Buffers, which its types do not say.
  return new BatchedDestination(stdout as unknown as { write(chunk: Buffer): unknown });
}
