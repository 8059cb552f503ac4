import t from 'tap';
import { CALLS_AT_ONCE_MS } from '../../src/cache/credential-standing.js';
import { DEMO, OTHER, type Stack, startStack, until, WRONG } from '../helpers/stack.js';

const RECHECK_SECONDS = 60;
/** Ten panels of one dashboard: ten queries, each its own cache key, all fresh for longer than the recheck time. */
const PANELS = ['today', 'yesterday', 'this_week', 'last_week', 'this_month', 'last_month', 'month_2', 'this_year', 'last_year', 'last_7_days'].map(
  (period) => `/api/stats_leaderboard.json?period=${period}`,
);
const cacheStatus = (answer: { headers: Record<string, string | string[] | undefined> }): string => String(answer.headers['cache-status']);

/**
 * Sends `paths` at once while Deskie holds its answers, waits until the
 * proxy has them all and a call has reached Deskie, then lets Deskie answer.
 * `held` is how many calls had reached Deskie by then.
 */
async function panels(stack: Stack, paths: readonly string[], authorization: string) {
  stack.simulator.hold();
  const arrivedBefore = stack.arrivals;
  const pending = paths.map((path) => stack.get(path, { authorization }));
  await until(() => stack.arrivals === arrivedBefore + paths.length && stack.simulator.held >= 1);
  // Turns for the requests to reach the cache and for any call they would make to reach Deskie.
  for (let turn = 0; turn < 200; turn++) await new Promise((resolve) => setImmediate(resolve));
  const held = stack.simulator.held;
  stack.simulator.release();
  return { held, answers: await Promise.all(pending) };
}

t.test('a key revoked in Deskie: ten panels past the recheck time cost one call, and every panel gets its 401', async (t) => {
  const stack = await startStack(t, { env: { AUTH_RECHECK_SECONDS: String(RECHECK_SECONDS) } });
  t.equal((await stack.get(PANELS[0] as string)).status, 200, 'the key worked');
  stack.simulator.revoke('demo@example.com');
  stack.clock.advance(RECHECK_SECONDS * 1000);
  const callsBefore = stack.simulator.calls;
  const { held, answers } = await panels(stack, PANELS, DEMO);
  t.equal(held, 1, 'while the first call was under way, no other panel called Deskie');
  t.ok(stack.simulator.calls - callsBefore <= 2, `at most two calls reached Deskie (${stack.simulator.calls - callsBefore})`);
  t.same(
    answers.map((answer) => answer.status),
    PANELS.map(() => 401),
    'every panel gets the 401, none a 503 after waiting for the queue',
  );
  t.equal(answers.filter((answer) => /remembered-401/.test(cacheStatus(answer))).length, PANELS.length - 1, "the panels that waited were answered with that call's 401");
  t.equal((await stack.get(PANELS[1] as string)).status, 401, 'and the next poll is answered from the remembered refusal');
  t.equal(stack.simulator.calls - callsBefore, 1);
});

t.test('a key revoked within its recheck time, ten panels after a quiet spell: one call, and every panel gets its 401', async (t) => {
  const stack = await startStack(t, { env: { AUTH_RECHECK_SECONDS: String(RECHECK_SECONDS) } });
  t.equal((await stack.get(PANELS[0] as string)).status, 200, 'the key worked, and is still vouched for');
  stack.simulator.revoke('demo@example.com');
  stack.clock.advance(CALLS_AT_ONCE_MS);
  const callsBefore = stack.simulator.calls;
  const { held, answers } = await panels(stack, PANELS.slice(1), DEMO);
  t.equal(held, 1, 'while the first call was under way, no other panel called Deskie');
  t.same(
    answers.map((answer) => answer.status),
    PANELS.slice(1).map(() => 401),
    'every panel gets the 401, none a 503 after waiting for the queue',
  );
  t.equal(stack.simulator.calls - callsBefore, 1, 'one call reached Deskie');
});

t.test('a key revoked seconds after Deskie accepted it: no call waiting its turn is sent once the 401 has come, and every panel gets it', async (t) => {
  const stack = await startStack(t, { env: { AUTH_RECHECK_SECONDS: String(RECHECK_SECONDS) } });
  t.equal((await stack.get(PANELS[0] as string)).status, 200, 'the key worked, and is still vouched for');
  stack.simulator.revoke('demo@example.com');
  const callsBefore = stack.simulator.calls;
  const { held, answers } = await panels(stack, PANELS.slice(1), DEMO);
  t.ok(held < PANELS.length - 1, `the budget let ${held} calls go at once; the other panels waited their turn`);
  t.same(
    answers.map((answer) => answer.status),
    PANELS.slice(1).map(() => 401),
    'every panel gets the 401',
  );
  t.equal(stack.simulator.calls - callsBefore, held, 'only the calls already under way when the 401 came reached Deskie');
});

t.test('a bad key: six panels at once cost one call, and every panel gets its 401', async (t) => {
  const stack = await startStack(t);
  const { held, answers } = await panels(stack, PANELS.slice(0, 6), WRONG);
  t.equal(held, 1, 'one call reached Deskie while the panels waited');
  t.ok(stack.simulator.calls <= 2, `at most two calls reached Deskie (${stack.simulator.calls})`);
  t.same(
    answers.map((answer) => answer.status),
    [401, 401, 401, 401, 401, 401],
    'every panel gets the 401',
  );
});

t.test('with AUTH_FAILURE_TTL_SECONDS=0 the panels that waited still get the call they waited for, and nothing is remembered after', async (t) => {
  const stack = await startStack(t, { env: { AUTH_FAILURE_TTL_SECONDS: '0' } });
  const { answers } = await panels(stack, PANELS.slice(0, 6), WRONG);
  t.same(
    answers.map((answer) => answer.status),
    [401, 401, 401, 401, 401, 401],
  );
  t.equal(stack.simulator.calls, 1, 'one call for the six');
  t.equal((await stack.get(PANELS[0] as string, { authorization: WRONG })).status, 401);
  t.equal(stack.simulator.calls, 2, 'a later request asks Deskie again: no refusal is remembered');
});

t.test('a valid key due its recheck: one call rechecks it for every panel, the others are hits', async (t) => {
  const stack = await startStack(t, { env: { AUTH_RECHECK_SECONDS: String(RECHECK_SECONDS) } });
  for (const path of PANELS) await stack.get(path);
  stack.clock.advance(RECHECK_SECONDS * 1000);
  const callsBefore = stack.simulator.calls;
  const { answers } = await panels(stack, PANELS, DEMO);
  t.same(
    answers.map((answer) => answer.status),
    PANELS.map(() => 200),
  );
  t.equal(stack.simulator.calls - callsBefore, 1, 'one call');
  t.equal(answers.filter((answer) => /^deskie-stats-proxy; fwd=request; stored;/.test(cacheStatus(answer))).length, 1, 'one panel made the recheck');
  t.equal(answers.filter((answer) => /; hit;/.test(cacheStatus(answer))).length, PANELS.length - 1, 'the others waited for it and were answered from the cache');
});

t.test('a new valid key: the panels that waited for its first call then call Deskie together', async (t) => {
  const stack = await startStack(t);
  const { held, answers } = await panels(stack, PANELS, DEMO);
  t.equal(held, 1, 'one call first');
  t.same(
    answers.map((answer) => answer.status),
    PANELS.map(() => 200),
  );
  t.equal(stack.simulator.calls, PANELS.length, 'then one call per panel, as before');
});

t.test("when Deskie fails the first call, the panels that waited make their own, once each", async (t) => {
  const stack = await startStack(t, { env: { AUTH_RECHECK_SECONDS: String(RECHECK_SECONDS) } });
  await stack.get(PANELS[0] as string);
  stack.clock.advance(RECHECK_SECONDS * 1000);
  stack.simulator.set({ fault: 'error500' });
  const callsBefore = stack.simulator.calls;
  const { held, answers } = await panels(stack, PANELS.slice(1, 6), DEMO);
  t.equal(held, 1, 'one call first');
  t.same(
    answers.map((answer) => answer.status),
    [500, 500, 500, 500, 500],
    "each gets Deskie's failure",
  );
  t.equal(stack.simulator.calls - callsBefore, 5, 'a Deskie failure says nothing of the credential: each panel asked once');
});

t.test('when the budget lets the first call not out in time, the panels that waited get its 503 rather than queue again', async (t) => {
  const stack = await startStack(t, { env: { UPSTREAM_CONCURRENCY: '1', UPSTREAM_QUEUE_MS: '1000' } });
  stack.simulator.hold();
  // Another credential's call holds the only slot until the end.
  const blocking = stack.get(PANELS[0] as string, { authorization: OTHER });
  await until(() => stack.simulator.held === 1);
  const pending = Promise.all(PANELS.slice(0, 5).map((path) => stack.get(path)));
  let done = false;
  void pending.then(() => (done = true));
  let mostQueued = 0;
  while (!done) {
    const health = JSON.parse((await stack.get('/healthz', { authorization: null })).text) as { upstream: { queued: number } };
    mostQueued = Math.max(mostQueued, health.upstream.queued);
  }
  const answers = await pending;
  t.same(
    answers.map((answer) => answer.status),
    [503, 503, 503, 503, 503],
  );
  t.equal(mostQueued, 1, 'only the first call waited in the budget queue');
  stack.simulator.release();
  t.equal((await blocking).status, 200);
});

t.test('a panel waits for the first call no longer than it would wait its turn in the budget (UPSTREAM_QUEUE_MS), then gets the 503', async (t) => {
  const stack = await startStack(t, { env: { UPSTREAM_QUEUE_MS: '150' } });
  stack.simulator.hold();
  const first = stack.get(PANELS[0] as string);
  await until(() => stack.simulator.held === 1);
  const waited = await Promise.all(PANELS.slice(1, 5).map((path) => stack.get(path)));
  t.same(
    waited.map((answer) => answer.status),
    [503, 503, 503, 503],
    'answered while the first call is still under way',
  );
  t.equal(cacheStatus(waited[0] as { headers: Record<string, string | string[] | undefined> }), 'deskie-stats-proxy; detail=budget-exhausted');
  t.match(waited[0]?.headers['retry-after'], /^\d+$/);
  t.equal(stack.simulator.calls, 1, 'and none called Deskie');
  stack.simulator.release();
  t.equal((await first).status, 200);
});
