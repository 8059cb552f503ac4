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
  // Fields that may hold a query string: Deskie calls log `query`, debug lines `url`.
  serializers: { query: redactQuery, url: redactQuery, err: pino.stdSerializers.err },
};

/** The process's logger: redacting, writing to `destination` (stdout when none). */
export function createLogger(level: string, destination?: DestinationStream): Logger {
  return pino({ ...LOGGER_OPTIONS, level }, destination);
}

/**
 * Writes log lines to `target` once per turn of the event loop, all lines of
 * the turn in one write. A write per line, as pino's stdout does, costs about
 * 2 µs of a system call: with one access line per request, that would be the
 * costliest part of a cache hit. Lines reach the target in the same turn as
 * they were logged, so a quiet server still logs at once, and whatever is
 * pending is written synchronously when the process exits.
 */
export class TurnBatchedDestination implements DestinationStream {
  #pending = '';
  #scheduled = false;
  readonly #target: DestinationStream & { flushSync?: () => void };

  constructor(target: DestinationStream & { flushSync?: () => void }) {
    this.#target = target;
    process.once('exit', () => this.flush());
  }

  write(line: string): void {
    this.#pending += line;
    if (!this.#scheduled) {
      this.#scheduled = true;
      setImmediate(this.flush);
    }
  }

  readonly flush = (): void => {
    this.#scheduled = false;
    if (this.#pending === '') return;
    const lines = this.#pending;
    this.#pending = '';
    this.#target.write(lines);
  };
}

/**
 * stdout for a server: JSON lines, batched per turn of the event loop; or,
 * on a terminal outside production, readable lines through pino-pretty
 * (loaded only then).
 */
export async function stdoutDestination(production: boolean): Promise<DestinationStream> {
  if (process.stdout.isTTY && !production) {
    const { default: pretty } = await import('pino-pretty');
    return pretty({ colorize: true, sync: true, translateTime: 'SYS:HH:MM:ss.l', ignore: 'pid,hostname,name' });
  }
  return new TurnBatchedDestination(pino.destination({ dest: 1, sync: true }));
}
