import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { routeLabel } from '../deskie/endpoints.js';
import type { FreshnessClass } from '../deskie/periods.js';
import type { RequestOutcome } from './metrics.js';

/** What the access line says of a checked query in the format and coding it was answered in. */
export interface QueryFields {
  readonly route: string;
  readonly period: string;
  readonly format: string;
  readonly coding: string;
}

/** What a statistics route tells the access line of the request it answered. */
export interface StatsAccess {
  /** Unknown for a request refused before its query was checked. */
  readonly query: QueryFields | undefined;
  /** The query's period class, for the metrics. */
  readonly periodClass?: FreshnessClass;
  /** 'error' until the request is answered. */
  outcome: RequestOutcome;
  /** Time at Deskie, for an answer that waited on a call. */
  upstreamMs?: number;
}

declare module 'fastify' {
  interface FastifyRequest {
    /** Set by the statistics routes: how the request was answered. */
    access: StatsAccess | undefined;
    /** The name of the client token it showed, in service mode. */
    client: string | undefined;
  }
}

/** One info line per request: never the URL's query (its filters can name a person) nor a header. */
export function registerAccessLog(app: FastifyInstance): void {
  app.decorateRequest('access', undefined);
  app.decorateRequest('client', undefined);
  app.addHook('onResponse', (request, reply, done) => {
    request.log.info(accessLine(request, reply), 'request');
    done();
  });
}

function accessLine(request: FastifyRequest, reply: FastifyReply): Record<string, unknown> {
  const status = reply.statusCode;
  const length = reply.getHeader('content-length');
  const bytes = request.method === 'HEAD' || length === undefined ? 0 : Number(length);
  const ms = Math.round(reply.elapsedTime * 100) / 100;
  const ip = status >= 400 ? request.ip : undefined;
  const { access, client, method } = request;
  const query = access?.query;
  // One shape for every line (pino leaves out what is undefined), so that the code writing it stays monomorphic.
  const { route = routeOf(request), period, format, coding } = query ?? {};
  return { route, period, format, coding, client, method, outcome: access?.outcome, status, bytes, ms, upstreamMs: access?.upstreamMs, ip };
}

/** The matched route's path (a statistics route by Deskie's name), or the requested path without its query when nothing matched. */
function routeOf(request: FastifyRequest): string {
  const url = request.routeOptions.url;
  if (url === undefined) return request.url.split('?', 1)[0] as string;
  return url.startsWith('/api/') ? routeLabel(url) : url;
}
