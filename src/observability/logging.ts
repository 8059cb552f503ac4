import { isatty } from 'node:tty';
import { pino, type DestinationStream, type Logger, type LoggerOptions } from 'pino';

export const LOG_NAME = 'deskie-stats-proxy';

/** Bytes of log lines held while stdout's reader is slow; later lines are dropped (said once on stderr) rather than held. */
export const LOG_BUFFER_MAX_BYTES = 16 * 1024 * 1024;
/** Bytes gathered before a write: one system call for many lines. */
export const LOG_WRITE_MIN_BYTES = 4096;
/** The longest a line waits for others before it is written anyway. */
export const LOG_FLUSH_MS = 100;

/**
 * Never logged: Authorization wherever a request or its headers are, Node's `rawPacket` (a refused request's bytes),
 * our tokens, ioredis's arguments (serializeError). Paths spelled out: `*` first makes pino clone every line's fields.
 */
export const REDACTED_PATHS: readonly string[] = [
  'authorization',
  'headers.authorization',
  'req.headers.authorization',
  'request.headers.authorization',
  'rawPacket',
  'err.rawPacket',
  'err.cause.rawPacket',
  'error.rawPacket',
  'error.cause.rawPacket',
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

/** How deep a logged error's nested errors and objects are looked into; deeper ones are left out. */
const MAX_ERROR_DEPTH = 5;

/** ioredis's `command`, nested too, is cut to its name: args hold keys or AUTH's password, and redact skips arrays. */
export function serializeError(value: unknown, depth = 0): unknown {
  if (typeof value !== 'object' || value === null) return value;
  if (depth > MAX_ERROR_DEPTH) return '[too deep]';
  if (Array.isArray(value)) return value.map((item: unknown) => serializeError(item, depth + 1));
  if (value instanceof Error) value = { ...pino.stdSerializers.err(value) };
  const prototype: unknown = Object.getPrototypeOf(value);
  // Plain objects and errors pino already serialized are walked; others (a Buffer, a Date) are left as they are.
  const walked = prototype === Object.prototype || prototype === null || typeof (value as { message?: unknown }).message === 'string';
  if (!walked) return value;
  const copy: Record<string, unknown> = {};
  for (const [key, field] of Object.entries(value as Record<string, unknown>)) {
    copy[key] = key === 'command' ? commandName(field) : serializeError(field, depth + 1);
  }
  return copy;
}

function commandName(command: unknown): unknown {
  if (typeof command !== 'object' || command === null) return command;
  const { name } = command as { name?: unknown };
  return typeof name === 'string' ? { name } : '[redacted]';
}

export const LOGGER_OPTIONS: LoggerOptions = {
  name: LOG_NAME,
  redact: { paths: [...REDACTED_PATHS], censor: '[redacted]' },
  // Fields that may hold a query string: Deskie calls log `query`, debug lines `url`, cache lines the `key` (which holds the canonical query).
  serializers: { query: redactQuery, url: redactQuery, key: redactQuery, err: serializeError, error: serializeError },
};

/** The process's logger: redacting, writing to `destination` (stdout when none). */
export function createLogger(level: string, destination?: DestinationStream): Logger {
  return pino({ ...LOGGER_OPTIONS, level }, destination);
}

/** pino-pretty on a terminal outside production; else JSON lines written async (sonic-boom), flushed at exit. */
export async function stdoutDestination(
  production: boolean,
  // isatty rather than process.stdout.isTTY: making process.stdout would switch a pipe to non-blocking writes.
  { maxBytes = LOG_BUFFER_MAX_BYTES, terminal = isatty(1) }: { readonly maxBytes?: number; readonly terminal?: boolean } = {},
): Promise<DestinationStream> {
  if (terminal && !production) {
    const { default: pretty } = await import('pino-pretty');
    return pretty({ colorize: true, sync: true, translateTime: 'SYS:HH:MM:ss.l', ignore: 'pid,hostname,name' });
  }
  const destination = pino.destination({ dest: 1, sync: false, minLength: LOG_WRITE_MIN_BYTES, periodicFlush: LOG_FLUSH_MS, maxLength: maxBytes });
  destination.once('drop', () => {
    process.stderr.write(`${LOG_NAME}: stdout is not being read; log lines are dropped until it is (more than ${maxBytes} bytes waiting)\n`);
  });
  // pino stops writing after EPIPE (the reader is gone); any write error is said once, and never ends the server.
  destination.once('error', (error: NodeJS.ErrnoException) => {
    process.stderr.write(`${LOG_NAME}: log lines are no longer written to stdout (${error.code ?? error.message})\n`);
    destination.on('error', () => {});
  });
  return destination;
}

/** Writes out what `destination` holds, waiting at most `timeoutMs` for a slow reader. */
export function flushed(destination: DestinationStream, timeoutMs: number): Promise<void> {
  const flush = (destination as { flush?: (callback: (error?: Error) => void) => void }).flush;
  if (typeof flush !== 'function') return Promise.resolve();
  return new Promise((resolve) => {
    const timer = setTimeout(resolve, timeoutMs).unref();
    flush.call(destination, () => {
      clearTimeout(timer);
      resolve();
    });
  });
}
