import t, { type Test } from 'tap';
import { request } from 'undici';
import { startSimulator } from '../src/simulator/index.js';
import { eventually } from './helpers/eventually.js';
import { redisSkip, startRedis, type TestRedis } from './helpers/redis.js';
import { type Replica, startReplica } from './helpers/replica.js';
import { DEMO } from './helpers/stack.js';

/**
 * Replicas as a deployment runs them: separate processes on one Redis, in
 * front of one Deskie (the simulator, which counts the calls that reach it).
 */
const ADMIN_TOKEN = 'admin-token-of-the-cluster';
const TODAY = '/api/stats_leaderboard.json?period=today';

async function cluster(t: Test, replicas: number, env: Record<string, string> = {}) {
  const redis = await startRedis(t);
  const simulator = await startSimulator({ users: { 'demo@example.com': 'demo' } });
  t.teardown(() => simulator.close());
  const started = await Promise.all(
    Array.from({ length: replicas }, () =>
      startReplica(t, {
        DESKIE_URL: simulator.url,
        REDIS_URL: redis.url,
        CACHE_KEY_SECRET: 'one-secret-for-every-replica',
        ADMIN_TOKEN,
        ...env,
      }),
    ),
  );
  return { redis, simulator, replicas: started };
}

async function get(replica: Replica, path: string): Promise<{ status: number; text: string; cacheStatus: string | undefined }> {
  const { statusCode, headers, body } = await request(`${replica.url}${path}`, { headers: { authorization: DEMO } });
  return { status: statusCode, text: await body.text(), cacheStatus: headers['cache-status'] as string | undefined };
}


t.test('replicas on one Redis', redisSkip(), async (t) => {
  t.test('50 concurrent identical requests spread across two replicas make one call to Deskie', async (t) => {
    const { simulator, replicas } = await cluster(t, 2);
    simulator.hold();
    const pending = Array.from({ length: 50 }, (_, index) => get(replicas[index % 2] as Replica, TODAY));
    // The first call is held at Deskie: every request arrives while it is under way.
    t.ok(await eventually(() => simulator.held === 1), 'one call reached Deskie and is held');
    await new Promise((resolve) => setTimeout(resolve, 300));
    t.equal(simulator.calls, 1, 'still one call once all 50 have arrived');
    simulator.release();
    const answers = await Promise.all(pending);
    t.ok(answers.every((answer) => answer.status === 200), 'all answered 200');
    t.equal(new Set(answers.map((answer) => answer.text)).size, 1, 'with the same body');
    t.equal(simulator.calls, 1, 'one call for the cluster');
    const later = await Promise.all(replicas.map((replica) => get(replica, TODAY)));
    t.same(later.map((answer) => answer.cacheStatus?.split(';')[1]), [' hit', ' hit'], 'and later requests are hits on both');
  });

  t.test('a replica killed while it calls Deskie is taken over by another within the lease', async (t) => {
    const { simulator, replicas } = await cluster(t, 2);
    const [holder, other] = replicas as [Replica, Replica];
    simulator.hold();
    void get(holder, TODAY).catch(() => undefined);
    t.ok(await eventually(() => simulator.held === 1), "the holder's call is under way");
    const waiting = get(other, TODAY);
    await new Promise((resolve) => setTimeout(resolve, 200));
    t.equal(simulator.calls, 1, 'the other replica waits for the holder instead of calling');
    const killedAt = performance.now();
    await holder.kill();
    simulator.stopHolding();
    const answer = await waiting;
    t.equal(answer.status, 200, `answered ${Math.round(performance.now() - killedAt)} ms after the holder died`);
    t.ok(performance.now() - killedAt < 8_000, 'within the lease (5 s) and a poll');
    t.equal(simulator.calls, 2, "the dead holder's call and the one that took over");
  });

  t.test('a budget of 10 calls a minute holds across three replicas', async (t) => {
    const { simulator, replicas } = await cluster(t, 3, { UPSTREAM_RATE_PER_MIN: '10', UPSTREAM_QUEUE_MS: '500' });
    // Thirty distinct queries, ten to each replica: each replica alone would allow all of its ten.
    const answers = await Promise.all(
      Array.from({ length: 30 }, (_, index) => get(replicas[index % 3] as Replica, `/api/stats_staff_statuses.json?period=today&page=${index + 1}`)),
    );
    const statuses = answers.map((answer) => answer.status);
    t.equal(simulator.calls, 10, 'ten calls reached Deskie: the whole limit, and no more');
    t.equal(statuses.filter((status) => status === 200).length, simulator.calls, 'each call answered one request');
    t.same(new Set(statuses.filter((status) => status !== 200)), new Set([503]), 'the rest wait their turn, then get a 503 that says when to retry');
    // Each replica counts the others at its heartbeat, every 5 s.
    const sharing = async () => ((await (await request(`${(replicas[0] as Replica).url}/readyz`)).body.json()) as { upstream: { sharing: unknown } }).upstream.sharing;
    t.ok(await eventually(async () => JSON.stringify(await sharing()) === '{"mode":"redis","replicas":3}', 7_000), '/readyz shows the budget shared by three replicas');
  });

  t.test('a purge on one replica is seen by the other: its next request goes to Deskie', async (t) => {
    const { simulator, replicas } = await cluster(t, 2);
    const [first, second] = replicas as [Replica, Replica];
    await get(first, TODAY);
    t.match(await get(second, TODAY), { status: 200, cacheStatus: /; hit/ }, "the second replica answers from the first one's answer");
    t.equal(simulator.calls, 1);
    const purge = await request(`${first.url}/admin/entries?all=true`, { method: 'DELETE', headers: { authorization: `Bearer ${ADMIN_TOKEN}` } });
    t.same(await purge.body.json(), { removed: 1 });
    t.ok(
      await eventually(async () => (await get(second, TODAY), simulator.calls === 2)),
      "the second replica's own copy went with it",
    );
  });

  t.test('Redis stopped mid-run loses no request, and the replicas use it again once it is back', async (t) => {
    const { redis, simulator, replicas } = await cluster(t, 2);
    const queries = ['today', 'yesterday', 'this_week', 'last_week'].map((period) => `/api/stats_leaderboard.json?period=${period}`);
    const round = async () => Promise.all(replicas.flatMap((replica) => queries.map((query) => get(replica, query))));
    t.ok((await round()).every((answer) => answer.status === 200));
    await (redis as TestRedis).stop();
    const during = [];
    for (let index = 0; index < 5; index += 1) during.push(...(await round()));
    t.same(
      during.filter((answer) => answer.status !== 200),
      [],
      'every request answered 200 while Redis was down',
    );
    const readiness = await request(`${(replicas[0] as Replica).url}/readyz`);
    const ready = (await readiness.body.json()) as { store: { shared: { redis: string } } };
    t.equal(readiness.statusCode, 200, 'still ready: it serves');
    t.equal(ready.store.shared.redis, 'down', '/readyz shows Redis down');
    const purge = await request(`${(replicas[0] as Replica).url}/admin/entries?all=true`, { method: 'DELETE', headers: { authorization: `Bearer ${ADMIN_TOKEN}` } });
    t.equal(purge.statusCode, 503, 'a purge that could not reach the other replicas is refused, not reported done');
    t.match(await purge.body.json(), { error: /Redis cannot be reached/ });
    await redis.start();
    t.ok(
      await eventually(async () => {
        const body = (await (await request(`${(replicas[1] as Replica).url}/readyz`)).body.json()) as { store: { shared: { redis: string } } };
        return body.store.shared.redis === 'up';
      }, 10_000),
      'reconnected by itself',
    );
    const metrics = await (await request(`${(replicas[0] as Replica).url}/metrics`)).body.text();
    t.match(metrics, /deskie_proxy_redis_errors_total \d+/, 'Redis errors are counted');
    t.ok(simulator.calls >= queries.length, 'Deskie answered what Redis could not');
  });
});
