import t, { type Test } from 'tap';
import { request } from 'undici';
import { loadConfig } from '../../src/config/config.js';
import { eventually } from '../helpers/eventually.js';
import { capturedLog } from '../helpers/log.js';
import { ManualScheduler } from '../helpers/scheduler.js';
import { type Answer, settled, type Stack, startStack, until } from '../helpers/stack.js';

const LEADERBOARD = '/api/stats_leaderboard.json';
const TODAY = `${LEADERBOARD}?period=today`;
const YESTERDAY = `${LEADERBOARD}?period=yesterday`;
const FIVE_MINUTES = 300_000;
const MARGIN = 1_000;

const cacheStatus = (answer: Answer): string => String(answer.headers['cache-status']);

/** A proxy whose refreshes run when the test moves the clock past them. */
async function phased(t: Test, options: Parameters<typeof startStack>[1] = {}): Promise<{ stack: Stack; scheduler: ManualScheduler }> {
  let scheduler: ManualScheduler | undefined;
  const stack = await startStack(t, {
    // Deskie's own cache runs on the same clock: a refresh in phase brings numbers computed anew.
    simulatorOnProxyClock: true,
    ...options,
    scheduler: (clock) => (scheduler = new ManualScheduler(clock)),
  });
  return { stack, scheduler: scheduler as ManualScheduler };
}

/** Moves to `atMs` since `startMs` and lets any call a due refresh made land. */
async function moveTo(stack: Stack, scheduler: ManualScheduler, startMs: number, atMs: number): Promise<void> {
  scheduler.advance(startMs + atMs - stack.clock.nowMs);
  await settled(stack);
}

t.test('a key polled every 30 s is refreshed just after its lifetime, counted from our call, plus the margin, never before', async (t) => {
  const { stack, scheduler } = await phased(t);
  const start = stack.clock.nowMs;
  t.match(cacheStatus(await stack.get(TODAY)), /fwd=miss; stored; ttl=300/);
  for (let at = 30_000; at < FIVE_MINUTES; at += 30_000) {
    await moveTo(stack, scheduler, start, at);
    t.match(cacheStatus(await stack.get(TODAY)), /; hit; /, `the poll at ${at / 1000} s is a hit`);
  }
  await moveTo(stack, scheduler, start, FIVE_MINUTES + MARGIN - 1);
  t.equal(stack.simulator.calls, 1, 'no call before send + lifetime + margin');
  await moveTo(stack, scheduler, start, FIVE_MINUTES + MARGIN);
  t.equal(stack.simulator.calls, 2, 'one call at send + lifetime + margin');
  // The next lifetime counts from the refresh's call.
  for (let at = FIVE_MINUTES + 30_000; at < 2 * FIVE_MINUTES + MARGIN; at += 30_000) {
    await moveTo(stack, scheduler, start, at);
    t.match(cacheStatus(await stack.get(TODAY)), /; hit; /, `the poll at ${at / 1000} s is a hit on the refreshed answer`);
  }
  await moveTo(stack, scheduler, start, 2 * (FIVE_MINUTES + MARGIN) - 1);
  t.equal(stack.simulator.calls, 2, 'no second refresh before its own send + lifetime + margin');
  await moveTo(stack, scheduler, start, 2 * (FIVE_MINUTES + MARGIN));
  t.equal(stack.simulator.calls, 3, 'the second refresh goes then');
});

t.test('from expiry until the refreshed answer arrives a poll gets the previous answer at once, marked revalidating', async (t) => {
  const { stack, scheduler } = await phased(t);
  const start = stack.clock.nowMs;
  const first = await stack.get(TODAY);
  await moveTo(stack, scheduler, start, 60_000);
  await stack.get(TODAY);
  await moveTo(stack, scheduler, start, FIVE_MINUTES);
  const beforeCall = await stack.get(TODAY);
  t.equal(cacheStatus(beforeCall), 'deskie-stats-proxy; fwd=stale; revalidating; ttl=0', 'expired, its refresh due in a second');
  t.equal(beforeCall.headers['etag'], first.headers['etag'], 'the previous answer');
  t.equal(stack.simulator.calls, 1, 'the poll did not call Deskie before its cache expired');
  stack.simulator.hold();
  stack.simulator.changeNumbers();
  scheduler.advance(MARGIN);
  await until(() => stack.simulator.held === 1);
  stack.clock.advance(2_000);
  const during = await stack.get(TODAY);
  t.equal(cacheStatus(during), 'deskie-stats-proxy; fwd=stale; revalidating; ttl=-3', 'the refresh is under way');
  t.equal(during.text, first.text, 'the previous body');
  stack.simulator.release();
  await settled(stack);
  const after = await stack.get(TODAY);
  t.match(cacheStatus(after), /^deskie-stats-proxy; hit; ttl=29\d$/, 'the refreshed answer');
  t.not(after.headers['etag'], first.headers['etag'], 'with the new numbers');
  t.equal(stack.simulator.calls, 2, 'one call for all of it');
  const metrics = (await stack.get('/metrics', { authorization: null })).text;
  t.match(metrics, /deskie_proxy_requests_total\{[^}]*outcome="revalidating"[^}]*\} 2/, 'the metrics count both as revalidating');
  t.match(metrics, /deskie_proxy_stale_answers_total\{route="stats_leaderboard"\} 0/, 'not as stale answers, which mean Deskie failed');
});

t.test('past STALE_WHILE_REVALIDATE_SECONDS a poll waits for the refresh, as on any expired entry', async (t) => {
  const { stack, scheduler } = await phased(t, { env: { STALE_WHILE_REVALIDATE_SECONDS: '10' } });
  const start = stack.clock.nowMs;
  await stack.get(TODAY);
  await moveTo(stack, scheduler, start, 60_000);
  await stack.get(TODAY);
  stack.simulator.hold();
  scheduler.advance(start + FIVE_MINUTES + MARGIN - stack.clock.nowMs);
  await until(() => stack.simulator.held === 1);
  stack.clock.advance(8_999);
  t.match(cacheStatus(await stack.get(TODAY)), /revalidating; ttl=-9$/, 'within the bound: at once');
  stack.clock.advance(1);
  let answered = false;
  const arrivals = stack.arrivals;
  const waiting = stack.get(TODAY).then((answer) => {
    answered = true;
    return answer;
  });
  await until(() => stack.arrivals > arrivals);
  for (let turn = 0; turn < 50; turn++) await new Promise((resolve) => setImmediate(resolve));
  t.notOk(answered, 'past the bound: the poll waits for the refresh');
  stack.simulator.release();
  t.equal(cacheStatus(await waiting), 'deskie-stats-proxy; fwd=stale; collapsed; ttl=291', "then gets the refresh's answer");
  t.equal(stack.simulator.calls, 2, 'without a call of its own');
});

t.test('a key nobody asked for during its lifetime is not refreshed', async (t) => {
  const { stack, scheduler } = await phased(t);
  const start = stack.clock.nowMs;
  await stack.get(TODAY);
  t.equal(scheduler.pending, 0, 'the answer that made the call is not a request during its lifetime');
  await moveTo(stack, scheduler, start, 2 * FIVE_MINUTES);
  t.equal(stack.simulator.calls, 1, 'nothing refreshed it');
  t.match(cacheStatus(await stack.get(TODAY)), /^deskie-stats-proxy; fwd=stale; stored; ttl=300$/, 'the next poll fetches, as today');
  t.equal(stack.simulator.calls, 2);
});

t.test('a refresh made unnecessary by a newer answer is not made', async (t) => {
  const { stack, scheduler } = await phased(t, { env: { STALE_WHILE_REVALIDATE_SECONDS: '0' } });
  const start = stack.clock.nowMs;
  await stack.get(TODAY);
  await moveTo(stack, scheduler, start, 60_000);
  await stack.get(TODAY);
  stack.clock.advance(start + FIVE_MINUTES - stack.clock.nowMs);
  t.match(cacheStatus(await stack.get(TODAY)), /fwd=stale; stored/, 'without stale-while-revalidate, a poll at expiry fetches');
  await moveTo(stack, scheduler, start, FIVE_MINUTES + MARGIN);
  t.equal(stack.simulator.calls, 2, 'the refresh then due finds a fresh answer and makes no call');
});

t.test('at midnight a query asked for the day that ended is fetched once for the new day, just after it', async (t) => {
  const { stack, scheduler } = await phased(t, { now: '2026-11-28T23:57:00Z' });
  await stack.get(TODAY);
  await stack.get(YESTERDAY);
  scheduler.set('2026-11-28T23:58:30Z');
  t.match(cacheStatus(await stack.get(TODAY)), /; hit; ttl=90$/, "today's entry ends at midnight");
  t.match(cacheStatus(await stack.get(YESTERDAY)), /; hit; ttl=90$/, "and yesterday's");
  scheduler.set('2026-11-29T00:00:00.999Z');
  await settled(stack);
  t.equal(stack.simulator.calls, 2, 'nothing before midnight + margin');
  scheduler.set('2026-11-29T00:00:01Z');
  await settled(stack);
  t.equal(stack.simulator.calls, 4, 'one call each for the new windows');
  t.same(
    stack.simulator.requests.slice(2).map(({ query }) => query).sort(),
    ['period=today', 'period=yesterday'],
    'asked by name, now meaning the new day',
  );
  scheduler.set('2026-11-29T00:00:30Z');
  t.match(cacheStatus(await stack.get(TODAY)), /^deskie-stats-proxy; hit; ttl=27\d$/, "the new day's first poll does not wait");
  t.match(cacheStatus(await stack.get(YESTERDAY)), /^deskie-stats-proxy; hit; ttl=\d+$/, "nor does the new yesterday's");
  t.equal(stack.simulator.calls, 4);
});

t.test('an expired answer an operator purged does not answer while its refresh is due', async (t) => {
  const token = 'admin-token-0123456789';
  const { stack, scheduler } = await phased(t, { env: { ADMIN_TOKEN: token } });
  const start = stack.clock.nowMs;
  await stack.get(TODAY);
  await moveTo(stack, scheduler, start, 60_000);
  await stack.get(TODAY);
  stack.clock.advance(start + FIVE_MINUTES + 500 - stack.clock.nowMs);
  const purged = await request(`${stack.proxyUrl}/admin/entries?period=today`, { method: 'DELETE', headers: { authorization: `Bearer ${token}` } });
  t.same(await purged.body.json(), { removed: 1 }, 'purged');
  t.match(cacheStatus(await stack.get(TODAY)), /^deskie-stats-proxy; fwd=miss; stored; ttl=300$/, 'the next poll asks Deskie');
});

t.test('a due refresh takes its turn in the budget after client misses', async (t) => {
  const { stack, scheduler } = await phased(t, { env: { UPSTREAM_CONCURRENCY: '1' } });
  const start = stack.clock.nowMs;
  await stack.get(TODAY);
  await stack.get(TODAY);
  stack.simulator.hold();
  const first = stack.get(`${LEADERBOARD}?period=this_week`);
  await until(() => stack.simulator.held === 1);
  scheduler.advance(start + FIVE_MINUTES + MARGIN - stack.clock.nowMs);
  const second = stack.get(`${LEADERBOARD}?period=this_month`);
  const queued = async (): Promise<number> => (JSON.parse((await stack.get('/healthz', { authorization: null })).text) as { upstream: { queued: number } }).upstream.queued;
  t.ok(await eventually(async () => (await queued()) === 2), 'the refresh and a client miss wait for the one slot');
  stack.simulator.release();
  await Promise.all([first, second]);
  await settled(stack);
  t.same(
    stack.simulator.requests.slice(1).map(({ query }) => query),
    ['period=this_week', 'period=this_month', 'period=today'],
    'the refresh due while a miss waited went after it',
  );
});

t.test("a refresh that brings the window's last answer is followed by the next window's, though nobody asked in between", async (t) => {
  const { stack, scheduler } = await phased(t, { now: '2026-11-28T23:54:00Z' });
  await stack.get(TODAY);
  scheduler.set('2026-11-28T23:55:00Z');
  await stack.get(TODAY);
  scheduler.set('2026-11-28T23:59:01Z');
  await settled(stack);
  t.equal(stack.simulator.calls, 2, 'refreshed in phase; that answer ends at midnight');
  scheduler.set('2026-11-29T00:00:01Z');
  await settled(stack);
  t.equal(stack.simulator.calls, 3, "the query was asked for in the day that ended: the new day's answer is fetched");
  scheduler.set('2026-11-29T00:02:00Z');
  t.match(cacheStatus(await stack.get(TODAY)), /^deskie-stats-proxy; hit; /, 'and answers the first poll');
});

t.test('a failed refresh falls back to the stale-if-error rules', async (t) => {
  const { stack, scheduler } = await phased(t);
  const start = stack.clock.nowMs;
  await stack.get(TODAY);
  await moveTo(stack, scheduler, start, 60_000);
  await stack.get(TODAY);
  stack.simulator.set({ fault: 'error500' });
  await moveTo(stack, scheduler, start, FIVE_MINUTES + MARGIN);
  t.equal(stack.simulator.calls, 2, 'the refresh was made, and failed');
  stack.clock.advance(1_000);
  const stale = await stack.get(TODAY);
  t.match(cacheStatus(stale), /^deskie-stats-proxy; fwd=stale; fwd-status=500; detail=deskie-error; ttl=-2$/, 'the next poll asks Deskie and gets the expired entry');
  t.equal(stack.simulator.calls, 3);
});

t.test('closing cancels the refreshes that are due', async (t) => {
  const { stack, scheduler } = await phased(t);
  await stack.get(TODAY);
  await stack.get(TODAY);
  t.equal(scheduler.pending, 1, 'a refresh is due');
  await stack.app.close();
  t.equal(scheduler.pending, 0, 'and cancelled on close');
});

t.test('REFRESH_AHEAD is retired: accepted, ignored, and named in a warning at start-up', async (t) => {
  t.doesNotThrow(() => loadConfig({ REFRESH_AHEAD: 'half' }), 'any value still starts the server');
  const { logger, lines } = capturedLog();
  await startStack(t, { env: { REFRESH_AHEAD: '0.1' }, logger });
  const warnings = lines.filter((line) => line['level'] === 40 && /REFRESH_AHEAD/.test(String(line['msg'])));
  t.equal(warnings.length, 1, 'one warning');
  t.match(warnings[0], { setting: 'REFRESH_AHEAD', msg: /retired and ignored.*REFRESH_MARGIN_MS/ });
  const { logger: quiet, lines: quietLines } = capturedLog();
  await startStack(t, { logger: quiet });
  t.notOk(quietLines.some((line) => /REFRESH_AHEAD/.test(String(line['msg']))), 'none when it is not set');
});
