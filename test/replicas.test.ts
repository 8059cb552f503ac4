import type { FastifyInstance } from 'fastify';
import t, { type Test } from 'tap';
import { request } from 'undici';
import { buildApp } from '../src/app.js';
import { loadConfig } from '../src/config/config.js';
import { eventually } from './helpers/eventually.js';
import { startSimulator, type Simulator } from '../src/simulator/index.js';
import { redisSkip, startRedis } from './helpers/redis.js';
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
  const simulator: Simulator = await startSimulator({ users: { 'demo@example.com': 'demo' } });
  t.teardown(() => simulator.close());
  const start = async (): Promise<(path: string) => Promise<{ status: number; cacheStatus: string }>> => {
    const config = loadConfig({ REDIS_URL: redis.url, CACHE_KEY_SECRET: 'one-secret-for-every-replica', DESKIE_URL: simulator.url });
    const app: FastifyInstance = buildApp({ ...config, deskieUrl: simulator.url }, { clock: clock.now });
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
  return { clock, simulator, a: await start(), b: await start() };
}


const TODAY = '/api/stats_leaderboard.json?period=today';
const YESTERDAY = '/api/stats_leaderboard.json?period=yesterday';

t.test('replicas in one process on one Redis', redisSkip(), async (t) => {
  t.test('a hot entry is refreshed ahead once for the cluster: the second replica takes the first one\'s refresh', async (t) => {
    const { clock, simulator, a, b } = await replicas(t);
    t.match(await a(TODAY), { status: 200, cacheStatus: /fwd=miss/ });
    t.match(await b(TODAY), { status: 200, cacheStatus: /; hit/ }, "b answers with a's answer");
    t.equal(simulator.calls, 1);
    // Late in the entry's 5 minutes, with requests as far apart as what is left: each replica would refresh it.
    clock.advance(280_000);
    t.match(await a(TODAY), { status: 200, cacheStatus: /; hit/ });
    t.ok(await eventually(() => simulator.calls === 2), "a's hit started one refresh ahead");
    await new Promise((resolve) => setTimeout(resolve, 50));
    clock.advance(1_000);
    t.match(await b(TODAY), { status: 200, cacheStatus: /; hit/ });
    await new Promise((resolve) => setTimeout(resolve, 200));
    t.equal(simulator.calls, 2, "b's refresh ahead found a's newer answer and made no call");
    clock.advance(30_000);
    t.match(await b(TODAY), { status: 200, cacheStatus: /; hit/ }, "past the first answer's expiry, b answers from a's refresh");
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
