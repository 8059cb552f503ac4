import type { FastifyInstance } from 'fastify';
import t, { type Test } from 'tap';
import { request } from 'undici';
import { buildApp } from '../src/app.js';
import { loadConfig } from '../src/config/config.js';
import { eventually } from './helpers/eventually.js';
import { startSimulator, type Simulator } from '../src/simulator/index.js';
import { redisSkip, startRedis } from './helpers/redis.js';
import { ManualScheduler } from './helpers/scheduler.js';
import { DEMO, ManualClock } from './helpers/stack.js';

/**
 * Two replicas in this process, on one Redis and one clock the test moves:
 * what the answers' freshness and the credentials' standing do across
 * replicas, which separate processes (cluster.test.ts) cannot show without
 * waiting for real minutes.
 */
async function replicas(t: Test) {
  const redis = await startRedis(t);
  const clock = new ManualClock(Date.parse('2026-11-28T12:00:00Z'));
  const schedulers: ManualScheduler[] = [];
  const simulator: Simulator = await startSimulator({ users: { 'demo@example.com': 'demo' } });
  t.teardown(() => simulator.close());
  const start = async (): Promise<(path: string) => Promise<{ status: number; cacheStatus: string }>> => {
    const config = loadConfig({ REDIS_URL: redis.url, CACHE_KEY_SECRET: 'one-secret-for-every-replica', DESKIE_URL: simulator.url });
    const scheduler = new ManualScheduler(clock);
    schedulers.push(scheduler);
    const app: FastifyInstance = buildApp({ ...config, deskieUrl: simulator.url }, { clock: clock.now, scheduler });
    await app.listen({ port: 0, host: '127.0.0.1' });
    t.teardown(() => app.close());
    const address = app.server.address();
    const url = `http://127.0.0.1:${typeof address === 'object' && address !== null ? address.port : 0}`;
    for (let attempt = 0; attempt < 200; attempt += 1) {
      const ready = (await (await request(`${url}/readyz`)).body.json()) as { store: { shared: { redis: string } } };
      if (ready.store.shared.redis === 'up') break;
      await new Promise((resolve) => setTimeout(resolve, 10));
    }
    return async (path) => {
      const response = await request(`${url}${path}`, { headers: { authorization: DEMO } });
      await response.body.dump();
      return { status: response.statusCode, cacheStatus: String(response.headers['cache-status']) };
    };
  };
  /** Moves the clock and runs what each replica has due. */
  const advance = (ms: number): void => {
    clock.advance(ms);
    for (const scheduler of schedulers) scheduler.runDue();
  };
  return { clock, advance, simulator, a: await start(), b: await start() };
}


const TODAY = '/api/stats_leaderboard.json?period=today';
const YESTERDAY = '/api/stats_leaderboard.json?period=yesterday';

t.test('replicas in one process on one Redis', redisSkip(), async (t) => {
  t.test('a key asked for on both replicas is refreshed once for the cluster when Deskie\'s cache expires', async (t) => {
    const { advance, simulator, a, b } = await replicas(t);
    t.match(await a(TODAY), { status: 200, cacheStatus: /fwd=miss/ });
    t.match(await b(TODAY), { status: 200, cacheStatus: /; hit/ }, "b answers with a's answer");
    advance(60_000);
    t.match(await a(TODAY), { status: 200, cacheStatus: /; hit/ }, 'asked for on each replica while fresh: each has the refresh due');
    t.equal(simulator.calls, 1);
    advance(240_999);
    await new Promise((resolve) => setTimeout(resolve, 50));
    t.equal(simulator.calls, 1, 'nothing before send + lifetime + margin');
    t.match(await b(TODAY), { status: 200, cacheStatus: /; fwd=stale; revalidating; ttl=0$/ }, 'expired, the refresh due: the answer Redis no longer serves as fresh answers at once');
    advance(1);
    t.ok(await eventually(() => simulator.calls === 2), 'then one call');
    await new Promise((resolve) => setTimeout(resolve, 200));
    t.equal(simulator.calls, 2, "the other replica's refresh took the lease's answer and made no call");
    advance(1_000);
    t.match(await a(TODAY), { status: 200, cacheStatus: /; hit; ttl=29\d/ }, 'a answers from the refresh');
    t.match(await b(TODAY), { status: 200, cacheStatus: /; hit; ttl=29\d/ }, 'and so does b');
    t.equal(simulator.calls, 2);
  });

  t.test("a credential Deskie refuses on one replica is not answered again from another replica's call made before", async (t) => {
    const { clock, simulator, a, b } = await replicas(t);
    simulator.hold();
    // b's call for yesterday is under way when Deskie stops accepting the credential.
    const pending = b(YESTERDAY);
    t.ok(await eventually(() => simulator.held === 1), "b's call reached Deskie");
    simulator.stopHolding();
    simulator.revoke('demo@example.com');
    t.equal((await a(TODAY)).status, 401, 'Deskie refuses the credential to a');
    simulator.release();
    t.equal((await pending).status, 200, "b's caller gets the answer its call brought");
    // Past the refusal's memory (AUTH_FAILURE_TTL_SECONDS): nothing of the credential is left to answer it.
    clock.advance(31_000);
    t.equal((await a(YESTERDAY)).status, 401, 'a asks Deskie rather than answer from the call b made before');
    t.equal((await b(YESTERDAY)).status, 401, 'and so does b');
  });
});
