import t, { type Test } from 'tap';
import { Redis } from 'ioredis';
import { type BudgetOptions, type BudgetRequest, UpstreamBudget } from '../../../src/upstream/budget/budget.js';
import { SharedBudget } from '../../../src/upstream/budget/shared.js';
import { SharedRedis } from '../../../src/redis/connection.js';
import { ProxyError } from '../../../src/http/errors.js';
import { BUDGET_DEFAULTS, call, refusalOf, soon } from '../../helpers/budget.js';
import { eventually } from '../../helpers/eventually.js';
import { capturedLog } from '../../helpers/log.js';
import { redisSkip, startRedis, type TestRedis } from '../../helpers/redis.js';

/** REDIS_TIMEOUT_MS for these tests: real time, the only real time they wait. */
const TIMEOUT_MS = 200;
/** Heartbeats short enough that a replica finds Redis again quickly. */
const HEARTBEAT_MS = 100;

/**
 * `count` replicas of the budget, each with its own connections to one
 * Redis, on one clock the test moves by hand.
 */
async function replicas(t: Test, redis: TestRedis, count: number, options: Partial<BudgetOptions> = {}) {
  let now = Date.parse('2026-11-28T12:00:00Z');
  const clock = () => now;
  const { logger, lines } = capturedLog('info');
  const members: Array<{ budget: UpstreamBudget; shared: SharedBudget; connection: SharedRedis }> = [];
  for (let i = 0; i < count; i++) {
    const connection = new SharedRedis({ url: redis.url, prefix: 'test:', timeoutMs: TIMEOUT_MS, log: logger });
    const shared = new SharedBudget({ redis: connection, clock, log: logger, heartbeatMs: HEARTBEAT_MS });
    const budget = new UpstreamBudget({
      ...BUDGET_DEFAULTS,
      clock,
      log: logger,
      shared,
      ...options,
    });
    t.teardown(async () => {
      budget.close();
      await connection.close();
    });
    members.push({ budget, shared, connection });
  }
  // Waiting calls end on unref'ed timers, as in the server; here nothing else keeps the process up.
  const keepAlive = setInterval(() => {}, 1_000);
  t.teardown(() => clearInterval(keepAlive));
  await until(() => members.every(({ connection }) => connection.state === 'up'), 'every replica connected');
  // Twice: the first replica's first heartbeat is written before the others'.
  for (let round = 0; round < 2; round++) await Promise.all(members.map(({ shared }) => shared.heartbeat()));
  return { members, budgets: members.map(({ budget }) => budget), lines, advance: (ms: number) => (now += ms) };
}

/** Waits (eventually) for `condition`, at most 5 s of real time, or fails the setup naming `what`. */
async function until(condition: () => boolean, what: string): Promise<void> {
  if (!(await eventually(condition, 5_000))) throw new Error(`timed out waiting until ${what}`);
}


/** Reserves and sends one call, releasing its slot; 'refused' with the error if it was not granted. */
async function spendOne(budget: UpstreamBudget, request: BudgetRequest = call()): Promise<'sent' | ProxyError> {
  try {
    const grant = await budget.reserve(request);
    grant.spend();
    grant.release();
    return 'sent';
  } catch (error) {
    if (error instanceof ProxyError) return error;
    throw error;
  }
}


t.test('three replicas together send at most the limit in a minute, however the calls are spread', redisSkip(), async (t) => {
  const redis = await startRedis(t);
  const { budgets, advance } = await replicas(t, redis, 3, { ratePerMinute: 10 });
  // Uneven and concurrent: 30 calls asked of the three at once, more of the first.
  const spread = [0, 0, 0, 1, 2, 0, 1, 0, 2, 0];
  const asked = Array.from({ length: 30 }, (_, i) => budgets[spread[i % spread.length] as number] as UpstreamBudget);
  const outcomes = await Promise.all(asked.map((budget) => spendOne(budget, call({ deadline: soon(300) }))));
  t.equal(outcomes.filter((outcome) => outcome === 'sent').length, 10, 'ten calls went out across the three replicas');
  for (const outcome of outcomes.filter((outcome) => outcome !== 'sent')) {
    t.match(outcome, { statusCode: 503, failure: 'budget-exhausted' }, 'the others waited and were refused');
  }
  for (const [index, budget] of budgets.entries()) {
    t.match(await refusalOf(budget.reserve(call())), { statusCode: 503, headers: { 'retry-after': '60' } }, `replica ${index} says when the oldest call leaves the minute`);
    t.match(budget.snapshot().sharing, { mode: 'redis', replicas: 3 }, 'and that the minute is counted in Redis among three');
  }
  const waiting = (budgets[1] as UpstreamBudget).reserve(call({ deadline: soon(5_000) }));
  advance(60_000);
  (await waiting).release();
  t.pass('the eleventh call waiting across the minute was granted once the clock moved 60 s');
});

t.test('calls reserved and never sent go back to the shared log', redisSkip(), async (t) => {
  const redis = await startRedis(t);
  const { budgets } = await replicas(t, redis, 2, { ratePerMinute: 10 });
  const [first, second] = budgets as [UpstreamBudget, UpstreamBudget];
  const merge = await first.reserve(call({ calls: 6 }));
  t.match(await spendOne(second, call({ calls: 5 })), { statusCode: 503 }, 'six of ten taken: a five-page merge elsewhere waits');
  merge.spend();
  merge.release();
  const grant = await second.reserve(call({ calls: 9, deadline: soon(2_000) }));
  t.equal(grant.remaining, 9, 'the five the merge did not send went back: nine are left');
  await grant.extend(0, soon());
  t.match(await refusalOf(grant.extend(1, soon(100))), { statusCode: 503 }, 'a merge that asks for more than the cluster has left waits and is refused');
  t.equal(grant.remaining, 9, 'and keeps what it had');
  grant.release();
});

t.test("a page=all merge's calls taken and not yet sent stay counted past a minute, until sent or given back", redisSkip(), async (t) => {
  const redis = await startRedis(t);
  const { members, budgets, advance } = await replicas(t, redis, 2, { ratePerMinute: 10 });
  const [a, b] = budgets as [UpstreamBudget, UpstreamBudget];
  const merge = await a.reserve(call({ calls: 10, deadline: soon(5_000) }));
  merge.spend();
  advance(50_000);
  // A heartbeat (every 5 s of real time in a server) scores the nine still held anew.
  await (members[0] as { shared: SharedBudget }).shared.heartbeat();
  advance(11_000);
  let granted = 0;
  for (let index = 0; index < 10; index++) if ((await spendOne(b, call({ deadline: soon(50) }))) === 'sent') granted++;
  t.equal(granted, 1, 'the other replica gets only the call that left the minute');
  for (let index = 0; index < 9; index++) merge.spend();
  merge.release();
  t.pass('and the merge sends its nine: ten in the minute, across both');
});

t.test("one replica's 429 opens the circuit on every replica at once", redisSkip(), async (t) => {
  const redis = await startRedis(t);
  const { budgets, advance } = await replicas(t, redis, 3, { concurrency: 1 });
  const [first, second, third] = budgets as [UpstreamBudget, UpstreamBudget, UpstreamBudget];
  const holder = await third.reserve(call());
  const waiting = refusalOf(third.reserve(call({ deadline: soon(10_000) })));
  first.observe({ statusCode: 429, rateLimitPerMinute: undefined, callsLeft: '0', retryAfterSeconds: 30 });
  const started = performance.now();
  t.match(await refusalOf(second.reserve(call())), { statusCode: 503, failure: 'circuit-open', headers: { 'retry-after': '30' } }, 'another replica refuses at once');
  t.match(await waiting, { statusCode: 503, failure: 'circuit-open' }, "a third's waiting call is refused when it hears");
  t.ok(performance.now() - started < 1_000, 'without waiting out its deadline');
  holder.release();
  t.equal(third.snapshot().state, 'circuit-open');
  advance(30_000);
  t.equal(await spendOne(second), 'sent', 'calls go again once retry_after has passed');
});

t.test("Deskie's limit, its calls left and the reserve pause reach every replica", redisSkip(), async (t) => {
  const redis = await startRedis(t);
  const { budgets, advance } = await replicas(t, redis, 2);
  const [first, second] = budgets as [UpstreamBudget, UpstreamBudget];
  first.observe({ statusCode: 200, rateLimitPerMinute: '100', callsLeft: '90', retryAfterSeconds: undefined });
  await until(() => second.limitPerMinute === 80, 'the other replica adopted the limit');
  first.observe({ statusCode: 200, rateLimitPerMinute: '100', callsLeft: '20', retryAfterSeconds: undefined });
  await until(() => second.snapshot().state === 'paused', 'the other replica paused');
  t.match(second.snapshot(), { accountLimitPerMinute: 100, deskieCallsLeft: 20, state: 'paused' });
  t.match(await spendOne(second), { statusCode: 503, headers: { 'retry-after': '60' } }, 'nothing goes out anywhere while paused');
  advance(60_000);
  t.equal(await spendOne(second), 'sent');
});

t.test('a replica that starts later learns the account from Redis, and its 429 refusal from the shared log', redisSkip(), async (t) => {
  const redis = await startRedis(t);
  const { budgets } = await replicas(t, redis, 1);
  const first = budgets[0] as UpstreamBudget;
  first.observe({ statusCode: 429, rateLimitPerMinute: '50', callsLeft: '0', retryAfterSeconds: 10 });
  // Without the message: the store's account is read by the take.
  const { logger } = capturedLog('info');
  const connection = new SharedRedis({ url: redis.url, prefix: 'test:', timeoutMs: TIMEOUT_MS, log: logger });
  t.teardown(() => connection.close());
  await until(() => connection.state === 'up', 'connected');
  const late = new UpstreamBudget({
    ...BUDGET_DEFAULTS,
    clock: () => Date.parse('2026-11-28T12:00:01Z'),
    log: logger,
    shared: new SharedBudget({ redis: connection, clock: () => Date.parse('2026-11-28T12:00:01Z'), log: logger, heartbeatMs: 60_000 }),
  });
  t.teardown(() => late.close());
  // Whether its first heartbeat or the take read it first, the account's circuit holds here too.
  t.match(await refusalOf(late.reserve(call())), { statusCode: 503, failure: 'circuit-open', headers: { 'retry-after': '9' } });
  t.match(late.snapshot(), { accountLimitPerMinute: 50, state: 'circuit-open' });
});

t.test('Redis down: each replica sends its share, nothing hangs, and the shared log counts again once Redis is back', redisSkip(), async (t) => {
  const redis = await startRedis(t);
  const { budgets, members, advance, lines } = await replicas(t, redis, 3, { ratePerMinute: 9 });
  t.same(
    members.map(({ shared }) => shared.replicas),
    [3, 3, 3],
    'each replica has seen three',
  );
  await redis.stop();
  for (const [index, budget] of budgets.entries()) {
    const started = performance.now();
    const outcomes = [];
    for (let i = 0; i < 4; i++) outcomes.push(await spendOne(budget, call({ deadline: soon(100) })));
    t.ok(performance.now() - started < 4 * 100 + TIMEOUT_MS, `replica ${index} did not wait for Redis`);
    t.same(outcomes.slice(0, 3), ['sent', 'sent', 'sent'], `replica ${index} sent its share, 9 / 3`);
    t.match(outcomes[3], { statusCode: 503, message: /\(3 calls a minute/ }, 'and no more');
    t.same(budget.snapshot().sharing, { mode: 'replica-share', replicas: 3, perMinute: 3 }, 'and says it counts alone, on its share');
  }
  t.ok(lines.some((line) => line['budget'] === 'replica-share'), 'the fall is logged');

  await redis.start();
  await until(() => budgets.every((budget) => budget.snapshot().sharing.mode === 'redis'), 'every replica found Redis again');
  t.ok(lines.some((line) => line['budget'] === 'redis'), 'the return is logged');
  // Redis came back empty: each replica wrote its calls of the outage into the log again.
  t.match(await spendOne(budgets[0] as UpstreamBudget), { statusCode: 503, headers: { 'retry-after': '60' } }, 'the nine calls of the outage fill the minute');
  advance(60_000);
  for (let i = 0; i < 9; i++) t.equal(await spendOne(budgets[0] as UpstreamBudget), 'sent', `call ${i + 1}: one replica may send more than its share again`);
  t.match(await spendOne(budgets[2] as UpstreamBudget), { statusCode: 503 }, 'and the shared minute holds for the others');
});

t.test('Redis slower than its timeout: the call goes on the share within the timeout, and Redis counts again after', redisSkip(), async (t) => {
  const redis = await startRedis(t);
  const { budgets } = await replicas(t, redis, 2, { ratePerMinute: 10 });
  const [first, second] = budgets as [UpstreamBudget, UpstreamBudget];
  const admin = new Redis(redis.url);
  t.teardown(() => admin.disconnect());
  await admin.call('CLIENT', 'PAUSE', '600', 'ALL');
  const started = performance.now();
  t.equal(await spendOne(first, call({ deadline: soon(2_000) })), 'sent', 'the call went out on the share');
  t.ok(performance.now() - started < TIMEOUT_MS + 150, 'after no more than the Redis timeout');
  t.match(first.snapshot().sharing, { mode: 'replica-share', replicas: 2, perMinute: 5 });
  await until(() => first.snapshot().sharing.mode === 'redis', 'a heartbeat found Redis again');
  for (let i = 0; i < 9; i++) t.equal(await spendOne(second), 'sent');
  t.match(await spendOne(second), { statusCode: 503 }, 'the call made on the share was written into the shared log: nine more, not ten');
});

t.test('close refuses a call waiting for the shared log and stops the heartbeat', redisSkip(), async (t) => {
  const redis = await startRedis(t);
  const { budgets, members } = await replicas(t, redis, 2, { ratePerMinute: 2 });
  const [first, second] = budgets as [UpstreamBudget, UpstreamBudget];
  await spendOne(first);
  await spendOne(first);
  const waiting = refusalOf(second.reserve(call({ deadline: soon(5_000) })));
  await new Promise((resolve) => setTimeout(resolve, 50));
  second.close();
  t.match(await waiting, { code: 'SHUTTING_DOWN' });
  const [open, closed] = members as [(typeof members)[0], (typeof members)[0]];
  await closed.shared.heartbeat();
  for (let attempt = 0; attempt < 50 && open.shared.replicas !== 1; attempt++) await open.shared.heartbeat();
  t.equal(open.shared.replicas, 1, 'the closed replica left the count without waiting for its heartbeat to lapse');
});

t.test('calls given back while Redis is away leave the shared log once it answers again', redisSkip(), async (t) => {
  const redis = await startRedis(t);
  const { budgets } = await replicas(t, redis, 2, { ratePerMinute: 10 });
  const [first, second] = budgets as [UpstreamBudget, UpstreamBudget];
  const merges = [await first.reserve(call({ calls: 2 })), await first.reserve(call({ calls: 2 }))];
  const admin = new Redis(redis.url);
  t.teardown(() => admin.disconnect());
  await admin.call('CLIENT', 'PAUSE', '500', 'ALL');
  merges[0]?.release();
  await until(() => first.snapshot().sharing.mode === 'replica-share', 'the give-back timed out');
  merges[1]?.release();
  await until(() => first.snapshot().sharing.mode === 'redis', 'Redis answers again');
  const grant = await second.reserve(call({ calls: 10, deadline: soon(2_000) }));
  t.equal(grant.remaining, 10, 'all four calls never sent went back: the whole minute is free');
  grant.release();
});

t.test('a message on the channel that is not the budget’s changes nothing', redisSkip(), async (t) => {
  const redis = await startRedis(t);
  const { budgets, members } = await replicas(t, redis, 1);
  const budget = budgets[0] as UpstreamBudget;
  for (const junk of ['not json', 'null', '{"circuitOpenUntil":"soon","accountLimit":-5}']) await members[0]?.connection.publish('budget', junk);
  await members[0]?.connection.publish('budget', JSON.stringify({ accountLimit: 40 }));
  await until(() => budget.snapshot().accountLimitPerMinute === 40, 'the well-formed message after them was heard');
  t.match(budget.snapshot(), { state: 'open', limitPerMinute: 32 }, 'the junk before it opened no circuit and set no limit');
});
