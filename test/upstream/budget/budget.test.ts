import t, { type Test } from 'tap';
import { type BudgetOptions, type BudgetRequest, UpstreamBudget } from '../../../src/upstream/budget/budget.js';
import { ProxyError } from '../../../src/http/errors.js';
import { BUDGET_DEFAULTS, call, refusalOf, soon } from '../../helpers/budget.js';
import { capturedLog } from '../../helpers/log.js';

/** A budget on a clock the test moves, with its log lines captured. */
function budgetWith(t: Test, options: Partial<BudgetOptions> = {}) {
  let now = Date.parse('2026-11-28T12:00:00Z');
  const { logger, lines } = capturedLog('info');
  const budget = new UpstreamBudget({
    ...BUDGET_DEFAULTS,
    clock: () => now,
    log: logger,
    ...options,
  });
  // Waiting calls end on unref'ed timers, as in the server; here nothing else keeps the process up.
  const keepAlive = setInterval(() => {}, 1_000);
  t.teardown(() => (budget.close(), clearInterval(keepAlive)));
  return { budget, lines, advance: (ms: number) => (now += ms) };
}


/** Reserves and sends one call at once, releasing its slot. */
async function spendOne(budget: UpstreamBudget, request: BudgetRequest = call()): Promise<void> {
  const grant = await budget.reserve(request);
  grant.spend();
  grant.release();
}

const busy = (error: unknown) => error instanceof ProxyError && error.statusCode === 503;

t.test('until Deskie tells its limit, 20 calls a minute go out; the 21st waits and then gets a 503 that says when', async (t) => {
  const { budget, advance } = budgetWith(t);
  for (let i = 0; i < 20; i++) await spendOne(budget);
  advance(20_000);
  const refused = await budget.reserve(call()).catch((error: unknown) => error);
  t.ok(busy(refused), 'refused after waiting');
  t.match((refused as ProxyError).headers, { 'retry-after': '40' }, 'the oldest call leaves the minute in 40 s');
  t.equal((refused as ProxyError).failure, 'budget-exhausted');
  advance(40_000);
  await spendOne(budget);
  t.equal(budget.snapshot().callsLeftThisMinute, 19, 'a minute after the first calls they left the window; the new one counts');
});

t.test("the operator's cap, then the account's limit less the reserve", async (t) => {
  const capped = budgetWith(t, { ratePerMinute: 10 }).budget;
  t.equal(capped.limitPerMinute, 10, 'the cap before any header');
  capped.observe({ statusCode: 200, rateLimitPerMinute: '1500', callsLeft: '1400', retryAfterSeconds: undefined });
  t.equal(capped.limitPerMinute, 10, 'a cap is never exceeded');
  const open = budgetWith(t).budget;
  open.observe({ statusCode: 200, rateLimitPerMinute: '100', callsLeft: '99', retryAfterSeconds: undefined });
  t.equal(open.limitPerMinute, 80, '100 less a 20% reserve');
  open.observe({ statusCode: 200, rateLimitPerMinute: 'lots', callsLeft: undefined, retryAfterSeconds: undefined });
  t.equal(open.limitPerMinute, 80, 'a header that is not a number changes nothing');
});

t.test('api_calls_left at the reserve pauses calls for a minute, logged once each way', async (t) => {
  const { budget, lines, advance } = budgetWith(t);
  budget.observe({ statusCode: 200, rateLimitPerMinute: '50', callsLeft: '10', retryAfterSeconds: undefined });
  t.equal(budget.snapshot().state, 'paused', '10 left is the 20% reserve of 50');
  const refused = await budget.reserve(call()).catch((error: unknown) => error);
  t.ok(busy(refused), 'nothing goes out while paused');
  t.match((refused as ProxyError).headers, { 'retry-after': '60' });
  budget.snapshot();
  advance(60_000);
  await spendOne(budget);
  t.equal(lines.filter((line) => line['budget'] === 'paused').length, 1, 'the pause is logged once');
  t.equal(lines.filter((line) => line['msg'] === 'calls to Deskie resumed').length, 1, 'and the resumption once');
});

t.test('a 429 opens the circuit for its retry_after: waiting and new calls are refused at once', async (t) => {
  const { budget, advance } = budgetWith(t, { concurrency: 1 });
  const holder = await budget.reserve(call());
  const waiting = budget.reserve(call({ deadline: soon(10_000) })).catch((error: unknown) => error);
  holder.spend();
  budget.observe({ statusCode: 429, rateLimitPerMinute: undefined, callsLeft: '0', retryAfterSeconds: 5 });
  holder.release();
  const started = performance.now();
  const refused = await waiting;
  t.ok(performance.now() - started < 1_000, 'the waiting call did not wait out its deadline');
  t.match(refused, { statusCode: 503, failure: 'circuit-open', headers: { 'retry-after': '5' } });
  t.match(await refusalOf(budget.reserve(call())), { failure: 'circuit-open' }, 'a new call is refused at once');
  advance(4_999);
  t.match(await refusalOf(budget.reserve(call())), { failure: 'circuit-open' });
  advance(1);
  await spendOne(budget);
  t.equal(budget.snapshot().state, 'open');
});

t.test('a 429 without retry_after opens the circuit for 60 s', async (t) => {
  const { budget, advance } = budgetWith(t);
  budget.observe({ statusCode: 429, rateLimitPerMinute: undefined, callsLeft: undefined, retryAfterSeconds: undefined });
  advance(59_000);
  t.match(await refusalOf(budget.reserve(call())), { headers: { 'retry-after': '1' } });
  advance(1_000);
  await spendOne(budget);
});

t.test('at most `concurrency` calls in flight; client misses go before refreshes', async (t) => {
  const { budget } = budgetWith(t, { concurrency: 2 });
  const first = await budget.reserve(call());
  const second = await budget.reserve(call());
  const order: string[] = [];
  const refresh = budget.reserve(call({ priority: 'refresh', deadline: soon(5_000) })).then((grant) => (order.push('refresh'), grant));
  const client = budget.reserve(call({ deadline: soon(5_000) })).then((grant) => (order.push('client'), grant));
  await new Promise((resolve) => setImmediate(resolve));
  t.same(order, [], 'both wait while two are in flight');
  t.equal(budget.snapshot().queued, 2);
  first.release();
  (await client).release();
  second.release();
  (await refresh).release();
  t.same(order, ['client', 'refresh'], 'the client miss went first although it came second');
});

t.test('credentials Deskie never accepted share a tenth and cannot block known ones', async (t) => {
  const { budget } = budgetWith(t, { concurrency: 4 });
  const junk = await budget.reserve(call({ isNewCredential: () => true }));
  const blockedJunk = refusalOf(budget.reserve(call({ isNewCredential: () => true, deadline: soon(100) })));
  const known = await budget.reserve(call());
  t.equal(budget.snapshot().inFlight, 2, 'a known credential passes a junk one that waits for its share (one slot of four)');
  t.equal(budget.snapshot().queued, 1);
  t.ok(busy(await blockedJunk), 'the second junk call waited for the share and got a 503');
  junk.spend();
  junk.release();
  known.release();
  await spendOne(budget, call({ isNewCredential: () => true }));
  t.ok(busy(await refusalOf(budget.reserve(call({ isNewCredential: () => true, deadline: soon(30) })))), 'two junk calls a minute (a tenth of 20), then refused');
  await spendOne(budget);
  t.equal(budget.snapshot().callsLeftThisMinute, 20 - 3, 'known credentials still have the rest of the minute');
});

t.test("once Deskie accepts a credential, its grant's slot leaves the new-credential share", async (t) => {
  const { budget } = budgetWith(t, { concurrency: 4 });
  const first = await budget.reserve(call({ isNewCredential: () => true }));
  const second = refusalOf(budget.reserve(call({ isNewCredential: () => true, deadline: soon(5_000) })));
  t.equal(budget.snapshot().queued, 1, "a second new credential waits for the share's one slot of four");
  first.trust();
  t.equal(await second, 'granted', 'the accepted credential gave its place in the share to the next');
  t.equal(budget.snapshot().inFlight, 2, 'and keeps its slot among all calls');
});

t.test('the queue is bounded: past its length a call is refused at once', async (t) => {
  const { budget } = budgetWith(t, { concurrency: 1, queueLength: 2 });
  const holder = await budget.reserve(call());
  const queued = [budget.reserve(call({ deadline: soon(5_000) })), budget.reserve(call({ deadline: soon(5_000) }))];
  t.match(await refusalOf(budget.reserve(call({ deadline: soon(5_000) }))), { statusCode: 503, message: /too many calls to Deskie are waiting/ });
  holder.release();
  for (const pending of queued) (await pending).release();
});

t.test('a merge reserves its pages up front: more than a minute allows is a 422, more than is left waits', async (t) => {
  const { budget, advance } = budgetWith(t, { ratePerMinute: 10 });
  t.match(await refusalOf(budget.reserve(call({ calls: 11 }))), { statusCode: 422, message: /needs 11 calls to Deskie, more than the 10 a minute/ });
  for (let i = 0; i < 5; i++) await spendOne(budget);
  const grant = await budget.reserve(call());
  grant.spend();
  t.match(await refusalOf(grant.extend(5, soon(30))), { statusCode: 503 }, 'only 4 are left this minute');
  advance(60_000);
  await grant.extend(5, soon());
  t.equal(grant.remaining, 5, 'five more reserved at once');
  t.match(await refusalOf(grant.extend(10, soon())), { statusCode: 422 }, 'the whole merge may not need more than a minute allows');
  grant.spend();
  t.equal(budget.snapshot().callsLeftThisMinute, 5, 'one sent, four still reserved');
  grant.release();
  t.equal(budget.snapshot().callsLeftThisMinute, 9, 'unspent calls went back; the one sent counts');
});

t.test('close refuses waiting and new calls', async (t) => {
  const { budget } = budgetWith(t, { concurrency: 1 });
  await budget.reserve(call());
  const waiting = budget.reserve(call({ deadline: soon(5_000) }));
  budget.close();
  t.match(await refusalOf(waiting), { code: 'SHUTTING_DOWN', statusCode: 503 });
  t.match(await refusalOf(budget.reserve(call())), { code: 'SHUTTING_DOWN' });
});
