import type { IncomingHttpHeaders } from 'node:http';
import type { FastifyInstance, FastifyReply, FastifyRequest, RouteHandlerMethod } from 'fastify';
import type { AccessLog, QueryLog } from '../observability/access-log.js';
import { authorizationOf } from '../auth/header.js';
import { answerCacheStatus, flat } from '../cache/cache-status.js';
import type { CachedStats, StatsAnswer } from '../cache/cached-stats.js';
import { renderedVariant } from '../cache/store.js';
import { ENDPOINTS, type EndpointName, type EndpointSpec } from '../deskie/endpoints.js';
import { isCustomRange } from '../deskie/periods.js';
import { parseStatsQuery, type QueryContext, type RawQuery, type StatsQuery } from '../deskie/query.js';
import type { Authenticate, Caller } from '../auth/clients.js';
import { parseQueryString } from '../deskie/query-string.js';
import { remembered } from '../memo.js';
import { ProxyMetrics } from '../observability/metrics.js';
import type { HitPath } from './hit-path.js';
import { BOM_PARAMETER, chooseCoding, chooseFormat, FORMAT_PARAMETER, PROXY_PARAMETERS, type Variant, variantOf, wantsBom } from '../formats/representations.js';

export interface StatsRouteOptions {
  readonly stats: CachedStats;
  readonly clock: () => number;
  readonly queryContext: Omit<QueryContext, 'nowMs' | 'proxyParameters'>;
  readonly metrics: ProxyMetrics;
  readonly accessLog: AccessLog;
  /** Who a request is: its Deskie credentials, or in service mode its client token (auth/clients.ts). */
  readonly authenticate: Authenticate;
  /** Where each route's answerer of hits before routing goes. */
  readonly hitPath: HitPath;
}

declare module 'fastify' {
  interface FastifyRequest {
    /** What the access line says of this request's query and format, once both are known. */
    statsLog?: QueryLog;
    /** Its key in the request metrics, once the query is known (ProxyMetrics.requestBase). */
    metricsBase?: number;
    /** The name of the client token it showed, in service mode. */
    client?: string;
  }
  interface FastifyContextConfig {
    /** Set on the statistics routes: the endpoint they answer. */
    endpoint?: EndpointName;
  }
}

/** How long a rolling period's checked query is reused: its window moves with the clock. */
const ROLLING_QUERY_REUSE_MS = 1_000;

/** A checked query and when it means the same question: from its check until its window changes. */
interface CheckedQuery {
  readonly query: StatsQuery;
  /** When it was checked: a clock set back (by hand, or by NTP) must not reuse a later window. */
  readonly sinceMs: number;
  readonly untilMs: number;
  /** The query's key in the request metrics. */
  readonly metricsBase: number;
  /** What the access line says of it in each variant it was answered in, made on first use. */
  readonly logs: QueryLog[];
}

/** Until when a checked query may be reused: a calendar period until its window changes, a custom range always. */
function reusableUntil(query: StatsQuery, nowMs: number): number {
  const changesAt = query.window.changesAt?.toMillis();
  if (changesAt !== undefined) return changesAt;
  return isCustomRange(query.freshness) ? Number.POSITIVE_INFINITY : nowMs + ROLLING_QUERY_REUSE_MS;
}

/**
 * GET and HEAD for Deskie's three statistics endpoints, and for each the
 * answerer of the hit path (routes/hit-path.ts), which answers a GET that is
 * a hit before Fastify routes it. Both check the query, choose the variant
 * and write the answer with the same functions, so a hit reads the same
 * whichever answers it.
 */
export function statsRoutes(app: FastifyInstance, options: StatsRouteOptions): void {
  const { stats, clock, queryContext, metrics, accessLog, authenticate, hitPath } = options;
  const answered: Answered = { stats, metrics, accessLog };
  for (const endpoint of Object.values(ENDPOINTS)) {
    const check = checkedQueries(endpoint, queryContext);
    // Not async: a hit is answered in the same turn, with no promise made.
    const handler: RouteHandlerMethod = (request, reply) => {
      const caller = authenticate(authorizationOf(request.raw));
      if (caller.client !== undefined) {
        request.client = caller.client;
        metrics.countClient(caller.client);
      }
      const nowMs = clock();
      const known = check(request.query as RawQuery, nowMs);
      const variant = variantFor(known.query, request.headers);
      request.statsLog = logFor(accessLog, known, variant);
      request.metricsBase = known.metricsBase;
      const result = stats.answer(known.query, caller.authorization, nowMs, variant);
      if (!(result instanceof Promise)) {
        return sendAnswer(answered, request, reply, result, variant, nowMs);
      }
      return result.then((fetched) => {
        // Freshness is told as of now: a miss may have waited seconds for Deskie.
        return sendAnswer(answered, request, reply, fetched, variant, clock());
      });
    };
    // HEAD is declared with GET rather than left to Fastify's automatic HEAD
    // routes, which would label a 304 with "Content-Length: 0" (RFC 9110 §8.6).
    app.route({ method: ['GET', 'HEAD'], url: endpoint.path, handler, config: { endpoint: endpoint.name } });

    /**
     * The same GET answered before Fastify sees it, when it is a hit;
     * anything else (a bad query or credential, a miss, a recheck due) is
     * left to the route above, untouched but for the query checked.
     */
    hitPath.add(endpoint.path, (request, response, queryString) => {
      const nowMs = clock();
      let caller: Caller;
      let known: CheckedQuery;
      try {
        caller = authenticate(authorizationOf(request));
        known = check(parseQueryString(queryString), nowMs);
      } catch {
        return false; // the route answers the error
      }
      const result = stats.hit(known.query, caller.authorization, nowMs);
      if (result === undefined) return false;
      if (caller.client !== undefined) metrics.countClient(caller.client);
      const id = hitPath.requestId(request);
      const variant = variantFor(known.query, request.headers);
      const { status, headers, body } = cachedResponse(stats, result, variant, nowMs, id, request.headers);
      if (body !== undefined) headers.push('content-length', String(body.length));
      response.writeHead(status, headers);
      response.end(body);
      metrics.count(known.metricsBase, 'hit', status);
      accessLog.hit(logFor(accessLog, known, variant), id, caller.client, 'GET', request, status, body === undefined ? 0 : body.length);
      return true;
    });
  }
}

/**
 * An endpoint's query check, remembered by the parsed query string it came
 * from: the query string parser hands the same object for the same string
 * (deskie/query-string.ts), so a dashboard's repeated poll is checked and
 * canonicalised once per window rather than on every hit. Throws what the
 * check refuses.
 */
function checkedQueries(endpoint: EndpointSpec, { windows, ranges, extraParameters }: StatsRouteOptions['queryContext']): (raw: RawQuery, nowMs: number) => CheckedQuery {
  const checked = new WeakMap<object, CheckedQuery>();
  return (raw, nowMs) => {
    let known = checked.get(raw);
    if (known === undefined || nowMs >= known.untilMs || nowMs < known.sinceMs) {
      // A literal rather than a spread of the shared context: the spread cost a hit several microseconds.
      const context: QueryContext = { windows, ranges, extraParameters, proxyParameters: PROXY_PARAMETERS, nowMs };
      const query = parseStatsQuery(endpoint, raw, context);
      known = { query, sinceMs: nowMs, untilMs: reusableUntil(query, nowMs), metricsBase: ProxyMetrics.requestBase(endpoint.name, query.freshness), logs: [] };
      checked.set(raw, known);
    }
    return known;
  };
}

/** The format and coding a request asks for: its query's `format` and `bom`, else its Accept; and its Accept-Encoding. */
function variantFor(query: StatsQuery, headers: IncomingHttpHeaders): Variant {
  const format = chooseFormat(query.proxy[FORMAT_PARAMETER], headers.accept);
  const bom = format === 'csv' && wantsBom(query.proxy[BOM_PARAMETER]);
  return variantOf(format, bom, chooseCoding(headers['accept-encoding']));
}

/** What the access line says of a checked query in a variant, made on its first request. */
const logFor = (accessLog: AccessLog, known: CheckedQuery, variant: Variant): QueryLog => (known.logs[variant] ??= accessLog.forQuery(known.query, variant));

interface Answered {
  readonly stats: CachedStats;
  readonly metrics: ProxyMetrics;
  readonly accessLog: AccessLog;
}

/** A cached answer as the route sends it (the hit path sends the same, with its Content-Length). */
function sendAnswer(
  { stats, metrics, accessLog }: Answered,
  request: FastifyRequest,
  reply: FastifyReply,
  result: StatsAnswer,
  variant: Variant,
  nowMs: number,
): FastifyReply {
  const { status, headers, body } = cachedResponse(stats, result, variant, nowMs, request.id, request.headers);
  reply.code(status);
  for (let i = 0; i < headers.length; i += 2) reply.header(headers[i] as string, headers[i + 1]);
  reply.send(body);
  // Counted and logged once written: a hit's whole answer went out in send().
  const { outcome, answer } = result;
  metrics.count(request.metricsBase as number, outcome, status);
  const bytes = body === undefined || request.method === 'HEAD' ? 0 : body.length;
  accessLog.answered(request.statsLog, request, outcome, status, bytes, outcome === 'hit' || outcome === 'stale' ? undefined : answer.upstreamMs);
  return reply;
}

/**
 * A cached answer in the format and coding asked for, rendering it first
 * when this is the entry's first request for them: a 200 with its body, or a
 * 304 when the request's validators match. Headers are a flat list of names
 * and values, as Node's writeHead takes them. `ttl` in Cache-Status is the
 * remaining freshness (negative for a stale answer); Cache-Control's max-age
 * is the whole lifetime and Age the time since the fetch, so a client cache
 * computes the same remaining freshness (RFC 9111 §4.2.3) rather than
 * subtracting the age twice. An answer that could not be stored is no-store:
 * a client must not keep what this cache could not.
 */
function cachedResponse(
  stats: CachedStats,
  result: StatsAnswer,
  variant: Variant,
  nowMs: number,
  requestId: string,
  requestHeaders: IncomingHttpHeaders,
): { status: 200 | 304; headers: string[]; body: Buffer | undefined } {
  const { answer, outcome, stored } = result;
  const representation = renderedVariant(answer, variant) ?? stats.representation(answer, variant);
  // Whole seconds of each, so that max-age - Age is exactly the ttl told.
  const lifetime = Math.max(0, Math.floor((answer.expiresAtMs - answer.fetchedAtMs) / 1000));
  const age = Math.max(0, Math.floor((nowMs - answer.fetchedAtMs) / 1000));
  const ttl = outcome === 'stale' ? lifetime - age : Math.max(0, lifetime - age);
  const headers = [
    'cache-status',
    answerCacheStatus(result, ttl),
    'cache-control',
    stored ? cacheControl(lifetime) : 'no-store',
    'age',
    String(age),
    'etag',
    representation.etag,
    'last-modified',
    answer.lastModified,
    // Accept can pick CSV and Accept-Encoding a coding; Authorization picks the partition,
    // so a client cache must not reuse one credential's answer (or validator) for another.
    'vary',
    'Accept, Accept-Encoding, Authorization',
    'x-request-id',
    requestId,
    'x-content-type-options',
    'nosniff',
  ];
  if (notModified(requestHeaders, representation.etag, answer.fetchedAtMs)) return { status: 304, headers, body: undefined };
  if (representation.contentEncoding !== undefined) headers.push('content-encoding', representation.contentEncoding);
  if (representation.contentDisposition !== undefined) headers.push('content-disposition', representation.contentDisposition);
  headers.push('content-type', representation.contentType);
  return { status: 200, headers, body: representation.body };
}

/** Cache-Control values by lifetime, in one piece (see flat()): entries share a handful of lifetimes. */
const cacheControl = remembered(4096, (lifetimeSeconds: number) => flat(`private, max-age=${lifetimeSeconds}`));

/**
 * RFC 9110 §13.1.2 and §13.1.3: If-None-Match (weak comparison) decides when
 * present; otherwise If-Modified-Since at one-second resolution. ETags carry
 * the entry's key, so a tag from another URL or credential never matches.
 */
function notModified(headers: IncomingHttpHeaders, etag: string, fetchedAtMs: number): boolean {
  const ifNoneMatch = headers['if-none-match'];
  if (ifNoneMatch !== undefined) {
    if (ifNoneMatch.trim() === '*') return true;
    return ifNoneMatch.split(',').some((tag) => tag.trim().replace(/^W\//, '') === etag);
  }
  const ifModifiedSince = headers['if-modified-since'];
  // Only an HTTP-date counts (RFC 9110 §13.1.3); Date.parse alone takes "3000" as a year.
  if (ifModifiedSince === undefined || !HTTP_DATE.test(ifModifiedSince)) return false;
  return Math.floor(fetchedAtMs / 1000) * 1000 <= Date.parse(ifModifiedSince);
}

/** IMF-fixdate, the form this server writes in Last-Modified (RFC 9110 §5.6.7). */
const HTTP_DATE = /^(Mon|Tue|Wed|Thu|Fri|Sat|Sun), \d{2} (Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec) \d{4} \d{2}:\d{2}:\d{2} GMT$/;
