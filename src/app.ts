import { STATUS_CODES } from 'node:http';
import type { Duplex } from 'node:stream';
import { LRUCache } from 'lru-cache';
import { pino } from 'pino';
import Fastify, { LogController, type FastifyBaseLogger, type FastifyError, type FastifyInstance, type FastifyReply, type FastifyRequest } from 'fastify';
import { AccessLog } from './observability/access-log.js';
import { bearerMatcher } from './auth/bearer.js';
import { clientAccess, readTokenFile } from './auth/clients.js';
import { authorizationOf } from './auth/header.js';
import { ProxyMetrics } from './observability/metrics.js';
import { Readiness } from './observability/readiness.js';
import { errorCacheStatus } from './cache/cache-status.js';
import { CachedStats } from './cache/cached-stats.js';
import { MemoryStore } from './cache/memory-store.js';
import { RedisStore } from './cache/redis-store.js';
import { SharedRedis } from './redis/connection.js';
import type { AnswerStore } from './cache/store.js';
import type { Config } from './config/config.js';
import { ENDPOINTS } from './deskie/endpoints.js';
import { PeriodWindows } from './deskie/periods.js';
import { parseQueryString } from './deskie/query-string.js';
import type { ResolvedWindow } from './deskie/query.js';
import { JSON_TYPE, PROXY_PARAMETERS } from './formats/representations.js';
import { errorBody, notFound, ProxyError, shuttingDown, UpstreamAnswer } from './http/errors.js';
import { HeapGuard } from './heap-guard.js';
import { docsRoutes, registerOpenApi } from './routes/docs.js';
import { adminRoutes } from './routes/admin/entries.js';
import { HitPath } from './routes/hit-path.js';
import { statsRoutes } from './routes/stats.js';
import { UpstreamBudget } from './upstream/budget/budget.js';
import { SharedBudget } from './upstream/budget/shared.js';
import { DeskieClient } from './upstream/client.js';
import { DeskieUpstream } from './upstream/deskie.js';

declare module 'fastify' {
  interface FastifyInstance {
    /** What /readyz reports; server.ts starts draining on SIGTERM. */
    readiness: Readiness;
    /**
     * Reads PROXY_TOKENS_FILE again and swaps the client tokens (server.ts
     * calls it on SIGHUP); undefined unless the tokens come from a file.
     * Throws TokenListError, keeping the tokens it had, for a bad file.
     */
    reloadClientTokens: (() => { readonly clients: readonly string[] }) | undefined;
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
 * the guard (45-49 s against 23 s); 16 MiB kept 221 MiB with 47. Later
 * runs of the same storm with 8 MiB peaked at 214.9-216.5 MiB, past the
 * 214 MiB target; 6 MiB kept 210.3 MiB, the storm taking about a tenth longer.
 */
const HEAP_HEADROOM_BYTES = 6 * 1024 * 1024;

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
 * How often Node looks for connections past HEADERS_TIMEOUT_MS or
 * REQUEST_TIMEOUT_MS. Its default, 30 s, would let a slow loris keep a
 * connection up to 30 s past the headers timeout; a tenth of that timeout,
 * at most a second, enforces it promptly. Each look walks only the
 * connections still sending a request.
 */
const connectionsCheckMs = (headersTimeoutMs: number): number => Math.min(1_000, Math.max(10, Math.ceil(headersTimeoutMs / 10)));

/**
 * Answers a request the HTTP parser refused, in the JSON error shape, and
 * closes the connection. The error itself is not logged: it carries the raw
 * request bytes, credentials included.
 */
function answerClientError(accessLog: AccessLog, error: Error & { code?: string }, socket: Duplex): void {
  if (error.code === 'ECONNRESET' || socket.destroyed) return;
  const status = CLIENT_ERROR_STATUS[error.code ?? ''] ?? 400;
  let bytes = 0;
  if (socket.writable) {
    const body = errorBody(
      status === 431
        ? 'the request headers are too large'
        : status === 408
          ? 'the request took too long to arrive'
          : 'the request could not be read as HTTP',
    );
    bytes = Buffer.byteLength(body);
    socket.write(
      `HTTP/1.1 ${status} ${STATUS_CODES[status]}\r\nContent-Type: ${JSON_TYPE}\r\nContent-Length: ${bytes}\r\n` +
        `X-Content-Type-Options: nosniff\r\nConnection: close\r\n\r\n${body}`,
    );
  }
  accessLog.refused(status, error.code, bytes);
  socket.destroy();
}

/** ownAnswerHeaders() but the request id, for an answer written without Fastify. */
const OWN_ANSWER_HEADERS: Readonly<Record<string, string>> = { 'cache-control': 'no-store', 'x-content-type-options': 'nosniff' };

/**
 * The headers of every answer that is not a cached statistics answer (an
 * error, a 404, an operations route): the request id, no-store (nothing of
 * the kind is for a client cache to keep; a 404 is cacheable by default,
 * RFC 9110 §15.5.5, and a route may exist tomorrow) and nosniff.
 */
function ownAnswerHeaders(reply: FastifyReply, request: FastifyRequest): FastifyReply {
  return reply.header('x-request-id', request.id).headers(OWN_ANSWER_HEADERS);
}

/** Builds the proxy without listening; server.ts owns the process. */
export function buildApp(config: Config & { readonly deskieUrl: string }, options: AppOptions = {}): FastifyInstance {
  const clock = options.clock ?? Date.now;
  const log = options.logger ?? pino({ enabled: false });
  const logsRequests = log.level === 'debug' || log.level === 'trace';
  const accessLog = new AccessLog(log);
  // Cache hits are answered before Fastify routes them (routes/hit-path.ts).
  const hitPath = new HitPath(log);
  const app = Fastify({
    serverFactory: hitPath.serverFactory,
    // The client's X-Request-Id when well-formed, else one of ours; sent back on every answer.
    genReqId: hitPath.requestId,
    // Fastify given a logger builds a child logger for every request and
    // listens for each response's end to time it: together a hit's worth of
    // microseconds. Only debug logging writes per-request lines, so only then
    // does Fastify get the logger; otherwise the app logs through `log`.
    loggerInstance: logsRequests ? log : undefined,
    // One access line per request, at info, written by the app (access-log.ts).
    logController: new LogController({ disableRequestLogging: true }),
    // Keys are compared as Deskie's names are written; query strings are
    // bounded and must decode (deskie/query-string.ts).
    routerOptions: { ignoreTrailingSlash: false, caseSensitive: true, querystringParser: parseQueryString },
    // The routes declare HEAD themselves (see routes/stats.ts).
    exposeHeadRoutes: false,
    // X-Forwarded-For is a client's to write: believed only from the proxies TRUST_PROXY names.
    trustProxy: typeof config.trustProxy === 'boolean' ? config.trustProxy : [...config.trustProxy],
    // A slow client cannot hold a connection: its request line and headers,
    // its whole request, an idle keep-alive connection and a connection
    // without a byte either way each have a bound (config.ts says why each).
    http: { headersTimeout: config.headersTimeoutMs, connectionsCheckingInterval: connectionsCheckMs(config.headersTimeoutMs) },
    requestTimeout: config.requestTimeoutMs,
    keepAliveTimeout: config.keepAliveTimeoutMs,
    connectionTimeout: config.connectionTimeoutMs,
    // Requests Node's HTTP parser refuses before routing (oversized headers,
    // malformed request lines, slow clients) get the same error shape.
    clientErrorHandler: (error, socket) => answerClientError(accessLog, error, socket),
    // A URL Fastify cannot even route (bad percent-encoding) gets our error shape too.
    frameworkErrors: (error, request, reply) => {
      const body = errorBody(`the request could not be read: ${error.message}`);
      ownAnswerHeaders(reply as FastifyReply, request).code(400).type(JSON_TYPE).send(body);
      accessLog.other(request, 400, Buffer.byteLength(body));
    },
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
  // With REDIS_URL, replicas share answers (and the budget) through Redis; this process keeps fresh copies in L1.
  const redis = config.redis === undefined ? undefined : new SharedRedis({ ...config.redis, log });
  const store: AnswerStore =
    options.store ??
    (redis === undefined || config.redis === undefined
      ? new MemoryStore({ maxBytes: config.cacheMaxBytes, clock })
      : new RedisStore({
          redis,
          l1MaxBytes: config.redis.l1MaxBytes,
          clock,
          log,
          longestLoadMs: config.upstreamQueueMs + config.pageAllTimeoutMs + config.upstreamTimeoutMs,
        }));
  const storeMaxBytes = config.redis?.l1MaxBytes ?? config.cacheMaxBytes;
  const budget = new UpstreamBudget({
    ratePerMinute: config.upstreamRatePerMin,
    reserve: config.upstreamReserve,
    concurrency: config.upstreamConcurrency,
    newCredentialShare: config.upstreamNewCredentialShare,
    queueLength: config.upstreamQueueLength,
    clock,
    log,
    // The account's limit is one across replicas: its minute, pause and circuit are kept in Redis (closed with the budget).
    shared: redis === undefined ? undefined : new SharedBudget({ redis, clock, log }),
  });
  const { access } = config;
  // In service mode with tokens, `tokens` is the set a reload swaps.
  const { authenticate, tokens } = clientAccess(access);
  if (access.mode === 'service' && access.clients === 'none') {
    log.warn('PROXY_AUTH=none: any client that reaches this server gets the statistics of the Deskie account, without a token');
  }
  const metrics = new ProxyMetrics({
    store,
    budget,
    maxBytes: storeMaxBytes,
    ...(tokens === undefined ? {} : { clientTokens: () => tokens.names.length }),
  });
  const upstream = new DeskieUpstream({
    client,
    budget,
    queueMs: config.upstreamQueueMs,
    maxPages: config.pageAllMaxPages,
    pagesTimeoutMs: config.pageAllTimeoutMs,
    clock,
    log,
    onCall: (endpoint, status, seconds) => metrics.countUpstreamCall(endpoint, status, seconds),
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
    authRecheckMs: config.authRecheckSeconds * 1000,
    cacheKeySecret: config.cacheKeySecret,
    log,
    afterFetch: () => heap.afterFetch(),
  });

  // Declared up front so every request has the same shape (no per-request property additions).
  app.decorateRequest('statsLog', undefined);
  app.decorateRequest('metricsBase', undefined);
  app.decorateRequest('client', undefined);
  // Before any route: the document describes every route registered after it.
  registerOpenApi(app, {
    extraParameters: config.extraParameters,
    clients: access.mode === 'pass-through' ? 'deskie' : access.clients === 'none' ? 'none' : 'clientToken',
  });
  const queryContext = {
    windows: new PeriodWindows(config.timezone, config.weekStart),
    ranges: new LRUCache<string, ResolvedWindow>({ max: REMEMBERED_RANGES }),
    extraParameters: config.extraParameters,
  };
  statsRoutes(app, { stats, clock, queryContext, metrics, accessLog, authenticate, hitPath });
  // Once closing, no request is a hit. Requests that still come on open
  // connections (pipelined, or in the moment before a keep-alive connection
  // is closed) are refused before routing, in our shape, with their access
  // line, and the connection is closed after.
  app.addHook('preClose', (done) => {
    hitPath.close();
    done();
  });
  hitPath.whileClosing((request, response) => {
    const id = hitPath.requestId(request);
    const error = shuttingDown();
    const body = errorBody(error.message);
    const bytes = Buffer.byteLength(body);
    response.writeHead(error.statusCode, {
      ...OWN_ANSWER_HEADERS,
      ...error.headers,
      'x-request-id': id,
      'content-type': JSON_TYPE,
      'content-length': String(bytes),
      connection: 'close',
    });
    response.end(request.method === 'HEAD' ? undefined : body);
    accessLog.whileClosing(request, id, error.statusCode, request.method === 'HEAD' ? 0 : bytes);
  });
  const tokenFile = access.mode === 'service' && access.clients !== 'none' ? access.clients.file : undefined;
  app.decorate(
    'reloadClientTokens',
    tokens === undefined || tokenFile === undefined
      ? undefined
      : () => {
          tokens.replace(readTokenFile(tokenFile, { allowEmpty: true }));
          return { clients: tokens.names };
        },
  );

  const readiness = new Readiness();
  app.decorate('readiness', readiness);
  app.addHook('onReady', async () => readiness.markReady());

  // Everything but the three statistics routes: never cached, never forwarded.
  // Their access lines come from Fastify's onResponse hook, which the
  // statistics routes do without (it costs a hit two listeners per response).
  app.register(async (ops) => {
    ops.addHook('onRequest', async (request, reply) => {
      ownAnswerHeaders(reply, request);
      // /metrics and /admin/ read request.headers.authorization, which holds only the first of several.
      authorizationOf(request.raw);
    });
    ops.addHook('onResponse', async (request, reply) => {
      const length = reply.getHeader('content-length');
      accessLog.other(request, reply.statusCode, length === undefined ? undefined : Number(length));
    });
    /** "The process is alive": for a container's HEALTHCHECK, which should restart it only if it is not. */
    ops.route({
      method: ['GET', 'HEAD'],
      url: '/healthz',
      handler: async (_request, reply) => reply.send({ status: 'ok', entries: store.entries, bytes: store.bytes, upstream: budget.snapshot() }),
    });
    /** "Send me requests": 503 while starting, draining or without a usable store; Deskie's state is shown, never failed on. */
    ops.route({
      method: ['GET', 'HEAD'],
      url: '/readyz',
      handler: async (_request, reply) => {
        const { ready, status } = readiness.check(store);
        const last = upstream.lastAnswer;
        return reply.code(ready ? 200 : 503).send({
          status,
          store: { usable: store.usable, entries: store.entries, bytes: store.bytes, maxBytes: storeMaxBytes, ...(store.shared === undefined ? {} : { shared: store.shared }) },
          upstream: {
            ...budget.snapshot(),
            lastAnswer: last === null ? null : { status: last.status, failure: last.failure, at: new Date(last.atMs).toISOString() },
          },
        });
      },
    });
    const metricsAllowed = config.metricsToken === undefined ? undefined : bearerMatcher(config.metricsToken);
    ops.get('/metrics', async (request, reply) => {
      if (metricsAllowed !== undefined && !metricsAllowed(request.headers.authorization)) {
        return reply.code(401).header('www-authenticate', 'Bearer realm="metrics"').type(JSON_TYPE).send(errorBody('a bearer token is required: METRICS_TOKEN'));
      }
      return reply.type(metrics.contentType).send(await metrics.text());
    });
    if (config.adminToken !== undefined) {
      adminRoutes(ops, {
        token: config.adminToken,
        store,
        stats,
        queryContext: { ...queryContext, proxyParameters: PROXY_PARAMETERS },
        clock,
        log,
        serviceAuthorization: access.mode === 'service' ? access.authorization : undefined,
      });
    }
    docsRoutes(ops);
  });

  app.setNotFoundHandler((request, reply) => {
    const error = notFound(`no route ${request.method} ${request.url.split('?')[0]}; this server answers GET and HEAD on ${ROUTE_LIST}`);
    const body = errorBody(error.message);
    ownAnswerHeaders(reply, request).code(error.statusCode).type(JSON_TYPE).send(body);
    accessLog.other(request, error.statusCode, Buffer.byteLength(body));
    return reply;
  });

  app.setErrorHandler((error: FastifyError | ProxyError | UpstreamAnswer, request, reply) => {
    const answered = answerError(error, request, reply);
    // The statistics routes log their own lines (the other routes' hook logs theirs).
    const endpoint = request.routeOptions.config.endpoint;
    if (endpoint !== undefined) {
      const status = reply.statusCode;
      metrics.count(request.metricsBase ?? ProxyMetrics.requestBase(endpoint, undefined), 'error', status);
      if ((error as ProxyError).remembered) metrics.countRemembered(endpoint);
      accessLog.answered(request.statsLog, request, 'error', status, answered.bytes);
    }
    return answered.reply;
  });

  /** Sends the JSON error for `error`: Deskie's own answer as it came, ours in our shape. */
  function answerError(
    error: FastifyError | ProxyError | UpstreamAnswer,
    request: FastifyRequest,
    reply: FastifyReply,
  ): { reply: FastifyReply; bytes: number } {
    ownAnswerHeaders(reply, request);
    const send = (status: number, body: string | Buffer, type: string = JSON_TYPE) => ({
      reply: reply.code(status).type(type).send(body),
      bytes: typeof body === 'string' ? Buffer.byteLength(body) : body.length,
    });
    if (error instanceof UpstreamAnswer || error instanceof ProxyError) {
      const cacheStatus = errorCacheStatus(error);
      if (cacheStatus !== undefined) reply.header('cache-status', cacheStatus);
    }
    if (error instanceof UpstreamAnswer) {
      // Deskie's own answer, passed through as it came and never stored.
      if (error.retryAfterSeconds !== undefined) reply.header('retry-after', String(error.retryAfterSeconds));
      return send(error.statusCode, error.body, error.contentType ?? JSON_TYPE);
    }
    if (error instanceof ProxyError) {
      // The budget logs its own changes of state; its refusals would be a line per request.
      const quiet = error.remembered || error.code === 'UPSTREAM_BUSY' || error.code === 'SHUTTING_DOWN';
      if (error.statusCode >= 500) log[quiet ? 'debug' : 'warn']({ reqId: request.id, code: error.code }, error.message);
      reply.headers(error.headers);
      return send(error.statusCode, errorBody(error.message));
    }
    const status = error.statusCode ?? 500;
    if (status < 500) return send(status, errorBody(error.message));
    log.error({ reqId: request.id, err: error }, 'unexpected error');
    return send(500, errorBody('internal error'));
  }

  // Waiting calls are refused and no refresh starts; refreshes under way
  // finish (bounded by the upstream timeout) before the pool closes.
  app.addHook('onClose', async () => {
    readiness.startDraining();
    budget.close();
    await stats.close();
    await Promise.all([client.close(), store.close()]);
    await redis?.close();
  });

  return app;
}
