import type { IncomingHttpHeaders } from 'node:http';
import type { FastifyInstance, FastifyReply, FastifyRequest, RouteHandlerMethod } from 'fastify';
import { authorizationOf } from '../auth/header.js';
import { answerCacheStatus } from '../cache/cache-status.js';
import type { StatsAnswer } from '../cache/cached-stats.js';
import { renderedVariant } from '../cache/store.js';
import { periodLabel } from '../cache/policy.js';
import { ENDPOINTS, routeLabel, type EndpointName, type EndpointSpec } from '../deskie/endpoints.js';
import { isCustomRange } from '../deskie/periods.js';
import { parseStatsQuery, type RawQuery, type StatsQuery } from '../deskie/query.js';
import { BOM_PARAMETER, chooseCoding, chooseFormat, describeVariant, FORMAT_PARAMETER, PROXY_PARAMETERS, type Variant, variantOf, wantsBom } from '../formats/representations.js';
import { notModified } from '../http/conditional.js';
import type { QueryFields, StatsAccess } from '../observability/access-log.js';
import type { Services } from '../services.js';
import { statsRouteSchema, type StatsSchemaOptions } from './stats-schema.js';
import { acceptsEventStream, streamVariant } from './stream.js';

export interface StatsRouteOptions
  extends Pick<Services, 'stats' | 'streams' | 'clock' | 'queryContext' | 'metrics' | 'authenticate'> {
  /** How clients prove who they are, as the API description says it (routes/stats-schema.ts). */
  readonly clientAuth: StatsSchemaOptions['clientAuth'];
}

declare module 'fastify' {
  interface FastifyContextConfig {
    endpoint?: EndpointName;
  }
}

/** How long a rolling period's checked query is reused: its window moves with the clock. */
const ROLLING_QUERY_REUSE_MS = 1_000;

/** A checked query, and until when it means the same question. */
interface CheckedQuery {
  readonly query: StatsQuery;
  /** When it was checked: a clock set back (by hand, or by NTP) must not reuse a later window. */
  readonly sinceMs: number;
  readonly untilMs: number;
  /** What the access line says of it, by variant, made on first use. */
  readonly fields: QueryFields[];
}

/** GET and HEAD for Deskie's statistics endpoints: a hit is answered in the handler's own turn, with no promise. */
export async function statsRoutes(app: FastifyInstance, options: StatsRouteOptions): Promise<void> {
  const { stats, streams, clock, queryContext, metrics, authenticate } = options;
  for (const endpoint of Object.values(ENDPOINTS)) {
    const check = checkedQueries(endpoint, queryContext);
    const handler: RouteHandlerMethod = (request, reply) => {
      const caller = authenticate(authorizationOf(request.raw));
      if (caller.client !== undefined) {
        request.client = caller.client;
        metrics.countClient(caller.client);
      }
      const nowMs = clock();
      const known = check(request.query as RawQuery, nowMs);
      const streamed = request.method === 'GET' && acceptsEventStream(request.headers.accept);
      const variant = streamed ? streamVariant(known.query) : variantFor(known.query, request.headers);
      // Until answered, an error: what the error handler and the access line read.
      request.access = { query: (known.fields[variant] ??= queryFields(known.query, variant)), periodClass: known.query.freshness, outcome: 'error' };
      if (streamed) {
        const recheck = (atMs: number): StatsQuery => check(request.query as RawQuery, atMs).query;
        return streams.serve(request, reply, { query: known.query, recheck, authorization: caller.authorization, client: caller.client, variant });
      }
      const result = stats.answer(known.query, caller.authorization, nowMs, variant);
      if (!(result instanceof Promise)) return sendAnswer(request, reply, result, variant, nowMs, endpoint.name, options);
      // Freshness is told as of now: a miss may have waited seconds for Deskie.
      return result.then((fetched) => sendAnswer(request, reply, fetched, variant, clock(), endpoint.name, options));
    };
    // HEAD declared with GET: Fastify's automatic HEAD would label a 304 "Content-Length: 0" (RFC 9110 §8.6).
    app.route({
      method: ['GET', 'HEAD'],
      url: endpoint.path,
      handler,
      config: { endpoint: endpoint.name },
      // For the API description only (stats-schema.ts): no validation, no serializer.
      schema: statsRouteSchema(endpoint, { extraParameters: queryContext.extraParameters, clientAuth: options.clientAuth }),
      validatorCompiler: () => () => true,
      serializerCompiler: () => (data) => JSON.stringify(data),
    });
  }
}

// Checks kept per parsed query object (one per string: deskie/query-string.ts), so a poll is checked once per window.
function checkedQueries(endpoint: EndpointSpec, context: StatsRouteOptions['queryContext']): (raw: RawQuery, nowMs: number) => CheckedQuery {
  const checked = new WeakMap<object, CheckedQuery>();
  return (raw, nowMs) => {
    let known = checked.get(raw);
    if (known === undefined || nowMs >= known.untilMs || nowMs < known.sinceMs) {
      const query = parseStatsQuery(endpoint, raw, { ...context, proxyParameters: PROXY_PARAMETERS, nowMs });
      known = { query, sinceMs: nowMs, untilMs: reusableUntil(query, nowMs), fields: [] };
      checked.set(raw, known);
    }
    return known;
  };
}

/** Until when a checked query may be reused: a calendar period until its window changes, a custom range always. */
function reusableUntil(query: StatsQuery, nowMs: number): number {
  const changesAt = query.window.changesAt?.toMillis();
  if (changesAt !== undefined) return changesAt;
  return isCustomRange(query.freshness) ? Number.POSITIVE_INFINITY : nowMs + ROLLING_QUERY_REUSE_MS;
}

function queryFields(query: StatsQuery, variant: Variant): QueryFields {
  const { rendering, coding } = describeVariant(variant);
  return { route: routeLabel(query.endpoint.path), period: periodLabel(query), format: rendering, coding };
}

function variantFor(query: StatsQuery, headers: IncomingHttpHeaders): Variant {
  const format = chooseFormat(query.proxy[FORMAT_PARAMETER], headers.accept);
  const bom = format === 'csv' && wantsBom(query.proxy[BOM_PARAMETER]);
  return variantOf(format, bom, chooseCoding(headers['accept-encoding']));
}

/** A 200, or a 304 when validators match; max-age: the whole lifetime; Age: time since the fetch (RFC 9111 §4.2.3). */
function sendAnswer(
  request: FastifyRequest,
  reply: FastifyReply,
  result: StatsAnswer,
  variant: Variant,
  nowMs: number,
  endpoint: EndpointName,
  { stats, metrics }: StatsRouteOptions,
): FastifyReply {
  const { answer, outcome, stored } = result;
  const representation = renderedVariant(answer, variant) ?? stats.representation(answer, variant);
  // Whole seconds of each, so that max-age - Age is exactly the ttl told.
  const lifetime = Math.max(0, Math.floor((answer.expiresAtMs - answer.fetchedAtMs) / 1000));
  const age = Math.max(0, Math.floor((nowMs - answer.fetchedAtMs) / 1000));
  const ttl = outcome === 'stale' ? lifetime - age : Math.max(0, lifetime - age);
  reply.headers({
    'cache-status': answerCacheStatus(result, ttl),
    'cache-control': stored ? `private, max-age=${lifetime}` : 'no-store',
    age: String(age),
    etag: representation.etag,
    'last-modified': answer.lastModified,
    // Authorization picks the partition: a client cache must not reuse one credential's answer for another.
    vary: 'Accept, Accept-Encoding, Authorization',
  });
  // Set by the handler before the answer was asked for.
  const access = request.access as StatsAccess;
  access.outcome = result.revalidating === true ? 'revalidating' : outcome;
  if (outcome !== 'hit' && outcome !== 'stale') access.upstreamMs = answer.upstreamMs;
  const status = notModified(request.headers, representation.etag, answer.fetchedAtMs) ? 304 : 200;
  metrics.count(endpoint, access.periodClass, access.outcome, status);
  if (status === 304) return reply.code(304).send();
  if (representation.contentEncoding !== undefined) reply.header('content-encoding', representation.contentEncoding);
  if (representation.contentDisposition !== undefined) reply.header('content-disposition', representation.contentDisposition);
  return reply.code(200).type(representation.contentType).send(representation.body);
}
