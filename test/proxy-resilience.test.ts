import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { capturedLog } from './helpers/log.js';
import t from 'tap';
import { MemoryStore } from '../src/cache/memory-store.js';
import { ManualScheduler } from './helpers/scheduler.js';
import { type Answer, DEMO, OTHER, settled, startStack, ttlOf, until, WRONG } from './helpers/stack.js';
import { mkdtempSync, writeFileSync } from 'node:fs';

const LEADERBOARD = '/api/stats_leaderboard.json';
const TODAY = `${LEADERBOARD}?period=today`;
const FIVE_MINUTES = 300_000;

const errorOf = (answer: Answer): string => (JSON.parse(answer.text) as { error: string }).error;

/** A config file for one test. */
function configFile(contents: unknown): string {
  const file = join(mkdtempSync(join(tmpdir(), 'proxy-config-')), 'proxy.json');
  writeFileSync(file, JSON.stringify(contents));
  return file;
}

// Each way Deskie can fail, the Cache-Status a stale answer then carries, and
// the error a client gets when there is nothing to fall back on (after a 429,
// the circuit is open: the next cold query is refused without a call).
const FAULTS = [
  { fault: 'error500', cacheStatus: 'fwd=stale; fwd-status=500; detail=deskie-error', error: 500, errorStatus: 'fwd=miss; fwd-status=500' },
  { fault: 'rateLimited', cacheStatus: 'fwd=stale; fwd-status=429; detail=rate-limited', error: 503, errorStatus: 'detail=circuit-open' },
  { fault: 'malformed', cacheStatus: 'fwd=stale; detail=invalid-answer', error: 502, errorStatus: 'fwd=miss; detail=invalid-answer' },
  { fault: 'nonObject', cacheStatus: 'fwd=stale; detail=invalid-answer', error: 502, errorStatus: 'fwd=miss; detail=invalid-answer' },
  { fault: 'drop', cacheStatus: 'fwd=stale; detail=connection-failed', error: 502, errorStatus: 'fwd=miss; detail=connection-failed' },
  { fault: 'hang', cacheStatus: 'fwd=stale; detail=timeout', error: 504, errorStatus: 'fwd=miss; detail=timeout' },
] as const;

for (const { fault, cacheStatus, error, errorStatus } of FAULTS) {
  t.test(`Deskie failing with ${fault}: an expired entry answers 200 stale, and without one the client gets a ${error}`, async (t) => {
    const stack = await startStack(t, { env: { UPSTREAM_TIMEOUT_MS: '200', STALE_WHILE_REVALIDATE_SECONDS: '0' } });
    const fresh = await stack.get(`${TODAY}&format=csv`);
    stack.clock.advance(FIVE_MINUTES + 60_000);
    stack.simulator.set({ fault });
    const stale = await stack.get(`${TODAY}&format=csv`);
    t.equal(stale.status, 200);
    t.equal(stale.text, fresh.text, 'the stored body, in the format asked for');
    t.match(stale.headers['content-type'], /^text\/csv/);
    t.equal(stale.headers['cache-status'], `deskie-stats-proxy; ${cacheStatus}; ttl=-60`, 'RFC 9211: how stale, and why');
    t.equal(stale.headers['age'], '360', 'Age counts from the fetch');
    t.equal(stale.headers['cache-control'], 'private, max-age=300', 'max-age minus Age shows it is stale');

    const nothingToFallBackOn = await stack.get(`${LEADERBOARD}?period=yesterday`);
    t.equal(nothingToFallBackOn.status, error, 'no entry: the error as before');
    t.equal(nothingToFallBackOn.headers['cache-control'], 'no-store');
    t.equal(nothingToFallBackOn.headers['cache-status'], `deskie-stats-proxy; ${errorStatus}`);
  });
}

t.test('stale answers stop STALE_IF_ERROR_SECONDS after expiry, and 0 turns them off', async (t) => {
  const stack = await startStack(t, { env: { STALE_IF_ERROR_SECONDS: '600', STALE_WHILE_REVALIDATE_SECONDS: '0' } });
  await stack.get(TODAY);
  stack.simulator.set({ fault: 'error500' });
  stack.clock.advance(FIVE_MINUTES + 599_000);
  t.equal((await stack.get(TODAY)).status, 200, 'one second before the end of the stale window');
  stack.clock.advance(1_000);
  t.equal((await stack.get(TODAY)).status, 500, 'the entry is gone');

  const off = await startStack(t, { env: { STALE_IF_ERROR_SECONDS: '0', STALE_WHILE_REVALIDATE_SECONDS: '0' } });
  await off.get(TODAY);
  off.simulator.set({ fault: 'error500' });
  off.clock.advance(FIVE_MINUTES);
  t.equal((await off.get(TODAY)).status, 500, 'no stale answers at all');
});

t.test('a revoked key is never answered with stale data', async (t) => {
  const stack = await startStack(t, { env: { STALE_WHILE_REVALIDATE_SECONDS: '0' } });
  await stack.get(TODAY);
  stack.simulator.revoke('demo@example.com');
  stack.clock.advance(FIVE_MINUTES);
  const refused = await stack.get(TODAY);
  t.equal(refused.status, 401, "Deskie's 401, not the stale numbers");
  t.notMatch(refused.text, /staff_name/);
});

t.test('a stale answer is never one for another window', async (t) => {
  const stack = await startStack(t, { now: '2026-11-28T23:58:00Z' });
  await stack.get(TODAY);
  stack.clock.set('2026-11-29T00:01:00Z');
  stack.simulator.set({ fault: 'error500' });
  t.equal((await stack.get(TODAY)).status, 500, "yesterday's today is another key: nothing stale to serve");
});

t.test('a burst of 200 distinct cold queries stays within the budget and every client is answered in time', async (t) => {
  const queueMs = 300;
  const stack = await startStack(t, {
    env: { UPSTREAM_QUEUE_MS: String(queueMs) },
    simulator: { rateLimitPerMinute: 20, knobs: { latencyMs: 20 } },
    simulatorOnProxyClock: true,
  });
  const started = Date.now();
  const answers = await Promise.all(
    Array.from({ length: 200 }, (_, group) => stack.get(`${TODAY}&group_id=${group + 1}`).then((answer) => ({ answer, ms: Date.now() - started }))),
  );
  t.ok(stack.simulator.calls <= 16, `${stack.simulator.calls} calls reached Deskie: at most 20 a minute less the 20% reserve`);
  const statuses = new Set(answers.map(({ answer }) => answer.status));
  t.same([...statuses].sort(), [200, 503], 'each got its answer or a 503');
  for (const { answer } of answers.filter(({ answer }) => answer.status === 503)) {
    t.match(answer.headers['retry-after'], /^[1-9]\d*$/, 'with Retry-After');
    t.match(errorOf(answer), /upstream budget|down to the reserve/, 'says why: the minute is spent, or the account is down to its reserve');
  }
  const slowest = Math.max(...answers.map(({ ms }) => ms));
  // Bounded by the queue wait (plus generous room for a loaded machine), never by the minute.
  t.ok(slowest < queueMs + 2_000, `the slowest answer came after ${slowest} ms`);
});

t.test('UPSTREAM_RATE_PER_MIN=10: 30 concurrent cold queries make at most 10 calls', async (t) => {
  const stack = await startStack(t, { env: { UPSTREAM_RATE_PER_MIN: '10', UPSTREAM_QUEUE_MS: '200' } });
  const answers = await Promise.all(Array.from({ length: 30 }, (_, i) => stack.get(`${TODAY}&user_id=${i + 1}`)));
  t.equal(stack.simulator.calls, 10);
  t.equal(answers.filter((a) => a.status === 200).length, 10);
  t.ok(answers.every((a) => a.status === 200 || (a.status === 503 && a.headers['retry-after'] !== undefined)));
});

t.test("after a 429 with retry_after: 5, nothing reaches Deskie for 5 seconds; cached answers keep serving", async (t) => {
  const stack = await startStack(t, { env: { STALE_WHILE_REVALIDATE_SECONDS: '0' } });
  await stack.get(TODAY);
  stack.clock.advance(FIVE_MINUTES);
  stack.simulator.set({ fault: 'rateLimited', retryAfterSeconds: 5 });
  t.match((await stack.get(TODAY)).headers['cache-status'], /fwd-status=429/, 'the 429, answered stale');
  stack.simulator.set({ fault: 'none' });
  const calls = stack.simulator.calls;
  for (let second = 0; second < 5; second++) {
    const cold = await stack.get(`${LEADERBOARD}?period=this_week&user_id=${second + 1}`);
    t.equal(cold.status, 503, `${second} s after: a cold query is refused without a call`);
    t.equal(cold.headers['retry-after'], String(5 - second), 'Retry-After counts down');
    t.equal(cold.headers['cache-status'], 'deskie-stats-proxy; detail=circuit-open');
    const cached = await stack.get(TODAY);
    t.equal(cached.status, 200, 'the expired entry still answers');
    t.match(cached.headers['cache-status'], /fwd=stale; detail=circuit-open/);
    stack.clock.advance(1_000);
  }
  t.equal(stack.simulator.calls, calls, 'no call while the circuit was open');
  t.equal((await stack.get(`${LEADERBOARD}?period=this_week`)).status, 200, 'after 5 seconds calls go out again');
  t.equal(stack.simulator.calls, calls + 1);
});

t.test('a Deskie allowing 5 calls a minute, and saying so: a stream of distinct queries never gets more than one 429', async (t) => {
  const stack = await startStack(t, { simulator: { rateLimitPerMinute: 5 }, simulatorOnProxyClock: true, env: { UPSTREAM_QUEUE_MS: '50' } });
  const statuses: number[] = [];
  for (let minute = 0; minute < 3; minute++) {
    for (let i = 0; i < 10; i++) statuses.push((await stack.get(`${TODAY}&user_id=${minute * 100 + i + 1}`)).status);
    stack.clock.advance(61_000);
  }
  t.ok(statuses.filter((s) => s === 429).length <= 1, `429s: ${statuses.filter((s) => s === 429).length}`);
  t.ok(statuses.filter((s) => s === 200).length >= 9, 'the account still answered three minutes of calls');
  t.ok(statuses.every((s) => s === 200 || s === 503 || s === 429), `only answers, refusals and at most one 429: ${statuses.join(',')}`);
});

t.test('a query polled every 250 ms with a 4-second lifetime never waits on Deskie after its first answer', async (t) => {
  let scheduler: ManualScheduler | undefined;
  const stack = await startStack(t, {
    env: { CONFIG_FILE: configFile({ ttlSeconds: { today: 4 } }) },
    // The lifetime here is the test's, not Deskie's: its answers change whenever the numbers do.
    simulator: { knobs: { deskieCache: false } },
    scheduler: (clock) => (scheduler = new ManualScheduler(clock)),
  });
  const first = await stack.get(TODAY);
  t.match(first.headers['cache-status'], /fwd=miss; stored/);
  const bodies = new Set([first.text]);
  for (let poll = 1; poll <= 48; poll++) {
    scheduler?.advance(250);
    await settled(stack);
    if (poll % 16 === 0) stack.simulator.changeNumbers();
    const answer = await stack.get(TODAY);
    t.match(answer.headers['cache-status'], /^deskie-stats-proxy; (hit|fwd=stale; revalidating); ttl=-?\d+$/, `poll ${poll} is answered at once`);
    bodies.add(answer.text);
  }
  // Each refresh goes 1 s (REFRESH_MARGIN_MS) after the lifetime of the call before: at 5 s and 10 s.
  t.equal(stack.simulator.calls, 1 + 2, 'one refresh per lifetime and margin: two in 12 s');
  t.ok(bodies.size >= 2, 'refreshes brought the new numbers');
});

t.test('a fetch sent before midnight and answered after it is answered with ttl=0 and not stored', async (t) => {
  const before = Date.parse('2026-11-28T23:59:59.900Z');
  let deskieCalls = (): number => 0;
  // The clock passes midnight once Deskie has received the call.
  const stack = await startStack(t, { clock: () => before + (deskieCalls() > 0 ? 200 : 0) });
  deskieCalls = () => stack.simulator.calls;
  const answer = await stack.get(TODAY);
  t.equal(answer.status, 200);
  t.equal(answer.headers['cache-status'], 'deskie-stats-proxy; fwd=miss; ttl=0', 'not stored');
  t.equal(answer.headers['cache-control'], 'no-store');
  const health = JSON.parse((await stack.get('/healthz', { authorization: null })).text) as { entries: number };
  t.equal(health.entries, 0, 'nothing was kept for the old window');
});

t.test('a wrong key polled 30 times costs one call; another credential is not affected; success clears it', async (t) => {
  const stack = await startStack(t, { env: { AUTH_FAILURE_TTL_SECONDS: '30' } });
  for (let poll = 0; poll < 30; poll++) {
    const answer = await stack.get(`${LEADERBOARD}?period=this_week&user_id=${poll + 1}`, { authorization: WRONG });
    t.equal(answer.status, 401);
    stack.clock.advance(500);
  }
  t.equal(stack.simulator.calls, 1, 'one call for thirty polls');
  t.equal((await stack.get(TODAY, { authorization: OTHER })).status, 200, 'another credential still gets its answer');
  stack.clock.advance(16_000);
  stack.simulator.addUser('demo@example.com', 'wrong');
  t.equal((await stack.get(TODAY, { authorization: WRONG })).status, 200, 'past the memory, Deskie is asked again');
  t.equal((await stack.get(`${LEADERBOARD}?period=yesterday`, { authorization: WRONG })).status, 200, 'and the refusal is forgotten');
});

t.test('junk credentials cannot spend the account: a known dashboard still gets its answer', async (t) => {
  const stack = await startStack(t, { simulator: { rateLimitPerMinute: 20 }, simulatorOnProxyClock: true, env: { UPSTREAM_QUEUE_MS: '100' } });
  t.equal((await stack.get(TODAY)).status, 200, 'the dashboard is known to Deskie');
  const junk = await Promise.all(
    Array.from({ length: 20 }, (_, i) =>
      stack.get(`${TODAY}&user_id=${i + 1}`, { authorization: 'Basic ' + Buffer.from(`junk${i}@example.com:x`).toString('base64') }),
    ),
  );
  t.ok(junk.every((a) => a.status === 401 || a.status === 503), 'junk gets refusals');
  t.ok(stack.simulator.calls <= 1 + 2, `${stack.simulator.calls - 1} junk calls: a tenth of the minute`);
  const real = await stack.get(`${LEADERBOARD}?period=yesterday`);
  t.equal(real.status, 200, 'the real query still goes through');
});

t.test('a page=all over PAGE_ALL_MAX_PAGES is remembered for the answer\'s lifetime', async (t) => {
  const stack = await startStack(t, { env: { PAGE_ALL_MAX_PAGES: '1' } });
  const path = '/api/stats_satisfaction.json?period=this_month&page=all';
  const first = await stack.get(path);
  t.equal(first.status, 422);
  const calls = stack.simulator.calls;
  t.equal(calls, 1, 'Deskie told the total on the first page');
  const again = await stack.get(path);
  t.equal(again.status, 422);
  t.equal(again.headers['cache-status'], 'deskie-stats-proxy; hit; detail=remembered-422');
  t.equal(stack.simulator.calls, calls, 'the retry cost nothing');
  stack.clock.advance(86_400_000);
  t.equal((await stack.get(path)).status, 422);
  t.equal(stack.simulator.calls, calls + 1, 'asked again once its lifetime is over');
});

t.test('a page=all needing more calls than the budget allows is refused before its second call', async (t) => {
  const stack = await startStack(t, { env: { UPSTREAM_RATE_PER_MIN: '2' } });
  const answer = await stack.get('/api/stats_satisfaction.json?period=this_month&page=all');
  t.equal(answer.status, 422);
  t.match(errorOf(answer), /page=all needs 3 calls to Deskie, more than the 2 a minute/);
  t.equal(stack.simulator.calls, 1, 'refused after the page that told the total');
});

t.test('a page=all fetched again reserves the pages it took last time before its first call', async (t) => {
  const stack = await startStack(t, { env: { UPSTREAM_RATE_PER_MIN: '4', UPSTREAM_QUEUE_MS: '50', STALE_WHILE_REVALIDATE_SECONDS: '0' } });
  const merged = '/api/stats_satisfaction.json?period=this_month&page=all';
  t.equal((await stack.get(merged)).status, 200);
  t.equal(stack.simulator.calls, 3, 'three pages');
  stack.clock.advance(86_400_000); // expired, and the minute long gone
  t.equal((await stack.get(`${TODAY}&user_id=1`)).status, 200);
  t.equal((await stack.get(`${TODAY}&user_id=2`)).status, 200);
  const refetch = await stack.get(merged);
  t.equal(refetch.status, 200);
  t.match(refetch.headers['cache-status'], /fwd=stale; detail=budget-exhausted/, 'two calls left of four: the merge waited, then the stale entry answered');
  t.equal(stack.simulator.calls, 5, 'and it spent nothing');
});

t.test('anomalies from Deskie are 502s and never stored', async (t) => {
  const stack = await startStack(t);
  for (const [fault, message] of [
    ['nonObject', /an array where a JSON object was expected/],
    ['deepJson', /nested deeper than 32 levels/],
  ] as const) {
    stack.simulator.set({ fault });
    const answer = await stack.get(`${TODAY}&user_id=1`);
    t.equal(answer.status, 502, fault);
    t.match(errorOf(answer), message);
  }
  stack.simulator.set({ fault: 'rateLimited', retryAfter: 'soon' });
  const limited = await stack.get(`${TODAY}&user_id=2`);
  t.equal(limited.status, 429);
  t.notOk(limited.headers['retry-after'], 'a retry_after that is not a number is not passed on');
  stack.simulator.set({ fault: 'none' });
  stack.clock.advance(60_000);
  t.match((await stack.get(`${TODAY}&user_id=1`)).headers['cache-status'], /fwd=miss; stored/, 'nothing had been stored');
});

t.test('an answer too large for the cache is no-store and logged at warn with its size and the setting', async (t) => {
  const { logger, lines } = capturedLog('warn');
  const stack = await startStack(t, { store: (clock) => new MemoryStore({ maxBytes: 64 * 1024, clock }), logger });
  const path = '/api/stats_satisfaction.json?period=this_month&page=all';
  const first = await stack.get(path);
  t.equal(first.status, 200);
  t.equal(first.headers['cache-control'], 'no-store', 'a client must not keep it either');
  t.match(first.headers['cache-status'], /^deskie-stats-proxy; fwd=miss; ttl=\d+$/, 'not stored');
  t.match(lines.find((line) => line['level'] === 40 && /too large/.test(String(line['msg']))), { bytes: Number, msg: /raise CACHE_MAX_BYTES/ });
});

t.test('closing while a refresh runs waits for it and refuses nothing in flight', async (t) => {
  let scheduler: ManualScheduler | undefined;
  const stack = await startStack(t, { env: { CONFIG_FILE: configFile({ ttlSeconds: { today: 4 } }) }, scheduler: (clock) => (scheduler = new ManualScheduler(clock)) });
  await stack.get(TODAY);
  t.match((await stack.get(TODAY)).headers['cache-status'], /hit/, 'asked for while fresh: its refresh is due');
  stack.simulator.set({ latencyMs: 200 });
  scheduler?.advance(5_000);
  await until(() => stack.simulator.calls === 2);
  const closed = stack.app.close();
  await t.resolves(closed, 'the server closes cleanly');
  t.equal(stack.simulator.calls, 2, 'the refresh was under way and finished');
});

t.test('the budget is shown on /healthz', async (t) => {
  const stack = await startStack(t);
  await stack.get(TODAY, { authorization: DEMO });
  const health = JSON.parse((await stack.get('/healthz', { authorization: null })).text) as { upstream: Record<string, unknown> };
  t.match(health.upstream, { limitPerMinute: 1200, accountLimitPerMinute: 1500, state: 'open', inFlight: 0, queued: 0 });
  t.equal(ttlOf(await stack.get(TODAY)), 300);
});

t.test('a new credential opening ten panels at once is limited to the share only until Deskie accepts it', async (t) => {
  const stack = await startStack(t, { simulator: { knobs: { latencyMs: 20 } } });
  const panels = await Promise.all(Array.from({ length: 10 }, (_, i) => stack.get(`${TODAY}&user_id=${i + 1}`)));
  t.same(panels.map((a) => a.status), Array(10).fill(200), 'the calls that waited behind the first answer went out once it came');
  t.equal(stack.simulator.calls, 10);
});
