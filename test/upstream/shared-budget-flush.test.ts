import t, { type Test } from 'tap';
import { Redis } from 'ioredis';
import { request } from 'undici';
import { buildApp } from '../../src/app.js';
import { loadConfig } from '../../src/config/config.js';
import { startSimulator, type Simulator } from '../../src/simulator/index.js';
import { eventually } from '../helpers/eventually.js';
import { redisSkip, startRedis, type TestRedis } from '../helpers/redis.js';
import { DEMO, ManualClock } from '../helpers/stack.js';

/**
 * Three replicas in this process on one Redis, one Deskie simulator and one
 * clock the test moves: the budget's minute across replicas when Redis loses
 * the budget's keys while it keeps answering (a FLUSHALL, an eviction).
 */
const LIMIT = 10;
const PREFIX = 'flush-test:';
const LOG_KEY = `${PREFIX}v1:budget:log`;
const staffStatuses = (page: number): string => `/api/stats_staff_statuses.json?period=today&page=${page}`;

interface Cluster {
  readonly simulator: Simulator;
  readonly clock: ManualClock;
  readonly admin: Redis;
  /** Asks replica `index % 3` for `path`: the status it answered. */
  get(index: number, path: string): Promise<number>;
}

async function cluster(t: Test, redis: TestRedis): Promise<Cluster> {
  const clock = new ManualClock(Date.parse('2026-11-28T12:00:00Z'));
  const simulator = await startSimulator({ users: { 'demo@example.com': 'demo' } });
  t.teardown(() => simulator.close());
  const config = loadConfig({
    REDIS_URL: redis.url,
    REDIS_PREFIX: PREFIX,
    CACHE_KEY_SECRET: 'one-secret-for-every-replica',
    DESKIE_URL: simulator.url,
    UPSTREAM_RATE_PER_MIN: String(LIMIT),
    // A call the minute has no room for is refused after this long, not after the default 10 s.
    UPSTREAM_QUEUE_MS: '300',
  });
  const urls: string[] = [];
  for (let replica = 0; replica < 3; replica += 1) {
    const app = buildApp({ ...config, deskieUrl: simulator.url }, { clock: clock.now });
    await app.listen({ port: 0, host: '127.0.0.1' });
    t.teardown(() => app.close());
    const address = app.server.address();
    urls.push(`http://127.0.0.1:${typeof address === 'object' && address !== null ? address.port : 0}`);
  }
  const sharing = async (url: string): Promise<string> => {
    const ready = (await (await request(`${url}/readyz`)).body.json()) as { upstream: { sharing: unknown } };
    return JSON.stringify(ready.upstream.sharing);
  };
  // Each replica counts the others at its heartbeat (every 5 s of real time): a lost log waits for as many as it has seen.
  const allSeen = await eventually(async () => (await Promise.all(urls.map(sharing))).every((seen) => seen === '{"mode":"redis","replicas":3}'), 12_000);
  if (!allSeen) throw new Error('the three replicas never saw each other in Redis');
  const admin = new Redis(redis.url);
  t.teardown(() => admin.disconnect());
  return {
    simulator,
    clock,
    admin,
    async get(index, path) {
      const response = await request(`${urls[index % urls.length] as string}${path}`, { headers: { authorization: DEMO } });
      await response.body.dump();
      return response.statusCode;
    },
  };
}

/** Ten distinct queries spread over the three replicas: the whole minute's limit. */
async function spendTheMinute(t: Test, { simulator, get }: Cluster): Promise<void> {
  const statuses = await Promise.all(Array.from({ length: LIMIT }, (_, index) => get(index, staffStatuses(index + 1))));
  t.same(statuses, Array.from({ length: LIMIT }, () => 200), 'ten queries answered');
  t.equal(simulator.calls, LIMIT, 'with ten calls to Deskie: the minute is spent');
}

/** Nineteen new queries in the same minute across the three: none may reach Deskie. Then the next minute opens. */
async function nothingMoreThisMinute(t: Test, { simulator, clock, get }: Cluster): Promise<void> {
  const statuses = await Promise.all(Array.from({ length: 19 }, (_, index) => get(index, staffStatuses(LIMIT + 1 + index))));
  t.equal(simulator.calls, LIMIT, 'no call beyond the ten reached Deskie within the minute');
  t.same(new Set(statuses), new Set([503]), 'the nineteen were refused, to be retried');
  clock.advance(60_000);
  t.equal(await get(0, staffStatuses(100)), 200, 'once the minute has passed, calls go out again');
  t.equal(simulator.calls, LIMIT + 1);
}

t.test('the shared budget after Redis loses its keys', redisSkip(), async (t) => {
  t.test('after a FLUSHALL the three replicas together still send at most the limit in the minute', async (t) => {
    const redis = await startRedis(t);
    const replicas = await cluster(t, redis);
    await spendTheMinute(t, replicas);
    await replicas.admin.flushall();
    await nothingMoreThisMinute(t, replicas);
  });

  t.test('after an allkeys-lru Redis evicts the log while another tenant writes, the replicas still send at most the limit', async (t) => {
    const redis = await startRedis(t);
    const replicas = await cluster(t, redis);
    await spendTheMinute(t, replicas);
    const { admin } = replicas;
    const used = Number(/used_memory:(\d+)/.exec(await admin.info('memory'))?.[1]);
    await admin.config('SET', 'maxmemory-policy', 'allkeys-lru');
    await admin.config('SET', 'maxmemory', String(used + 1024 * 1024));
    const value = 'x'.repeat(1024);
    let written = 0;
    // Another tenant fills Redis until the budget's log is the key evicted (bounded: 64 MiB of writes).
    while ((await admin.exists(LOG_KEY)) === 1 && written < 65_536) {
      const batch = admin.pipeline();
      for (let key = 0; key < 256; key += 1) batch.set(`tenant:${(written += 1)}`, value);
      await batch.exec();
    }
    t.equal(await admin.exists(LOG_KEY), 0, `the log was evicted after ${written} keys of another tenant`);
    await nothingMoreThisMinute(t, replicas);
  });
});
