import type { FastifyBaseLogger, FastifyRequest } from 'fastify';
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
 * made once per checked query and format: pino serialises them then, and a
 * hit's line serialises only what changes. That and writing lines once per
 * turn of the event loop (logging.ts) keep a line under a microsecond.
 */
export class AccessLog {
  readonly #log: FastifyBaseLogger;

  constructor(log: FastifyBaseLogger) {
    this.#log = log;
  }

  /** The logger for one checked query answered in one variant. */
  forQuery(query: StatsQuery, variant: Variant): FastifyBaseLogger {
    const { rendering, coding } = describeVariant(variant);
    return this.#log.child({ route: routeLabel(query.endpoint.path), period: periodLabel(query), format: rendering, coding });
  }

  /** A request answered by a statistics route, through its query's logger (or the plain one when it was refused before). */
  answered(
    logger: FastifyBaseLogger | undefined,
    request: FastifyRequest,
    outcome: RequestOutcome,
    status: number,
    bytes: number,
    upstreamMs?: number,
  ): void {
    const ms = elapsedMs(request.raw);
    if (logger !== undefined) {
      logger.info({ reqId: request.id, method: request.method, outcome, status, bytes, ms, upstreamMs }, 'request');
    } else {
      this.#log.info({ reqId: request.id, method: request.method, route: routeOf(request), outcome, status, bytes, ms }, 'request');
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

/** The matched route's path (or the statistics route's name), or the requested path without its query when nothing matched. */
function routeOf(request: FastifyRequest): string {
  const url = request.routeOptions.url;
  if (url === undefined) return request.url.split('?', 1)[0] as string;
  return url.startsWith('/api/') ? routeLabel(url) : url;
}
