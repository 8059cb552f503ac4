import { once } from 'node:events';
import t, { type Test } from 'tap';
import { pino } from 'pino';
import { RedisStore } from '../../src/cache/redis-store.js';
import { ProxyError, UpstreamAnswer } from '../../src/http/errors.js';
import type { CachedAnswer } from '../../src/cache/store.js';
import { SharedRedis } from '../../src/redis/connection.js';
import { eventually } from '../helpers/eventually.js';
import { redisSkip, startRedis, type TestRedis } from '../helpers/redis.js';
import { answerOf, storeContract, textOf } from './store-contract.js';
import { latch } from '../helpers/latch.js';

const MIB = 1024 * 1024;
const quiet = pino({ enabled: false });
/** Longer than any load here: a waiter gives up on a live holder only past it. */
const LONGEST_LOAD_MS = 10_000;
let namespaces = 0;

/** A connection of its own (a replica's), connected before the test goes on, closed when the test ends. */
async function connect(t: Test, redis: TestRedis, prefix: string, timeoutMs = 250): Promise<SharedRedis> {
  const shared = new SharedRedis({ url: redis.url, prefix, timeoutMs, log: quiet });
  t.teardown(() => shared.close());
  if (shared.state !== 'up') await once(shared.command, 'ready');
  // Subscribed before a store listens: a first subscription made later would clear its copies (see onSubscribed).
  if (shared.subscriber.status !== 'ready') await once(shared.subscriber, 'ready');
  return shared;
}

/** A store on `shared`, closed when the test ends. */
function storeOn(t: Test, shared: SharedRedis, clock: () => number, options: { leaseMs?: number } = {}): RedisStore {
  const store = new RedisStore({ redis: shared, l1MaxBytes: 16 * MIB, clock, log: quiet, longestLoadMs: LONGEST_LOAD_MS, ...options });
  t.teardown(() => store.close());
  return store;
}

/** Two replicas' stores on one Redis, on one clock the test moves. */
async function replicas(t: Test, redis: TestRedis, options: { leaseMs?: number } = {}) {
  let now = 1_000_000;
  const clock = () => now;
  const prefix = `test${(namespaces += 1)}:`;
  const make = async () => storeOn(t, await connect(t, redis, prefix), clock, options);
  return { a: await make(), b: await make(), now: () => now, advance: (ms: number) => (now += ms), prefix };
}

const answer = (text: string, fetchedAtMs: number, ttlMs: number, keepMs = 0, key = 'k'): CachedAnswer =>
  answerOf(key, Buffer.from(JSON.stringify({ text })), fetchedAtMs, ttlMs, keepMs);


t.test('RedisStore', redisSkip(), async (t) => {
  const redis = await startRedis(t);

  t.test('keeps the store contract', async (t) => {
    storeContract(t, async (clock) => {
      const shared = await connect(t, redis, `contract${(namespaces += 1)}:`);
      return new RedisStore({ redis: shared, l1MaxBytes: 16 * MIB, clock, log: quiet, longestLoadMs: LONGEST_LOAD_MS });
    });
  });

  t.test("a replica answers with another's stored answer when the caller's policy accepts it, and loads when not", async (t) => {
    const { a, b, now } = await replicas(t, redis);
    await a.fetch('k', async () => answer('from a', now(), 60_000));
    let loads = 0;
    const reused = await b.fetch('k', async () => (loads++, answer('from b', now(), 60_000)), () => true);
    t.match(reused, { outcome: 'hit', stored: true });
    t.equal(textOf(reused.answer), '{"text":"from a"}');
    t.equal(loads, 0, 'nothing loaded');
    t.equal(textOf(b.get('k')), '{"text":"from a"}', "kept in b's own memory while fresh");
    const refused = await b.fetch('k', async () => (loads++, answer('from b', now(), 60_000)), () => false);
    t.equal(refused.outcome, 'refreshed', 'the policy said no: loaded, replacing what Redis held');
    t.equal(loads, 1);
    t.equal(textOf(await a.peek('k')), '{"text":"from a"}', "a's fresh copy is its own");
  });

  t.test('concurrent fetches of one key on two replicas make one load; the other replica waits for it', async (t) => {
    const { a, b, now } = await replicas(t, redis);
    let loads = 0;
    const { opened: gate, open: release } = latch();
    const load = async () => {
      loads++;
      await gate;
      return answer('once', now(), 60_000);
    };
    const first = a.fetch('k', load);
    // Let a take the lease before b asks.
    await eventually(() => loads === 1);
    const waiting = Array.from({ length: 5 }, () => b.fetch('k', load));
    await new Promise((resolve) => setTimeout(resolve, 50));
    release();
    const results = await Promise.all([first, ...waiting]);
    t.equal(loads, 1, 'one load across both replicas');
    t.same(results.map((result) => result.outcome), ['miss', 'collapsed', 'collapsed', 'collapsed', 'collapsed', 'collapsed']);
    t.ok(results.every((result) => textOf(result.answer) === '{"text":"once"}'));
  });

  t.test("a holder that stops renewing its lease (dead) is taken over once the lease lapses", async (t) => {
    const { a, b, now, prefix } = await replicas(t, redis, { leaseMs: 300 });
    // A dead holder's lease: taken, never renewed, never released.
    const other = await connect(t, redis, prefix);
    await other.command.set(other.key('lease:k'), 'dead-replica', 'PX', 300, 'NX');
    const startedAt = performance.now();
    let loads = 0;
    const result = await b.fetch('k', async () => (loads++, answer('taken over', now(), 60_000)));
    const waitedMs = performance.now() - startedAt;
    t.equal(loads, 1, 'b loaded it itself');
    t.equal(result.outcome, 'miss');
    t.ok(waitedMs >= 200 && waitedMs < 2_000, `waited ${Math.round(waitedMs)} ms for the lease to lapse`);
    t.equal(textOf(await a.peek('k')), '{"text":"taken over"}', 'and stored it for the others');
  });

  t.test('a long load keeps its lease: nobody takes over a live holder', async (t) => {
    const { a, b, now } = await replicas(t, redis, { leaseMs: 100 });
    let loads = 0;
    const { opened: gate, open: release } = latch();
    const slow = a.fetch('k', async () => (loads++, await gate, answer('slow', now(), 60_000)));
    await eventually(() => loads === 1);
    const waiter = b.fetch('k', async () => (loads++, answer('second', now(), 60_000)));
    // Nine lease lifetimes: renewed by a all along.
    await new Promise((resolve) => setTimeout(resolve, 900));
    release();
    const [, waited] = await Promise.all([slow, waiter]);
    t.equal(loads, 1);
    t.equal(waited.outcome, 'collapsed');
  });

  t.test("Deskie's failure of the holder's call reaches the replicas that waited on it, without a call of their own", async (t) => {
    const { a, b, now } = await replicas(t, redis);
    let loads = 0;
    const { opened: gate, open: fail } = latch();
    const failing = a.fetch('k', async () => {
      loads++;
      await gate;
      throw new UpstreamAnswer(503, Buffer.from('{"error":"maintenance"}'), 'application/json', 30);
    });
    await eventually(() => loads === 1);
    const waiting = b.fetch('k', async () => (loads++, answer('second call', now(), 60_000)));
    await new Promise((resolve) => setTimeout(resolve, 50));
    fail();
    t.match(await failing.then(() => undefined, (rejected: unknown) => rejected), { statusCode: 503 }, "the holder's caller gets it");
    const error = await waiting.then(() => undefined, (rejected: unknown) => rejected);
    t.ok(error instanceof UpstreamAnswer, "the waiter gets Deskie's answer");
    t.match(error, { statusCode: 503, retryAfterSeconds: 30, failure: 'deskie-error' });
    t.equal((error as UpstreamAnswer).body.toString(), '{"error":"maintenance"}');
    t.equal(loads, 1, 'no second call');
    const later = await b.fetch('k', async () => (loads++, answer('later', now(), 60_000)));
    t.equal(textOf(later.answer), '{"text":"later"}', 'the next request calls Deskie again');
  });

  t.test("a failure the proxy itself gave (a timeout) reaches waiters too; a refused credential does not", async (t) => {
    const { a, b, now } = await replicas(t, redis);
    const holdAndFail = async (key: string, error: Error) => {
      let loads = 0;
      const { opened: gate, open: fail } = latch();
      const failing = a.fetch(key, async () => (loads++, await gate, Promise.reject(error)));
      await eventually(() => loads === 1);
      const waiting = b.fetch(key, async () => (loads++, answer('own call', now(), 60_000, 0, key)));
      await new Promise((resolve) => setTimeout(resolve, 50));
      fail();
      await failing.catch(() => undefined);
      return { result: await waiting.then((value) => value, (rejected: unknown) => rejected), loads: () => loads };
    };
    const timedOut = await holdAndFail('t', new ProxyError('UPSTREAM_TIMEOUT', 'Deskie did not answer in time', 504, {}, 'timeout'));
    t.match(timedOut.result, { statusCode: 504, failure: 'timeout', message: 'Deskie did not answer in time' });
    t.equal(timedOut.loads(), 1);
    const refused = await holdAndFail('r', new UpstreamAnswer(401, Buffer.from('{}'), 'application/json', undefined));
    t.match(refused.result, { outcome: 'miss' }, 'a 401 is learned from Deskie by each replica');
    t.equal(refused.loads(), 2);
  });

  t.test('a purge on one replica drops the answer from Redis and from the other replica too', async (t) => {
    const { a, b, now } = await replicas(t, redis);
    await a.fetch('k', async () => answer('shared', now(), 60_000));
    await b.fetch('k', async () => answer('unused', now(), 60_000), () => true);
    t.ok(b.get('k'), 'b holds a copy');
    t.equal(await a.delete('k'), true);
    t.ok(await eventually(() => b.get('k') === undefined), "b's copy is gone");
    t.equal(await b.peek('k'), undefined, 'and Redis holds nothing');
    t.same(await a.list(), []);
  });

  t.test("a purge published while another replica's subscription was down still reaches its copies", async (t) => {
    const { a, b, now, prefix } = await replicas(t, redis);
    await a.fetch('k', async () => answer('wrong numbers', now(), 3_600_000));
    await b.fetch('k', async () => answer('unused', now(), 3_600_000), () => true);
    t.ok(b.get('k'), 'b holds a copy');
    const admin = await connect(t, redis, prefix);
    // Every subscriber connection drops at once: the purge below is published to nobody.
    await admin.command.call('CLIENT', 'KILL', 'TYPE', 'pubsub');
    t.equal(await a.delete('k'), true);
    t.ok(await eventually(() => b.get('k') === undefined), 'b dropped its copies when it subscribed again');
    t.equal(await b.peek('k'), undefined);
  });

  t.test("a load under way on another replica when its key is purged is not written, even if the purge's message never reaches it", async (t) => {
    const { a, b, now, prefix } = await replicas(t, redis);
    const { opened: gate, open: release } = latch();
    const late = b.fetch('k', async () => (await gate, answer('from before the purge', now(), 60_000)));
    const admin = await connect(t, redis, prefix);
    await admin.command.call('CLIENT', 'KILL', 'TYPE', 'pubsub');
    await a.delete('k');
    release();
    t.equal(textOf((await late).answer), '{"text":"from before the purge"}', "b's caller gets its answer");
    t.equal(await a.peek('k'), undefined, 'which Redis does not keep');
  });

  t.test("a partition dropped while another replica's messages are lost is still not written back by its load under way", async (t) => {
    const { a, b, now, prefix } = await replicas(t, redis);
    const { opened: gate, open: release } = latch();
    const late = b.fetch('yesterday#p1', async () => (await gate, answer('yesterday', now(), 60_000, 0, 'yesterday#p1')));
    const admin = await connect(t, redis, prefix);
    await admin.command.call('CLIENT', 'KILL', 'TYPE', 'pubsub');
    await a.dropEnding('#p1');
    release();
    await late;
    t.equal(await a.peek('yesterday#p1'), undefined, 'the marker in Redis refused the write');
  });

  t.test('after a purge or a drop, an answer from a call made later is stored as usual', async (t) => {
    const { a, b, now, advance } = await replicas(t, redis);
    await a.fetch('k#p1', async () => answer('first', now(), 60_000, 0, 'k#p1'));
    await a.delete('k#p1');
    await a.dropEnding('#p1');
    advance(1);
    const again = await b.fetch('k#p1', async () => answer('later', now(), 60_000, 0, 'k#p1'));
    t.equal(again.stored, true);
    t.ok(await eventually(async () => textOf(await a.peek('k#p1')) === '{"text":"later"}'), 'in Redis, for every replica');
  });

  t.test("a partition's index holds only the answers Redis still keeps", async (t) => {
    const { a, now, advance, prefix } = await replicas(t, redis);
    for (let index = 0; index < 20; index += 1) {
      const key = `range${index}#p1`;
      await a.fetch(key, async () => answer(key, now(), 10, 0, key));
    }
    advance(1_000);
    await a.fetch('month#p1', async () => answer('month', now(), 3_600_000, 0, 'month#p1'));
    const admin = await connect(t, redis, prefix);
    t.ok(await eventually(async () => (await admin.command.zcard(admin.key('partition:#p1'))) === 1), 'the expired ones left it at the next write');
    t.equal(await a.dropEnding('#p1'), 1);
  });

  t.test('a replica that starts while Redis is down subscribes once Redis is up', async (t) => {
    const own = await startRedis(t);
    await own.stop();
    const late = new SharedRedis({ url: own.url, prefix: 'late:', timeoutMs: 100, log: quiet });
    t.teardown(() => late.close());
    const heard: string[] = [];
    late.listen('purged', (message) => heard.push(message));
    await new Promise((resolve) => setTimeout(resolve, 300));
    await own.start();
    t.ok(await eventually(() => late.state === 'up' && late.subscriber.status === 'ready'), 'connected');
    const other = await connect(t, own, 'late:');
    t.ok(await eventually(async () => (await other.command.publish(other.key('purged'), 'k')) === 1 && heard.includes('k')), 'it hears what is published');
  });

  t.test("a partition dropped on one replica (Deskie refused its credential) is not written back by another's load under way", async (t) => {
    const { a, b, now } = await replicas(t, redis);
    await a.fetch('today#p1', async () => answer('today', now(), 60_000, 0, 'today#p1'));
    await a.fetch('today#p2', async () => answer('other credential', now(), 60_000, 0, 'today#p2'));
    const { opened: gate, open: release } = latch();
    // b's call was made before the refusal, and answers after it.
    const late = b.fetch('yesterday#p1', async () => (await gate, answer('yesterday', now(), 60_000, 0, 'yesterday#p1')));
    t.equal(await a.dropEnding('#p1'), 1, "the partition's one stored answer is dropped");
    release();
    t.equal(textOf((await late).answer), '{"text":"yesterday"}', "b's caller still gets its answer");
    t.equal(await a.peek('yesterday#p1'), undefined, 'but it is not stored');
    t.equal(await b.peek('today#p1'), undefined);
    t.ok(await eventually(() => b.get('yesterday#p1') === undefined && b.get('today#p1') === undefined), 'nor kept by b');
    t.equal(textOf(await b.peek('today#p2')), '{"text":"other credential"}', 'another partition is untouched');
    const after = await b.fetch('yesterday#p1', async () => answer('after', now() + 1, 60_000, 0, 'yesterday#p1'));
    t.equal(after.stored, true, 'a call made after the drop is stored again');
  });

  t.test('an expired answer is asked of Redis for stale-if-error; this replica keeps only fresh copies', async (t) => {
    const { a, b, now, advance } = await replicas(t, redis);
    await a.fetch('k', async () => answer('old', now(), 10_000, 60_000));
    advance(10_000);
    t.equal(a.get('k'), undefined, 'no longer fresh: not held here');
    t.equal(textOf(await b.peek('k')), '{"text":"old"}', 'still kept in Redis', { diag: { a: a.shared, b: b.shared } });
    t.same((await b.list()).map(textOf), ['{"text":"old"}'], 'listed from Redis');
  });

  t.test('answers of another prefix or format version are never read', async (t) => {
    const { a, now } = await replicas(t, redis);
    await a.fetch('k', async () => answer('v1', now(), 60_000));
    const other = await connect(t, redis, 'another-proxy:');
    const elsewhere = storeOn(t, other, now);
    t.equal(await elsewhere.peek('k'), undefined);
  });

  t.test('with Redis too slow, a request waits no longer than REDIS_TIMEOUT_MS, and the next ones not at all for a while', async (t) => {
    const own = await startRedis(t);
    const now = 1_000_000;
    const shared = await connect(t, own, 'slow:', 100);
    const store = storeOn(t, shared, () => now);
    const sleeper = await connect(t, own, 'slow:', 5_000);
    const asleep = sleeper.command.call('DEBUG', 'SLEEP', '0.8');
    let startedAt = performance.now();
    const first = await store.fetch('a', async () => answer('a', now, 60_000, 0, 'a'));
    const firstMs = performance.now() - startedAt;
    t.equal(textOf(first.answer), '{"text":"a"}', 'answered');
    t.ok(firstMs >= 90 && firstMs < 400, `the first request waited ${Math.round(firstMs)} ms: one timeout`);
    t.equal(shared.state, 'down', 'Redis is left alone');
    startedAt = performance.now();
    await store.fetch('b', async () => answer('b', now, 60_000, 0, 'b'));
    t.ok(performance.now() - startedAt < 50, 'the next request did not wait on Redis');
    await asleep;
    t.ok(await eventually(() => shared.state === 'up'), 'asked again a second later');
  });

  t.test("a request's commands share one REDIS_TIMEOUT_MS: a slow first one leaves the next only what is left", async (t) => {
    const own = await startRedis(t);
    const shared = await connect(t, own, 'within:', 300);
    const sleeper = await connect(t, own, 'within:', 5_000);
    const by = performance.now() + 300;
    const first = sleeper.command.call('DEBUG', 'SLEEP', '0.2');
    t.equal(await shared.within(by, (redis) => redis.get('x')), null, 'the first command waited for Redis to wake');
    const second = sleeper.command.call('DEBUG', 'SLEEP', '0.2');
    const startedAt = performance.now();
    await t.rejects(shared.within(by, (redis) => redis.get('y')), { name: 'RedisTimeout' });
    const waitedMs = performance.now() - startedAt;
    t.ok(waitedMs < 150, `the second waited ${Math.round(waitedMs)} ms: what the first left of 300`);
    await t.rejects(shared.within(performance.now() - 1, (redis) => redis.get('z')), { name: 'RedisTimeout' }, 'none left: not even sent');
    await Promise.all([first, second]);
  });

  t.test('with Redis down, a replica answers from its own memory and loads by itself, never waiting past the timeout; it reconnects by itself', async (t) => {
    const own = await startRedis(t);
    let now = 1_000_000;
    const shared = await connect(t, own, 'down:', 100);
    const store = storeOn(t, shared, () => now);
    await store.fetch('fresh', async () => answer('fresh', now, 60_000, 0, 'fresh'));
    await own.stop();
    t.ok(await eventually(() => shared.state === 'down'), 'the loss is noticed');
    t.equal(textOf(store.get('fresh')), '{"text":"fresh"}', 'a fresh copy still answers');
    const startedAt = performance.now();
    let loads = 0;
    const result = await store.fetch('k', async () => (loads++, answer('alone', now, 60_000)));
    t.equal(loads, 1);
    t.equal(textOf(result.answer), '{"text":"alone"}');
    t.equal(await store.peek('gone'), undefined, 'a peek does not wait either');
    await t.rejects(store.list(), { statusCode: 503, message: /Redis cannot be reached/ }, "a list is refused: this replica's copies are not the cluster's");
    await t.rejects(store.delete('fresh'), { statusCode: 503, message: /cannot be purged/ }, 'so is a purge, which could not reach the cluster');
    t.equal(store.get('fresh'), undefined, "though this replica's copy is dropped");
    t.ok(performance.now() - startedAt < 1_000, 'nothing waited on Redis');
    t.ok(store.shared.errors > 0, 'errors are counted');
    await own.start();
    t.ok(await eventually(() => shared.state === 'up'), 'reconnected by itself');
    now += 1;
    await store.fetch('after', async () => answer('after', now, 60_000, 0, 'after'));
    t.ok(await shared.command.exists(shared.key('a:after')), 'writes to Redis resume');
  });
});
