import Type from 'typebox';
import type { FastifyInstance, FastifySchema } from 'fastify';
import { tokenMatcher } from '../auth/bearer.js';
import { authorizationOf } from '../auth/header.js';
import { unauthorized } from '../http/errors.js';
import type { Services } from '../services.js';

export interface OpsRouteOptions
  extends Pick<Services, 'store' | 'storeMaxBytes' | 'budget' | 'upstream' | 'readiness' | 'metrics'> {
  readonly metricsToken: string | undefined;
}

/** The upstream budget's state as /healthz and /readyz show it (UpstreamBudget.snapshot()). */
const Upstream = Type.Object(
  {
    limitPerMinute: Type.Integer({ description: 'Calls to Deskie allowed a minute' }),
    callsLeftThisMinute: Type.Integer(),
    state: Type.String({ description: 'ok, paused (down to the reserve) or circuit-open (after a 429)' }),
    inFlight: Type.Integer(),
    queued: Type.Integer(),
  },
  { additionalProperties: true },
);

const Store = Type.Object({ entries: Type.Integer(), bytes: Type.Integer() }, { additionalProperties: true });

const Health = Type.Object({ status: Type.Literal('ok'), entries: Type.Integer(), bytes: Type.Integer(), upstream: Upstream });

const Readyz = Type.Object({
  status: Type.String({ description: 'ready, starting, draining or store-unusable' }),
  store: Store,
  upstream: Type.Intersect([
    Upstream,
    Type.Object({
      lastAnswer: Type.Union([
        Type.Null(),
        Type.Object({ status: Type.Union([Type.Integer(), Type.Null()]), failure: Type.Union([Type.String(), Type.Null()]), at: Type.String({ format: 'date-time' }) }),
      ]),
    }),
  ]),
});

/** Never cached or forwarded: /healthz for a container's HEALTHCHECK, /readyz for a load balancer (Readiness). */
export async function opsRoutes(app: FastifyInstance, options: OpsRouteOptions): Promise<void> {
  const { store, storeMaxBytes, budget, upstream, readiness, metrics } = options;
  app.route({
    method: ['GET', 'HEAD'],
    url: '/healthz',
    schema: { summary: 'The process is alive', tags: ['operations'], response: { 200: Health } },
    handler: async () => ({ status: 'ok' as const, entries: store.entries, bytes: store.bytes, upstream: budget.snapshot() }),
  });

  app.route({
    method: ['GET', 'HEAD'],
    url: '/readyz',
    schema: { summary: 'Send this replica requests', tags: ['operations'], response: { 200: Readyz, 503: Readyz } },
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

  const allowed = options.metricsToken === undefined ? undefined : tokenMatcher(options.metricsToken);
  const metricsSchema: FastifySchema = {
    summary: 'Prometheus metrics',
    tags: ['operations'],
    // Open, or the token when METRICS_TOKEN is set (bearer, or a Basic password).
    security: [{}, { metricsToken: [] as string[] }],
  };
  app.get('/metrics', { schema: metricsSchema }, async (request, reply) => {
    if (allowed !== undefined && !allowed(authorizationOf(request.raw))) {
      throw unauthorized('a bearer token is required: METRICS_TOKEN', 'Bearer realm="metrics"');
    }
    return reply.type(metrics.contentType).send(await metrics.text());
  });
}
