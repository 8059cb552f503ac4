import type { IncomingMessage } from 'node:http';
import type { FastifyBaseLogger, FastifyRequest } from 'fastify';
import { pino } from 'pino';
import { periodLabel } from '../cache/policy.js';
import { ENDPOINTS } from '../deskie/endpoints.js';
import type { StatsQuery } from '../deskie/query.js';
import { describeVariant, type Variant } from '../formats/representations.js';
import type { RequestOutcome } from './metrics.js';
import { BatchedDestination } from './logging.js';
import { elapsedHundredths, elapsedMs } from '../http/request-id.js';
import { remembered } from '../memo.js';

const STATISTICS_PATHS: ReadonlySet<string> = new Set(Object.values(ENDPOINTS).map((endpoint) => endpoint.path));

/** The route label of a statistics path: Deskie's name for it. */
export const routeLabel = (path: string): string => path.replace(/^\/api\/|\.json$/g, '');

/**
 * One line per request at info, with what an operator asks of it: who
 * (request id, and in service mode the client token's name), what (method, route, period, format), how the cache
 * answered, status, bytes, time here and time at Deskie. Never the URL's
 * query (its filters can name a person) and never a header.
 *
 * A plain hit (GET, 200), the line written most, is written from a template
 * made once per checked query and format: byte for byte the line pino writes
 * for the same fields through child loggers (a test compares them), made of
 * pino's own serialised bindings. In CPU profiles of hits pino's
 * serialiser took 1.2 µs a line and the template about 0.5 (side-by-side
 * runs could not tell the two apart from the noise); and a string
 * per query holds less than two child loggers would, which a storm of
 * distinct queries makes by the thousand. Any other statistics answer that
 * went well (status below 400) is written the same way, its method,
 * outcome and status and Deskie's time added in parts (answered()). Every
 * other line goes through pino and its redaction; the lines written
 * directly hold fixed-list values, numbers and a request id of safe
 * characters (request-id.ts), and no client address, so nothing to redact.
 * Lines are written in batches (logging.ts).
 */
export class AccessLog {
  readonly #log: FastifyBaseLogger;
  /** Whether info lines are written: when not, nothing is built for them. */
  readonly #enabled: boolean;
  /** Where a hit's line goes and what every line starts with, when info lines are written at all. */
  readonly #direct: { readonly stream: { write(line: string): unknown }; readonly bindings: string } | null;
  /** The direct stream when it batches lines in a buffer: a hit's line is then written there in parts. */
  readonly #batched: BatchedDestination | null;

  constructor(log: FastifyBaseLogger) {
    this.#log = log;
    this.#enabled = log.level !== 'silent' && ['fatal', 'error', 'warn'].every((level) => log.level !== level);
    const internals = log as unknown as Record<symbol, unknown> & { levelVal?: number };
    const bindings = internals[chindingsSym];
    const stream = internals[streamSym] as { write(line: string): unknown } | undefined;
    // Anything but a pino logger writing info lines (a higher level, another logger) logs the usual way.
    const direct = typeof bindings === 'string' && stream !== undefined && internals.levelVal !== undefined && internals.levelVal <= INFO;
    this.#direct = direct ? { stream, bindings } : null;
    this.#batched = direct && stream instanceof BatchedDestination ? stream : null;
  }

  #timeMs = 0;
  #timeText = '0';

  /**
   * Date.now() as text, made once per millisecond: a number past 2^31 is
   * a double in V8, and V8 turns doubles into text on its slow path.
   */
  #time(): string {
    const now = Date.now();
    if (now !== this.#timeMs) {
      this.#timeMs = now;
      this.#timeText = String(now);
    }
    return this.#timeText;
  }

  /** What the lines of one checked query answered in one variant say of it. */
  forQuery(query: StatsQuery, variant: Variant): QueryLog {
    const { rendering, coding } = describeVariant(variant);
    const fields = { route: routeLabel(query.endpoint.path), period: periodLabel(query), format: rendering, coding };
    if (this.#direct === null) return { fields, hitPrefix: null, hitPrefixBytes: null, answerPrefixBytes: null };
    const answerPrefix = `${this.#direct.bindings},${JSON.stringify(fields).slice(1, -1)}`;
    const hitPrefix = `${answerPrefix}${answerMiddle('GET hit 200').toString()}`;
    const hitPrefixBytes = Buffer.from(hitPrefix);
    return { fields, hitPrefix, hitPrefixBytes, answerPrefixBytes: hitPrefixBytes.subarray(0, Buffer.byteLength(answerPrefix)) };
  }

  /** A request answered by a statistics route, with its query's fields (none when it was refused before they were known). */
  answered(
    query: QueryLog | undefined,
    request: FastifyRequest,
    outcome: RequestOutcome,
    status: number,
    bytes: number,
    upstreamMs?: number,
  ): void {
    if (!this.#enabled) return;
    if (query !== undefined && outcome === 'hit') {
      this.hit(query, request.id, request.client, request.method, request.raw, status, bytes);
    } else if (query === undefined) {
      this.#log.info({ reqId: request.id, client: request.client, method: request.method, route: routeOf(request), outcome, status, bytes, ms: elapsedMs(request.raw), ip: ipOf(request, status) }, 'request');
    } else if (status < 400 && this.#batched !== null && query.answerPrefixBytes !== null) {
      // Every answer of a stampede's requests is logged at once, when Deskie's answer comes: through pino they
      // cost its p99 some 35 ms of 1,000 (side by side against LOG_LEVEL=warn). An answer that went well has no
      // address to log, so its line holds nothing to redact, as a hit's.
      const middle = answerMiddle(`${request.method} ${outcome} ${status}`);
      const upstream = upstreamMs === undefined ? -1 : Math.round(upstreamMs * 100);
      this.#writeLine(this.#batched, query.answerPrefixBytes, middle, request.id, clientFieldOf(request.client), bytes, elapsedHundredths(request.raw), upstream);
    } else {
      this.#log.info({ ...query.fields, reqId: request.id, client: request.client, method: request.method, outcome, status, bytes, ms: elapsedMs(request.raw), upstreamMs, ip: ipOf(request, status) }, 'request');
    }
  }

  /** A hit (a 200 or a 304), answered by a statistics route or by the hit path before it (routes/hit-path.ts). */
  hit(query: QueryLog, id: string, client: string | undefined, method: string, raw: IncomingMessage, status: number, bytes: number): void {
    if (!this.#enabled) return;
    if (query.hitPrefix !== null && this.#direct !== null && status === 200 && method === 'GET') {
      const named = clientFieldOf(client);
      if (this.#batched !== null && query.hitPrefixBytes !== null) {
        this.#writeLine(this.#batched, query.hitPrefixBytes, null, id, named, bytes, elapsedHundredths(raw), -1);
      } else {
        this.#direct.stream.write(`{"level":${INFO},"time":${this.#time()}${query.hitPrefix}${id}${named},"bytes":${bytes},"ms":${decimal(elapsedHundredths(raw))},"msg":"request"}\n`);
      }
    } else {
      // A hit's fields are those of any other answer but Deskie's time and the address (an answer that went well has none).
      this.#log.info({ ...query.fields, reqId: id, client, method, outcome: 'hit', status, bytes, ms: elapsedMs(raw) }, 'request');
    }
  }

  /**
   * A line written in parts into the batch: the query's prefix copied as
   * bytes (a plain hit's ends with its method, outcome and status; any other
   * answer's are `middle`), the rest (digits, the request id and a token's
   * name, ASCII by construction) a character a byte, and the numbers as
   * digits, without making a string of them: a hit's line is the same bytes
   * as the template string. Side by side (wrk on the other core, eight
   * rounds each), a line whose parts were made as strings (the size, the
   * duration) cost a hit about 1.4 µs where copying them cost 0.65; joining
   * the parts into one string first, before that, cost 0.5 to 0.7 µs more
   * than copying them. `upstream` is Deskie's time in hundredths of a
   * millisecond, or -1 for none.
   */
  #writeLine(out: BatchedDestination, prefix: Buffer, middle: Buffer | null, id: string, named: string, bytes: number, hundredths: number, upstream: number): void {
    const time = this.#time();
    // Digits: the byte count and the whole milliseconds have at most 10 each, and the durations 3 more.
    const batch = out.reserve(LINE_FIXED_BYTES + time.length + prefix.length + (middle?.length ?? 0) + id.length + named.length + 46);
    let at = writeAscii(batch, out.used, LINE_START);
    at = writeAscii(batch, at, time);
    batch.set(prefix, at);
    at += prefix.length;
    if (middle !== null) {
      batch.set(middle, at);
      at += middle.length;
    }
    at = writeAscii(batch, at, id);
    at = writeAscii(batch, at, named);
    at = writeAscii(batch, at, LINE_BYTES);
    at = writeDigits(batch, at, bytes);
    at = writeAscii(batch, at, LINE_MS);
    at = writeHundredths(batch, at, hundredths);
    if (upstream >= 0) {
      at = writeAscii(batch, at, LINE_UPSTREAM_MS);
      at = writeHundredths(batch, at, upstream);
    }
    out.commit(writeAscii(batch, at, LINE_END));
  }

  /** Any other request: health, metrics, admin, docs, an unknown path. */
  other(request: FastifyRequest, status: number, bytes: number | undefined): void {
    this.#log.info({ reqId: request.id, method: request.method, route: routeOf(request), status, bytes, ms: elapsedMs(request.raw), ip: ipOf(request, status) }, 'request');
  }

  /**
   * A request that came while the server was closing, answered 503 before
   * routing (routes/hit-path.ts). No client address: the refusal is the
   * server's state, not the client's doing.
   */
  whileClosing(raw: IncomingMessage, id: string, status: number, bytes: number): void {
    const path = (raw.url ?? '').split('?', 1)[0] as string;
    const route = STATISTICS_PATHS.has(path) ? routeLabel(path) : path;
    this.#log.info({ reqId: id, method: raw.method, route, status, bytes, ms: elapsedMs(raw) }, 'request');
  }

  /** A request Node's HTTP parser refused before Fastify saw it. */
  refused(status: number, code: string | undefined, bytes: number): void {
    this.#log.info({ route: null, status, bytes, code }, 'request refused');
  }
}

/** What an access line says of a checked query and format, and a plain hit's line up to its request id (null: not written directly). */
export interface QueryLog {
  readonly fields: { readonly route: string; readonly period: string; readonly format: string; readonly coding: string };
  readonly hitPrefix: string | null;
  /** hitPrefix in UTF-8, copied into the batch as it is. */
  readonly hitPrefixBytes: Buffer | null;
  /** The start of hitPrefixBytes that any answer's line shares: up to its method, outcome and status. */
  readonly answerPrefixBytes: Buffer | null;
}

const INFO = 30;
/** The fixed parts of a line written in parts, around its prefix, request id and numbers. */
const LINE_START = `{"level":${INFO},"time":`;
const LINE_BYTES = ',"bytes":';
const LINE_MS = ',"ms":';
const LINE_UPSTREAM_MS = ',"upstreamMs":';
const LINE_END = ',"msg":"request"}\n';
const LINE_FIXED_BYTES = LINE_START.length + LINE_BYTES.length + LINE_MS.length + LINE_UPSTREAM_MS.length + LINE_END.length;

/**
 * What follows a query's fields in an answer's line, up to its request id,
 * by "method outcome status" (each from a fixed list), made once each.
 */
const answerMiddle = remembered(64, (key: string): Buffer => {
  const [method, outcome, status] = key.split(' ');
  return Buffer.from(`,${JSON.stringify({ method, outcome, status: Number(status) }).slice(1, -1)},"reqId":"`);
});

/** Writes an ASCII string into `buffer` at `at`, a character a byte; returns where it ends. */
function writeAscii(buffer: Buffer, at: number, text: string): number {
  for (let index = 0; index < text.length; index++) buffer[at + index] = text.charCodeAt(index);
  return at + text.length;
}

/** Writes a whole number below 2^31 in decimal into `buffer` at `at`; returns where it ends. */
function writeDigits(buffer: Buffer, at: number, value: number): number {
  let digits = 1;
  for (let rest = value; rest >= 10; rest = (rest / 10) | 0) digits += 1;
  let rest = value;
  for (let index = at + digits - 1; index >= at; index--) {
    buffer[index] = ZERO + (rest % 10);
    rest = (rest / 10) | 0;
  }
  return at + digits;
}
const ZERO = 0x30;
const DOT = 0x2e;

/** Writes hundredths as a JSON number to 0.01 (`12.50`) into `buffer` at `at`; returns where it ends. */
function writeHundredths(buffer: Buffer, at: number, hundredths: number): number {
  const fraction = hundredths % 100;
  let end = writeDigits(buffer, at, (hundredths - fraction) / 100);
  buffer[end++] = DOT;
  buffer[end++] = ZERO + ((fraction / 10) | 0);
  buffer[end++] = ZERO + (fraction % 10);
  return end;
}

/** Hundredths of a millisecond as a JSON number to 0.01, as the batch writes them. */
function decimal(hundredths: number): string {
  const fraction = hundredths % 100;
  return `${(hundredths - fraction) / 100}.${fraction < 10 ? '0' : ''}${fraction}`;
}

/** A client token's name as the line's field, made once per name (an operator has a handful). */
const clientField = remembered(256, (client: string) => `","client":"${client}"`);
/** What ends a written line's request id: its closing quote, and the client's name when there is one. A client token's name is one of the operator's (auth/clients.ts): nothing in it needs escaping. */
const clientFieldOf = (client: string | undefined): string => (client === undefined ? '"' : clientField(client));

/** pino's own names for a logger's serialised bindings and its destination (pino.symbols, public). */
const { chindingsSym, streamSym } = pino.symbols;

/**
 * The client's address on a refused or failed answer, to trace a misbehaving
 * client; answers that went well carry none. Fastify's `request.ip`: the
 * peer's address, or with TRUST_PROXY the client X-Forwarded-For names.
 */
const ipOf = (request: FastifyRequest, status: number): string | undefined => (status >= 400 ? request.ip : undefined);

/** The matched route's path (or the statistics route's name), or the requested path without its query when nothing matched. */
function routeOf(request: FastifyRequest): string {
  const url = request.routeOptions.url;
  if (url === undefined) return request.url.split('?', 1)[0] as string;
  return url.startsWith('/api/') ? routeLabel(url) : url;
}
