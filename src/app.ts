import { STATUS_CODES } from 'node:http';
import type { Duplex } from 'node:stream';
import { LRUCache } from 'lru-cache';
import { pino } from 'pino';
import Fastify, { LogController, type FastifyBaseLogger, type FastifyError, type FastifyInstance, type FastifyReply } from 'fastify';
import { errorCacheStatus } from './cache/cache-status.js';
import { CachedStats } from './cache/cached-stats.js';
import { MemoryStore } from './cache/memory-store.js';
import type { AnswerStore, CacheOutcome } from './cache/store.js';
import type { Config } from './config.js';
import { ENDPOINTS } from './deskie/endpoints.js';
import { PeriodWindows } from './deskie/periods.js';
import { parseQueryString } from './deskie/query-string.js';
import type { ResolvedWindow } from './deskie/query.js';
import { JSON_TYPE } from './formats/representations.js';
import { errorBody, notFound, ProxyError, UpstreamAnswer } from './errors.js';
import { HeapGuard } from './heap-guard.js';
import { docsRoutes, registerOpenApi } from './openapi.js';
import { adminRoutes } from './routes/admin.js';
import { PROXY_PARAMETERS, statsRoutes } from './routes/stats.js';
import { UpstreamBudget } from './upstream/budget.js';
import { DeskieClient } from './upstream/client.js';
import { DeskieUpstream } from './upstream/deskie.js';

declare module 'fastify' {
  interface FastifyRequest {
    /** How the cache answered, for the access log. */
    cacheOutcome?: CacheOutcome;
  }
}

export interface AppOptions {
  /** Epoch milliseconds; tests inject a clock they move by hand. */
  readonly clock?: () => number;
  readonly logger?: FastifyBaseLogger;
  /** Defaults to an in-memory store bounded by config.cacheMaxBytes. */
  readonly store?: AnswerStore;
}

/**
 * How far the old generation may grow past what the last full collection
 * kept before a miss starts another (heap-guard.ts). Measured under 40,000
 * distinct misses at CACHE_MAX_BYTES=64MiB: 8 MiB kept peak RSS at 207 MiB
 * with 70-90 collections, and the storm took twice the CPU it takes without
 * the guard (45-49 s against 23 s); 16 MiB kept 221 MiB with 47.
 */
const HEAP_HEADROOM_BYTES = 8 * 1024 * 1024;

/**
 * Distinct custom ranges whose parsing is remembered. Each holds luxon
 * DateTimes, about 2 kB with what they keep alive: 4,096 of them, filled by
 * a storm of distinct ranges, cost 18 MiB of peak RSS. Dashboards use a few.
 */
const REMEMBERED_RANGES = 256;

const ROUTE_LIST = Object.values(ENDPOINTS)
  .map((endpoint) => endpoint.path)
  .join(', ');

/** Statuses for what Node's HTTP parser refuses, by its error code; anything else is a 400. */
const CLIENT_ERROR_STATUS: Readonly<Record<string, number>> = { HPE_HEADER_OVERFLOW: 431, ERR_HTTP_REQUEST_TIMEOUT: 408 };

/**
 * Answers a request the HTTP parser refused, in the JSON error shape, and
 * closes the connection. The error itself is not logged: it carries the raw
 * request bytes, credentials included.
 */
function answerClientError(log: FastifyBaseLogger, error: Error & { code?: string }, socket: Duplex): void {
  if (error.code === 'ECONNRESET' || socket.destroyed) return;
  const status = CLIENT_ERROR_STATUS[error.code ?? ''] ?? 400;
  log.trace({ code: error.code, status }, 'request refused by the HTTP parser');
  if (socket.writable) {
    const body = errorBody(
      status === 431
        ? 'the request headers are too large'
        : status === 408
          ? 'the request took too long to arrive'
          : 'the request could not be read as HTTP',
    );
    socket.write(
      `HTTP/1.1 ${status} ${STATUS_CODES[status]}\r\nContent-Type: ${JSON_TYPE}\r\nContent-Length: ${Buffer.byteLength(body)}\r\n` +
        `Connection: close\r\n\r\n${body}`,
    );
  }
  socket.destroy();
}

/** Builds the proxy without listening; server.ts owns the process. */
export function buildApp(config: Config & { readonly deskieUrl: string }, options: AppOptions = {}): FastifyInstance {
  const clock = options.clock ?? Date.now;
  const log = options.logger ?? pino({ enabled: false });
  const logsRequests = log.level === 'debug' || log.level === 'trace';
  const app = Fastify({
    // Fastify given a logger builds a child logger for every request and
    // listens for each response's end to time it: together a hit's worth of
    // microseconds. Only debug logging writes per-request lines, so only then
    // does Fastify get the logger; otherwise the app logs through `log`.
    loggerInstance: logsRequests ? log : undefined,
    // One debug line per request from the onResponse hook below, with the cache outcome.
    logController: new LogController({ disableRequestLogging: true }),
    // Keys are compared as Deskie's names are written; query strings are
    // bounded and must decode (deskie/query-string.ts).
    routerOptions: { ignoreTrailingSlash: false, caseSensitive: true, querystringParser: parseQueryString },
    // The routes declare HEAD themselves (see routes/stats.ts).
    exposeHeadRoutes: false,
    // Requests Node's HTTP parser refuses before routing (oversized headers,
    // malformed request lines, slow clients) get the same error shape.
    clientErrorHandler: (error, socket) => answerClientError(log, error, socket),
    // A URL Fastify cannot even route (bad percent-encoding) gets our error shape too.
    frameworkErrors: (error, _request, reply) =>
      (reply as FastifyReply).code(400).type(JSON_TYPE).send(errorBody(`the request could not be read: ${error.message}`)),
  });
  // No route takes a body: never parse one, so any other method is a plain 404
  // rather than a 400 or 413 about its body.
  app.removeAllContentTypeParsers();
  app.addContentTypeParser('*', (_request, _payload, done) => done(null, undefined));

  const client = new DeskieClient({
    baseUrl: config.deskieUrl,
    timeoutMs: config.upstreamTimeoutMs,
    maxBodyBytes: config.upstreamMaxBodyBytes,
    connections: config.upstreamConnections,
  });
  const store = options.store ?? new MemoryStore({ maxBytes: config.cacheMaxBytes, clock });
  const budget = new UpstreamBudget({
    ratePerMinute: config.upstreamRatePerMin,
    reserve: config.upstreamReserve,
    concurrency: config.upstreamConcurrency,
    newCredentialShare: config.upstreamNewCredentialShare,
    queueLength: config.upstreamQueueLength,
    clock,
    log,
  });
  const upstream = new DeskieUpstream({
    client,
    budget,
    queueMs: config.upstreamQueueMs,
    maxPages: config.pageAllMaxPages,
    pagesTimeoutMs: config.pageAllTimeoutMs,
    clock,
    log,
  });
  const heap = new HeapGuard(HEAP_HEADROOM_BYTES);
  if (config.production && !heap.active) {
    log.warn(
      'node runs without --expose-gc: under a storm of misses the heap is left to V8 and can grow 150 MiB or more past ' +
        'CACHE_MAX_BYTES. Start with `npm start` or the image, which pass it (see README, "Memory").',
    );
  }
  const stats = new CachedStats({
    store,
    upstream,
    clock,
    lifetimes: config.lifetimes,
    keeping: { staleIfErrorMs: config.staleIfErrorSeconds * 1000, refreshAhead: config.refreshAhead },
    authFailureTtlMs: config.authFailureTtlSeconds * 1000,
    cacheKeySecret: config.cacheKeySecret,
    log,
    afterFetch: () => heap.afterFetch(),
  });

  app.decorateRequest('cacheOutcome', undefined);
  // Before any route: the document describes every route registered after it.
  registerOpenApi(app);
  const queryContext = {
    windows: new PeriodWindows(config.timezone, config.weekStart),
    ranges: new LRUCache<string, ResolvedWindow>({ max: REMEMBERED_RANGES }),
    extraParameters: config.extraParameters,
  };
  statsRoutes(app, { stats, clock, queryContext });

  // Everything but the three statistics routes: never cached, never forwarded.
  app.register(async (ops) => {
    ops.route({
      method: ['GET', 'HEAD'],
      url: '/healthz',
      handler: async (_request, reply) =>
        reply.header('cache-control', 'no-store').send({ status: 'ok', entries: store.entries, bytes: store.bytes, upstream: budget.snapshot() }),
    });
    if (config.adminToken !== undefined) {
      adminRoutes(ops, { token: config.adminToken, store, stats, queryContext: { ...queryContext, proxyParameters: PROXY_PARAMETERS }, clock, log });
    }
    docsRoutes(ops);
  });

  app.setNotFoundHandler((request, reply) => {
    const error = notFound(`no route ${request.method} ${request.url.split('?')[0]}; this server answers GET and HEAD on ${ROUTE_LIST}`);
    return reply.code(error.statusCode).type(JSON_TYPE).send(errorBody(error.message));
  });

  app.setErrorHandler((error: FastifyError | ProxyError | UpstreamAnswer, request, reply) => {
    reply.header('cache-control', 'no-store');
    if (error instanceof UpstreamAnswer || error instanceof ProxyError) {
      const cacheStatus = errorCacheStatus(error);
      if (cacheStatus !== undefined) reply.header('cache-status', cacheStatus);
    }
    if (error instanceof UpstreamAnswer) {
      // Deskie's own answer, passed through as it came and never stored.
      if (error.retryAfterSeconds !== undefined) reply.header('retry-after', String(error.retryAfterSeconds));
      return reply.code(error.statusCode).type(error.contentType ?? JSON_TYPE).send(error.body);
    }
    if (error instanceof ProxyError) {
      // The budget logs its own changes of state; its refusals would be a line per request.
      const quiet = error.remembered || error.code === 'UPSTREAM_BUSY' || error.code === 'SHUTTING_DOWN';
      if (error.statusCode >= 500) log[quiet ? 'debug' : 'warn']({ reqId: request.id, code: error.code }, error.message);
      return reply.code(error.statusCode).headers(error.headers).type(JSON_TYPE).send(errorBody(error.message));
    }
    const status = error.statusCode ?? 500;
    if (status < 500) {
      return reply.code(status).type(JSON_TYPE).send(errorBody(error.message));
    }
    log.error({ reqId: request.id, err: error }, 'unexpected error');
    return reply.code(500).type(JSON_TYPE).send(errorBody('internal error'));
  });

  // One line per answered request, only when asked for: a hit should not pay for it.
  if (logsRequests) {
    app.addHook('onResponse', async (request, reply) => {
      request.log.debug(
        { method: request.method, url: request.url, status: reply.statusCode, cache: request.cacheOutcome, ms: reply.elapsedTime },
        'answered',
      );
    });
  }

  // Waiting calls are refused and no refresh starts; refreshes under way
  // finish (bounded by the upstream timeout) before the pool closes.
  app.addHook('onClose', async () => {
    budget.close();
    await stats.close();
    await Promise.all([client.close(), store.close()]);
  });

  return app;
}
