import type { FastifyBaseLogger, FastifyRequest } from 'fastify';
import { pino } from 'pino';
import { periodLabel } from './cache/policy.js';
import type { StatsQuery } from './deskie/query.js';
import { describeVariant, type Variant } from './formats/representations.js';
import type { RequestOutcome } from './metrics.js';
import { BatchedDestination } from './logging.js';
import { elapsedMs } from './request-id.js';

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
 * distinct queries makes by the thousand. Every other line goes through
 * pino and its redaction; a hit's fields are fixed-list values, numbers and
 * a request id of safe characters (request-id.ts), so a hit's line has
 * nothing to redact. Lines are written in batches (logging.ts).
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
    const hitFields = JSON.stringify({ ...fields, method: 'GET', outcome: 'hit', status: 200 }).slice(1, -1);
    const hitPrefix = this.#direct === null ? null : `${this.#direct.bindings},${hitFields},"reqId":"`;
    return { fields, hitPrefix, hitPrefixBytes: hitPrefix === null ? null : Buffer.from(hitPrefix) };
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
    const ms = elapsedMs(request.raw);
    const { client } = request;
    if (query === undefined) {
      this.#log.info({ reqId: request.id, client, method: request.method, route: routeOf(request), outcome, status, bytes, ms, ip: ipOf(request, status) }, 'request');
    } else if (query.hitPrefix !== null && this.#direct !== null && outcome === 'hit' && status === 200 && request.method === 'GET') {
      // A client token's name is one of the operator's (auth/clients.ts): nothing in it needs escaping.
      const named = client === undefined ? '"' : `","client":"${client}"`;
      if (this.#batched !== null && query.hitPrefixBytes !== null) {
        this.#writeHit(this.#batched, query.hitPrefixBytes, request.id, named, bytes, ms);
      } else {
        this.#direct.stream.write(`{"level":${INFO},"time":${this.#time()}${query.hitPrefix}${request.id}${named},"bytes":${bytes},"ms":${decimal(ms)},"msg":"request"}\n`);
      }
    } else {
      this.#log.info({ ...query.fields, reqId: request.id, client, method: request.method, outcome, status, bytes, ms, upstreamMs, ip: ipOf(request, status) }, 'request');
    }
  }

  /**
   * A plain hit's line, the same bytes as the template string, written in
   * parts into the batch: the query's prefix copied as bytes, the rest
   * (digits, the request id and a token's name, ASCII by construction) a
   * character a byte. Joining the parts into a string first made a rope for
   * V8 to flatten and Node to encode: side by side (eight rounds each, in both
   * orders), this way cost hits 0.5 and 0.7 µs less.
   */
  #writeHit(out: BatchedDestination, prefix: Buffer, id: string, named: string, bytes: number, ms: number): void {
    const time = this.#time();
    const size = String(bytes);
    const duration = decimal(ms);
    const batch = out.reserve(HIT_LINE_FIXED_BYTES + time.length + prefix.length + id.length + named.length + size.length + duration.length);
    let at = writeAscii(batch, out.used, HIT_LINE_START);
    at = writeAscii(batch, at, time);
    batch.set(prefix, at);
    at += prefix.length;
    at = writeAscii(batch, at, id);
    at = writeAscii(batch, at, named);
    at = writeAscii(batch, at, HIT_LINE_BYTES);
    at = writeAscii(batch, at, size);
    at = writeAscii(batch, at, HIT_LINE_MS);
    at = writeAscii(batch, at, duration);
    out.commit(writeAscii(batch, at, HIT_LINE_END));
  }

  /** Any other request: health, metrics, admin, docs, an unknown path. */
  other(request: FastifyRequest, status: number, bytes: number | undefined): void {
    this.#log.info({ reqId: request.id, method: request.method, route: routeOf(request), status, bytes, ms: elapsedMs(request.raw), ip: ipOf(request, status) }, 'request');
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
}

const INFO = 30;
/** The fixed parts of a plain hit's line around its prefix, request id and numbers. */
const HIT_LINE_START = `{"level":${INFO},"time":`;
const HIT_LINE_BYTES = ',"bytes":';
const HIT_LINE_MS = ',"ms":';
const HIT_LINE_END = ',"msg":"request"}\n';
const HIT_LINE_FIXED_BYTES = HIT_LINE_START.length + HIT_LINE_BYTES.length + HIT_LINE_MS.length + HIT_LINE_END.length;

/** Writes an ASCII string into `buffer` at `at`, a character a byte; returns where it ends. */
function writeAscii(buffer: Buffer, at: number, text: string): number {
  for (let index = 0; index < text.length; index++) buffer[at + index] = text.charCodeAt(index);
  return at + text.length;
}

/** Milliseconds to 0.01 as a JSON number, from whole numbers (V8 writes those far faster than a double). */
function decimal(ms: number): string {
  const hundredths = Math.round(ms * 100);
  const fraction = hundredths % 100;
  return `${(hundredths - fraction) / 100}.${fraction < 10 ? '0' : ''}${fraction}`;
}
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
