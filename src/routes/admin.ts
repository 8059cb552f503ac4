import type { FastifyBaseLogger, FastifyInstance } from 'fastify';
import type { CachedStats } from '../cache/cached-stats.js';
import type { AnswerStore } from '../cache/store.js';
import type { QueryContext } from '../deskie/query.js';

export interface AdminRouteOptions {
  /** ADMIN_TOKEN: every admin request must carry it as a bearer token. */
  readonly token: string;
  readonly store: AnswerStore;
  readonly stats: CachedStats;
  /** What the stats routes check queries with, for prewarm's queries. */
  readonly queryContext: Omit<QueryContext, 'nowMs'>;
  readonly clock: () => number;
  readonly log: FastifyBaseLogger;
}

/** The admin API under /admin/ (registered only when ADMIN_TOKEN is set). */
export function adminRoutes(_app: FastifyInstance, _options: AdminRouteOptions): void {}
