import { LRUCache } from 'lru-cache';
import type { FastifyBaseLogger } from 'fastify';
import { clientAccess, readTokenFile } from './auth/clients.js';
import { CachedStats, type CachedStatsOptions } from './cache/cached-stats.js';
import { MemoryStore } from './cache/memory-store.js';
import { RedisStore } from './cache/redis-store.js';
import { type Scheduler, timerScheduler } from './cache/scheduler.js';
import type { AnswerStore } from './cache/store.js';
import type { Config } from './config/config.js';
import { PeriodWindows } from './deskie/periods.js';
import { cutAtShutdown } from './http/errors.js';
import type { ResolvedWindow } from './deskie/query.js';
import { ProxyMetrics } from './observability/metrics.js';
import { Readiness } from './observability/readiness.js';
import { type EventStreamLimits, EventStreams } from './routes/stream.js';
import { SharedRedis } from './redis/connection.js';
import { UpstreamBudget } from './upstream/budget/budget.js';
import { SharedBudget } from './upstream/budget/shared.js';
import { DeskieClient } from './upstream/client.js';
import { DeskieUpstream } from './upstream/deskie.js';

/** Custom ranges whose parsing is remembered: about 2 kB of luxon DateTimes each; dashboards use a few. */
const REMEMBERED_RANGES = 256;

export interface ServiceOptions {
  /** Epoch milliseconds; tests inject a clock they move by hand. */
  readonly clock: () => number;
  readonly log: FastifyBaseLogger;
  /** Defaults to an in-memory store bounded by config.cacheMaxBytes (or Redis with REDIS_URL). */
  readonly store?: AnswerStore;
  /** Runs refreshes when due on `clock`; defaults to timers. Tests inject one they fire as they move the clock. */
  readonly scheduler?: Scheduler;
}

/** The long-lived objects of one proxy, built from its config; close() ends them in order. */
export type Services = ReturnType<typeof buildServices>;

export function buildServices(config: Config & { readonly deskieUrl: string }, { clock, log, store: givenStore, scheduler }: ServiceOptions) {
  const client = new DeskieClient({
    baseUrl: config.deskieUrl,
    timeoutMs: config.upstreamTimeoutMs,
    maxBodyBytes: config.upstreamMaxBodyBytes,
    connections: config.upstreamConnections,
  });
  // With REDIS_URL, replicas share answers (and the budget) through Redis; this process keeps fresh copies in L1.
  const redis = config.redis === undefined ? undefined : new SharedRedis({ ...config.redis, log });
  const store = givenStore ?? storeFor(config, { clock, log, redis });
  const budget = new UpstreamBudget({
    ratePerMinute: config.upstreamRatePerMin,
    reserve: config.upstreamReserve,
    concurrency: config.upstreamConcurrency,
    newCredentialShare: config.upstreamNewCredentialShare,
    queueLength: config.upstreamQueueLength,
    clock,
    log,
    // The account's limit is one across replicas: its minute, pause and circuit are kept in Redis.
    shared: redis === undefined ? undefined : new SharedBudget({ redis, clock, log }),
  });
  const { access } = config;
  const { authenticate, tokens } = clientAccess(access);
  const storeMaxBytes = config.redis?.l1MaxBytes ?? config.cacheMaxBytes;
  const metrics = new ProxyMetrics({ store, budget, maxBytes: storeMaxBytes, ...(tokens === undefined ? {} : { clientTokens: () => tokens.names.length }) });
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
  const windows = new PeriodWindows(config.timezone, config.weekStart);
  const timers = scheduler ?? timerScheduler(clock);
  const stats = cachedStatsFor(config, { store, upstream, clock, scheduler: timers, windows, log });
  const streams = new EventStreams({ stats, clock, scheduler: timers, metrics, log, ...streamLimits(config) });
  const tokenFile = access.mode === 'service' && access.clients !== 'none' ? access.clients.file : undefined;
  return {
    clock,
    store,
    /** Bytes the store may hold in this process. */
    storeMaxBytes,
    budget,
    upstream,
    stats,
    streams,
    metrics,
    readiness: new Readiness(),
    authenticate,
    /** What checks a statistics query: the account's period windows, remembered ranges, the operator's extra parameters. */
    queryContext: {
      windows,
      ranges: new LRUCache<string, ResolvedWindow>({ max: REMEMBERED_RANGES }),
      extraParameters: config.extraParameters,
    },
    /** Reads PROXY_TOKENS_FILE again and swaps the client tokens; undefined unless the tokens come from a file. */
    reloadClientTokens:
      tokens === undefined || tokenFile === undefined
        ? undefined
        : () => {
            tokens.replace(readTokenFile(tokenFile, { allowEmpty: true }));
            return { clients: tokens.names };
          },
    /** Ends every wait for Deskie, just before SHUTDOWN_TIMEOUT_MS runs out: each request still waiting is answered. */
    cutUpstream() {
      budget.close(cutAtShutdown);
      client.abortAll(cutAtShutdown());
    },
    // Waits refused, no refresh starts; refreshes under way end (within the upstream timeout) before the pool closes.
    async close() {
      streams.closeAll();
      budget.close();
      await stats.close();
      await Promise.all([client.close(), store.close()]);
      await redis?.close();
    },
  };
}

/** The cached answers, refreshed in phase with Deskie's cache on `scheduler`. */
function cachedStatsFor(
  config: Config,
  parts: Pick<CachedStatsOptions, 'store' | 'upstream' | 'clock' | 'scheduler' | 'windows' | 'log'>,
): CachedStats {
  return new CachedStats({
    ...parts,
    lifetimes: config.lifetimes,
    keeping: { staleIfErrorMs: config.staleIfErrorSeconds * 1000, refreshMarginMs: config.refreshMarginMs },
    staleWhileRevalidateMs: config.staleWhileRevalidateSeconds * 1000,
    authFailureTtlMs: config.authFailureTtlSeconds * 1000,
    authRecheckMs: config.authRecheckSeconds * 1000,
    turnWaitMs: config.upstreamQueueMs,
    cacheKeySecret: config.cacheKeySecret,
  });
}

function streamLimits(config: Config): EventStreamLimits {
  return { maxStreams: config.sseMaxStreams, maxStreamsPerClient: config.sseMaxStreamsPerClient, maxBufferBytes: config.sseMaxBufferBytes };
}

function storeFor(config: Config, { clock, log, redis }: { clock: () => number; log: FastifyBaseLogger; redis: SharedRedis | undefined }): AnswerStore {
  if (redis === undefined || config.redis === undefined) return new MemoryStore({ maxBytes: config.cacheMaxBytes, clock });
  return new RedisStore({
    redis,
    l1MaxBytes: config.redis.l1MaxBytes,
    clock,
    log,
    longestLoadMs: config.upstreamQueueMs + config.pageAllTimeoutMs + config.upstreamTimeoutMs,
  });
}
