import { once } from 'node:events';
import type { FastifyInstance } from 'fastify';
import { pino } from 'pino';
import t, { type Test } from 'tap';
import { request } from 'undici';
import { buildApp } from '../../src/app.js';
import { MemoryStore } from '../../src/cache/memory-store.js';
import { RedisStore } from '../../src/cache/redis-store.js';
import type { AnswerStore, CachedAnswer } from '../../src/cache/store.js';
import { loadConfig } from '../../src/config/config.js';
import { SharedRedis } from '../../src/redis/connection.js';
import { startSimulator } from '../../src/simulator/index.js';
import { eventually } from '../helpers/eventually.js';
import { latch } from '../helpers/latch.js';
import { redisSkip, startRedis, type TestRedis } from '../helpers/redis.js';
import { DEMO, ManualClock, type Stack, startStack, until } from '../helpers/stack.js';
import { answerOf, textOf } from './store-contract.js';

const TOKEN = 'admin-token-0123456789';
const TODAY = '/api/stats_leaderboard.json?period=today';
const SATISFACTION_TODAY = '/api/stats_satisfaction.json?period=today';
/** Deskie's lifetime for `today`. */
const TODAY_LIFETIME_MS = 300_000;
const MIB = 1024 * 1024;
const quiet = pino({ enabled: false });

const purge = async (url: string, filter: string): Promise<{ status: number; removed: number }> => {
  const response = await request(`${url}/admin/entries?${filter}`, { method: 'DELETE', headers: { authorization: `Bearer ${TOKEN}` } });
  const { removed } = (await response.body.json()) as { removed: number };
  return { status: response.statusCode, removed };
};
const cacheStatus = (answer: { headers: Record<string, string | string[] | undefined> }): string => String(answer.headers['cache-status']);

/** Starts `paths` while Deskie holds its answers, and waits until each call has reached it. */
async function underWay(stack: Stack, paths: readonly string[]) {
  stack.simulator.hold();
  const pending = paths.map((path) => stack.get(path));
  await until(() => stack.simulator.held === paths.length);
  return pending;
}

t.test('memory store: a purge made while a load runs', async (t) => {
  t.test('of all: the load answers its client without being stored, and the next request asks Deskie again', async (t) => {
    // Deskie's cache off: the numbers changed after the purge show at the next call.
    const stack = await startStack(t, { env: { ADMIN_TOKEN: TOKEN }, simulator: { knobs: { deskieCache: false } } });
    const [pending] = await underWay(stack, [TODAY]);
    t.same(await purge(stack.proxyUrl, 'all=true'), { status: 200, removed: 0 }, 'nothing was stored yet');
    stack.simulator.release();
    const before = await pending!;
    stack.simulator.changeNumbers();
    t.equal(before.status, 200, 'the client whose call was under way gets its answer: it was fetched for them');
    t.match(cacheStatus(before), /^deskie-stats-proxy; fwd=miss; ttl=\d+$/, 'Cache-Status does not say stored');
    const after = await stack.get(TODAY);
    t.match(cacheStatus(after), /^deskie-stats-proxy; fwd=miss; stored; ttl=\d+$/, 'the next request is a miss');
    t.not(after.text, before.text, "with Deskie's numbers from after the purge");
    t.equal(stack.simulator.calls, 2);
    t.match(cacheStatus(await stack.get(TODAY)), /; hit;/, 'which are kept');
  });

  t.test('of a period: a refresh it keeps out does not tell its client stored', async (t) => {
    const stack = await startStack(t, { env: { ADMIN_TOKEN: TOKEN } });
    await stack.get(TODAY);
    stack.clock.advance(TODAY_LIFETIME_MS);
    const [pending] = await underWay(stack, [TODAY]);
    t.same(await purge(stack.proxyUrl, 'period=today'), { status: 200, removed: 1 }, 'the expired entry the refresh replaces is removed');
    stack.simulator.release();
    const refreshed = await pending!;
    t.equal(refreshed.status, 200);
    t.match(cacheStatus(refreshed), /^deskie-stats-proxy; fwd=stale; ttl=\d+$/, 'the refresh answers without "stored"');
    t.match(cacheStatus(await stack.get(TODAY)), /^deskie-stats-proxy; fwd=miss; stored;/, 'and nothing was kept of it');
    t.equal(stack.simulator.calls, 3);
  });

  t.test('by a filter: only the loads whose answer it selects are kept out', async (t) => {
    const stack = await startStack(t, { env: { ADMIN_TOKEN: TOKEN } });
    // Accepted once, the credential's calls are no longer one at a time (the new-credential share).
    await stack.get('/api/stats_leaderboard.json?period=yesterday');
    const [leaderboard, satisfaction] = await underWay(stack, [TODAY, SATISFACTION_TODAY]);
    t.same(await purge(stack.proxyUrl, 'endpoint=stats_satisfaction'), { status: 200, removed: 0 });
    stack.simulator.release();
    t.match(cacheStatus(await leaderboard!), /fwd=miss; stored/, 'the leaderboard, not selected, is stored');
    t.match(cacheStatus(await satisfaction!), /^deskie-stats-proxy; fwd=miss; ttl=/, 'the satisfaction answer is not');
    t.match(cacheStatus(await stack.get(TODAY)), /; hit;/);
    t.match(cacheStatus(await stack.get(SATISFACTION_TODAY)), /fwd=miss; stored/);
    t.equal(stack.simulator.calls, 4);
  });

  t.test('the store: a load under way when purged answers its callers, purged and not stored', async (t) => {
    const now = 1_000_000;
    const store = new MemoryStore({ maxBytes: 16 * MIB, clock: () => now });
    t.teardown(() => store.close());
    await purgedWhileLoading(t, store, store, now);
  });
});

/**
 * `a` loads `k` (leaderboard) and `s` (satisfaction) slowly; `b` purges
 * satisfaction meanwhile, once `a` has heard of it (its copy of another
 * satisfaction answer is gone): only `k` is stored, for `a` and `b` alike.
 */
async function purgedWhileLoading(t: Test, a: AnswerStore, b: AnswerStore, now: number): Promise<void> {
  const satisfaction = (key: string, body: string): CachedAnswer => {
    const answer = answerOf(key, Buffer.from(body), now, 60_000);
    return { ...answer, source: { ...answer.source, endpoint: 'satisfaction' } };
  };
  await a.fetch('old', async () => satisfaction('old', '{"n":0}'));
  const { opened: gate, open: release } = latch();
  const k = a.fetch('k', async () => (await gate, answerOf('k', Buffer.from('{"n":1}'), now, 60_000)));
  const s = a.fetch('s', async () => (await gate, satisfaction('s', '{"n":2}')));
  t.equal(await b.purge({ endpoint: 'satisfaction' }), 1, 'the one satisfaction answer held is removed');
  t.ok(await eventually(() => a.get('old') === undefined), 'a has heard of the purge');
  release();
  t.match(await s, { outcome: 'miss', stored: false, purged: true }, 'the selected load answers, marked purged and not stored');
  t.equal(textOf((await s).answer), '{"n":2}');
  t.match(await k, { outcome: 'miss', stored: true }, 'the other load is stored');
  t.ok(await eventually(async () => (await b.peek('k')) !== undefined), 'and held for every caller');
  t.equal(await a.peek('s'), undefined, 'the purged one is held nowhere');
  t.equal(await b.peek('s'), undefined);
}

/** A replica's store on its own connection to `redis`, closed when the test ends. */
async function redisStore(t: Test, redis: TestRedis, prefix: string, clock: () => number): Promise<{ store: RedisStore; shared: SharedRedis }> {
  const shared = new SharedRedis({ url: redis.url, prefix, timeoutMs: 250, log: quiet });
  t.teardown(() => shared.close());
  if (shared.state !== 'up') await once(shared.command, 'ready');
  if (shared.subscriber.status !== 'ready') await once(shared.subscriber, 'ready');
  const store = new RedisStore({ redis: shared, l1MaxBytes: 16 * MIB, clock, log: quiet, longestLoadMs: 10_000 });
  t.teardown(() => store.close());
  return { store, shared };
}

/** A proxy on `redis` with the admin API, on `clock`; its URL. */
async function replica(t: Test, redis: TestRedis, deskieUrl: string, clock: ManualClock): Promise<string> {
  const config = loadConfig({ REDIS_URL: redis.url, CACHE_KEY_SECRET: 'one-secret-for-every-replica', DESKIE_URL: deskieUrl, ADMIN_TOKEN: TOKEN });
  const app: FastifyInstance = buildApp({ ...config, deskieUrl }, { clock: clock.now });
  await app.listen({ port: 0, host: '127.0.0.1' });
  t.teardown(() => app.close());
  const address = app.server.address();
  const url = `http://127.0.0.1:${typeof address === 'object' && address !== null ? address.port : 0}`;
  t.ok(await eventually(async () => ((await (await request(`${url}/readyz`)).body.json()) as { store: { shared: { redis: string } } }).store.shared.redis === 'up'));
  return url;
}

const get = async (url: string, path: string): Promise<{ status: number; text: string; headers: Record<string, string | string[] | undefined> }> => {
  const response = await request(`${url}${path}`, { headers: { authorization: DEMO } });
  return { status: response.statusCode, text: await response.body.text(), headers: response.headers };
};

t.test('Redis store: a purge made while a load runs', redisSkip(), async (t) => {
  const redis = await startRedis(t);
  let namespaces = 0;

  t.test("on another replica: the load's answer is stored neither in Redis nor on any replica", async (t) => {
    const clock = new ManualClock(Date.parse('2026-11-28T12:00:00Z'));
    // Deskie's cache off: the numbers changed after the purge show at the next call.
    const simulator = await startSimulator({ users: { 'demo@example.com': 'demo' }, knobs: { deskieCache: false } });
    t.teardown(() => simulator.close());
    const a = await replica(t, redis, simulator.url, clock);
    const b = await replica(t, redis, simulator.url, clock);
    simulator.hold();
    const pending = get(a, TODAY);
    await until(() => simulator.held === 1);
    t.same(await purge(b, 'all=true'), { status: 200, removed: 0 }, 'nothing was stored yet');
    simulator.release();
    const before = await pending;
    simulator.changeNumbers();
    // A call made in the purge's own millisecond may have been made before it: Redis refuses its answer too.
    clock.advance(1);
    t.equal(before.status, 200, "a's client gets its answer");
    t.match(cacheStatus(before), /^deskie-stats-proxy; fwd=miss; ttl=\d+$/, 'without "stored"');
    const onB = await get(b, TODAY);
    t.match(cacheStatus(onB), /fwd=miss; stored/, 'b asks Deskie: Redis holds nothing from before the purge');
    t.not(onB.text, before.text);
    const onA = await get(a, TODAY);
    t.match(cacheStatus(onA), /; hit;/, "a answers with b's answer, from after the purge");
    t.equal(onA.text, onB.text, 'not with its own from before it');
    t.equal(simulator.calls, 2);
  });

  t.test('the store: a load under way when another replica purges answers its callers, purged and not stored', async (t) => {
    const now = 1_000_000;
    const prefix = `purge${(namespaces += 1)}:`;
    const { store: a } = await redisStore(t, redis, prefix, () => now);
    const { store: b } = await redisStore(t, redis, prefix, () => now);
    await purgedWhileLoading(t, a, b, now);
  });

  t.test("a load under way is not written even when the purge's message never reaches its replica", async (t) => {
    const now = 1_000_000;
    const prefix = `purge${(namespaces += 1)}:`;
    const { store: a } = await redisStore(t, redis, prefix, () => now);
    const { store: b, shared } = await redisStore(t, redis, prefix, () => now);
    const { opened: gate, open: release } = latch();
    const late = a.fetch('k', async () => (await gate, answerOf('k', Buffer.from('{"n":1}'), now, 60_000)));
    // Every subscriber connection drops at once: the purge below is published to nobody.
    await shared.command.call('CLIENT', 'KILL', 'TYPE', 'pubsub');
    t.equal(await b.purge({ endpoint: 'leaderboard' }), 0);
    release();
    t.equal(textOf((await late).answer), '{"n":1}', "a's caller gets its answer");
    // a lets its lease go once it has tried the write.
    t.ok(await eventually(async () => (await shared.command.exists(shared.key('lease:k'))) === 0), "a's load has ended");
    t.equal(await b.peek('k'), undefined, "the purge's marker in Redis refused the write");
    await b.fetch('k', async () => answerOf('k', Buffer.from('{"n":2}'), now + 1, 60_000));
    t.ok(await eventually(async () => (await shared.command.exists(shared.key('a:k'))) === 1), 'an answer from a call made after the purge is stored as usual');
  });

  t.test("a purge Redis cannot take is a 503 that does not pass for the cluster's, though this replica's copies go", async (t) => {
    const own = await startRedis(t);
    const now = 1_000_000;
    const { store, shared } = await redisStore(t, own, 'down:', () => now);
    await store.fetch('k', async () => answerOf('k', Buffer.from('{"n":1}'), now, 60_000));
    await own.stop();
    t.ok(await eventually(() => shared.state === 'down'), 'the loss is noticed');
    await t.rejects(store.purge({}), { statusCode: 503, message: /cannot be purged/ });
    t.equal(store.get('k'), undefined, "this replica's copy is dropped");
  });
});
