import { pino } from 'pino';
import Fastify, { LogController, type FastifyBaseLogger, type FastifyInstance } from 'fastify';
import { authorizationOf } from './auth/header.js';
import type { Config } from './config/config.js';
import { parseQueryString } from './deskie/query-string.js';
import { PROXY_PARAMETERS } from './formats/representations.js';
import { answerClientError, answerFrameworkError, registerErrorReplies } from './http/error-replies.js';
import { requestIds } from './http/request-id.js';
import { registerAccessLog } from './observability/access-log.js';
import type { Readiness } from './observability/readiness.js';
import { docsRoutes, registerOpenApi } from './routes/docs.js';
import { opsRoutes } from './routes/ops.js';
import { statsRoutes } from './routes/stats.js';
import { statusRoutes } from './routes/status.js';
import { buildServices, type ServiceOptions } from './services.js';

declare module 'fastify' {
  interface FastifyInstance {
    /** What /readyz reports; server.ts starts draining on SIGTERM. */
    readiness: Readiness;
    /** Reads PROXY_TOKENS_FILE again (on SIGHUP); undefined without a file. A bad file throws TokenListError and changes nothing. */
    reloadClientTokens: (() => { readonly clients: readonly string[] }) | undefined;
    /** Ends every wait for Deskie at once (server.ts, as SHUTDOWN_TIMEOUT_MS runs out): each request waiting is answered without. */
    cutUpstream: () => void;
  }
}

export interface AppOptions extends Partial<Omit<ServiceOptions, 'log'>> {
  readonly logger?: FastifyBaseLogger;
}

/** A slow client cannot hold a connection (config/config.ts says why each bound is what it is); the bench's baseline runs with these too. */
export const serverLimits = (config: Pick<Config, 'headersTimeoutMs' | 'requestTimeoutMs' | 'keepAliveTimeoutMs' | 'connectionTimeoutMs'>) => ({
  // How often Node looks for connections past their header or request timeout (its default, 30 s, lets a slow loris linger).
  http: { headersTimeout: config.headersTimeoutMs, connectionsCheckingInterval: Math.min(1_000, Math.max(10, Math.ceil(config.headersTimeoutMs / 10))) },
  requestTimeout: config.requestTimeoutMs,
  keepAliveTimeout: config.keepAliveTimeoutMs,
  connectionTimeout: config.connectionTimeoutMs,
});

/** Builds the proxy without listening; server.ts owns the process. */
export function buildApp(config: Config & { readonly deskieUrl: string }, options: AppOptions = {}): FastifyInstance {
  const clock = options.clock ?? Date.now;
  const log = options.logger ?? pino({ enabled: false });
  const services = buildServices(config, { clock, log, store: options.store, scheduler: options.scheduler });
  const app = Fastify({
    loggerInstance: log,
    // One access line per request, written in onResponse (observability/access-log.ts).
    logController: new LogController({ disableRequestLogging: true }),
    // The client's X-Request-Id when well-formed, else one of ours; sent back on every answer.
    genReqId: requestIds(),
    // Keys are compared as Deskie's names are written; query strings are bounded and must decode.
    routerOptions: { ignoreTrailingSlash: false, caseSensitive: true, querystringParser: parseQueryString },
    // The statistics routes declare HEAD themselves (see routes/stats.ts).
    exposeHeadRoutes: false,
    // Requests that come once closing get the proxy's own 503 (http/error-replies.ts).
    return503OnClosing: false,
    // X-Forwarded-For is a client's to write: believed only from the proxies TRUST_PROXY names.
    trustProxy: typeof config.trustProxy === 'boolean' ? config.trustProxy : [...config.trustProxy],
    ...serverLimits(config),
    clientErrorHandler: (error, socket) => answerClientError(log, error, socket),
    frameworkErrors: answerFrameworkError,
  });
  // No route but the admin API's prewarm takes a body, and it declares its own parser.
  app.removeAllContentTypeParsers();
  app.addContentTypeParser('*', (_request, _payload, done) => done(null, undefined));

  let closing = false;
  app.addHook('preClose', (done) => {
    closing = true;
    // Open event streams would keep their connections, and the server's close, waiting for ever.
    services.streams.closeAll();
    done();
  });
  registerErrorReplies(app, { log, metrics: services.metrics, isClosing: () => closing });
  registerAccessLog(app);
  app.decorate('readiness', services.readiness);
  app.decorate('reloadClientTokens', services.reloadClientTokens);
  app.decorate('cutUpstream', services.cutUpstream);
  app.addHook('onReady', async () => services.readiness.markReady());
  app.addHook('onClose', async () => {
    services.readiness.startDraining();
    await services.close();
  });

  const { access } = config;
  for (const name of config.retiredSettings) {
    log.warn({ setting: name }, `${name} is retired and ignored: refreshes now go just after Deskie's own cache expires (REFRESH_MARGIN_MS, STALE_WHILE_REVALIDATE_SECONDS; see docs/freshness.md)`);
  }
  if (access.mode === 'service' && access.clients === 'none') {
    log.warn('PROXY_AUTH=none: any client that reaches this server gets the statistics of the Deskie account, without a token');
  }
  // Before the routes: the document describes every route registered after it.
  registerOpenApi(app);
  app.register(statsRoutes, {
    ...services,
    clientAuth: access.mode === 'pass-through' ? 'deskie' : access.clients === 'none' ? 'none' : 'clientToken',
  });
  app.register(opsRoutes, { ...services, metricsToken: config.metricsToken });
  app.register(statusRoutes, { ...services, metricsToken: config.metricsToken });
  const { adminToken } = config;
  if (adminToken !== undefined) {
    app.register(async (admin) => {
      // The bearer check reads request.headers.authorization, which holds only the first of several.
      admin.addHook('onRequest', async (request) => void authorizationOf(request.raw));
      // Loaded only when ADMIN_TOKEN turns the admin API on: TypeBox's compiler (and its Value) hold about 6 MiB a proxy without it never needs.
      const { adminRoutes } = await import('./routes/admin/index.js');
      adminRoutes(admin, {
        token: adminToken,
        store: services.store,
        stats: services.stats,
        queryContext: { ...services.queryContext, proxyParameters: PROXY_PARAMETERS },
        clock,
        log,
        serviceAuthorization: access.mode === 'service' ? access.authorization : undefined,
      });
    });
  }
  app.register(async (docs) => docsRoutes(docs));
  return app;
}
