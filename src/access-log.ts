import type { FastifyBaseLogger, FastifyRequest } from 'fastify';
import { pino } from 'pino';
import { periodLabel } from './cache/policy.js';
import type { StatsQuery } from './deskie/query.js';
import { describeVariant, type Variant } from './formats/representations.js';
import type { RequestOutcome } from './metrics.js';
import { elapsedMs } from './request-id.js';

/** The route label of a statistics path: Deskie's name for it. */
export const routeLabel = (path: string): string => path.replace(/^\/api\/|\.json$/g, '');

/**
 * One line per request at info, with what an operator asks of it: who
 * (request id), what (method, route, period, format), how the cache
 * answered, status, bytes, time here and time at Deskie. Never the URL's
 * query (its filters can name a person) and never a header.
 *
 * The fields a query and format always share are bound into a child logger
 * made once per checked query and format: pino serialises them then. A
 * plain hit (GET, 200), the line written most, is written from a template
 * made of that child's own serialised bindings, byte for byte the line pino
 * would write (a test compares them): in the hit path's profile pino's
 * serialiser took 1.2 µs a line, the template a third of that. Every other
 * line goes through pino's redaction; a hit's fields are fixed-list values,
 * numbers and a request id of safe characters (request-id.ts), so a hit's
 * line has nothing to redact. Lines are written in batches (logging.ts).
 */
export class AccessLog {
  readonly #log: FastifyBaseLogger;

  constructor(log: FastifyBaseLogger) {
    this.#log = log;
  }

  /** The loggers for one checked query answered in one variant. */
  forQuery(query: StatsQuery, variant: Variant): QueryLoggers {
    const { rendering, coding } = describeVariant(variant);
    const any = this.#log.child({ route: routeLabel(query.endpoint.path), period: periodLabel(query), format: rendering, coding });
    return { any, hit: hitTemplate(any.child({ method: 'GET', outcome: 'hit', status: 200 })) };
  }

  /** A request answered by a statistics route, through its query's loggers (or the plain one when it was refused before). */
  answered(
    loggers: QueryLoggers | undefined,
    request: FastifyRequest,
    outcome: RequestOutcome,
    status: number,
    bytes: number,
    upstreamMs?: number,
  ): void {
    const ms = elapsedMs(request.raw);
    if (loggers === undefined) {
      this.#log.info({ reqId: request.id, method: request.method, route: routeOf(request), outcome, status, bytes, ms }, 'request');
    } else if (loggers.hit !== null && outcome === 'hit' && status === 200 && request.method === 'GET') {
      const { stream, prefix } = loggers.hit;
      stream.write(`{"level":${INFO},"time":${Date.now()}${prefix}${request.id}","bytes":${bytes},"ms":${ms},"msg":"request"}\n`);
    } else {
      loggers.any.info({ reqId: request.id, method: request.method, outcome, status, bytes, ms, upstreamMs }, 'request');
    }
  }

  /** Any other request: health, metrics, admin, docs, an unknown path. */
  other(request: FastifyRequest, status: number, bytes: number | undefined): void {
    this.#log.info({ reqId: request.id, method: request.method, route: routeOf(request), status, bytes, ms: elapsedMs(request.raw) }, 'request');
  }

  /** A request Node's HTTP parser refused before Fastify saw it. */
  refused(status: number, code: string | undefined, bytes: number): void {
    this.#log.info({ route: null, status, bytes, code }, 'request refused');
  }
}

/** A query's access loggers: one for any answer, and a plain hit's template (null when info lines are not written). */
export interface QueryLoggers {
  readonly any: FastifyBaseLogger;
  readonly hit: HitTemplate | null;
}

/** A plain hit's line: what comes between its time and its request id, and where pino writes. */
interface HitTemplate {
  readonly prefix: string;
  readonly stream: { write(line: string): unknown };
}

const INFO = 30;
/** pino's own names for a logger's serialised bindings and its destination (pino.symbols, public). */
const { chindingsSym, streamSym } = pino.symbols;

function hitTemplate(logger: FastifyBaseLogger): HitTemplate | null {
  const internals = logger as unknown as Record<symbol, unknown> & { levelVal?: number };
  const bindings = internals[chindingsSym];
  const stream = internals[streamSym] as HitTemplate['stream'] | undefined;
  // Anything but a pino logger writing info lines (a higher level, another logger) logs the usual way.
  if (typeof bindings !== 'string' || stream === undefined || internals.levelVal === undefined || internals.levelVal > INFO) return null;
  return { prefix: `${bindings},"reqId":"`, stream };
}

/** The matched route's path (or the statistics route's name), or the requested path without its query when nothing matched. */
function routeOf(request: FastifyRequest): string {
  const url = request.routeOptions.url;
  if (url === undefined) return request.url.split('?', 1)[0] as string;
  return url.startsWith('/api/') ? routeLabel(url) : url;
}
