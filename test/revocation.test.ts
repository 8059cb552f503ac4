import t from 'tap';
import { capturedLog, everyCapturedLine } from './helpers/log.js';
import { DEMO, OTHER, settled, startStack, until } from './helpers/stack.js';

const TODAY = '/api/stats_leaderboard.json?period=today';
const MONTH = '/api/stats_leaderboard.json?period=this_month';
const RECHECK_SECONDS = 60;
const ENV = { AUTH_RECHECK_SECONDS: String(RECHECK_SECONDS), AUTH_FAILURE_TTL_SECONDS: '30' };

/** Every stack logs at trace into everyCapturedLine, which the last test greps for the credentials used. */
const traced = () => ({ env: ENV, logger: capturedLog('trace').logger });

const entries = async (stack: Awaited<ReturnType<typeof startStack>>): Promise<number> =>
  (JSON.parse((await stack.get('/healthz', { authorization: null })).text) as { entries: number }).entries;

t.test('a key revoked in Deskie stops getting cached answers within AUTH_RECHECK_SECONDS, and its entries are dropped', async (t) => {
  const { logger, lines } = capturedLog('trace');
  const stack = await startStack(t, { env: ENV, logger });
  await stack.get(TODAY);
  await stack.get(MONTH);
  await stack.get(MONTH, { authorization: OTHER });
  t.equal(stack.simulator.calls, 3);
  stack.simulator.revoke('demo@example.com');

  stack.clock.advance(RECHECK_SECONDS * 500);
  const within = await stack.get(MONTH);
  t.equal(within.status, 200, 'well within the recheck time a cached answer is still served (the bound the setting sets)');
  t.match(within.headers['cache-status'], /; hit;/);
  await settled(stack);
  t.equal(stack.simulator.calls, 3, 'and Deskie is not asked');

  stack.clock.advance(RECHECK_SECONDS * 1000);
  const rechecked = await stack.get(MONTH);
  t.equal(rechecked.status, 401, "past it, the request goes to Deskie and gets Deskie's 401");
  t.notMatch(rechecked.text, /staff/, 'and no data');
  t.equal(stack.simulator.calls, 4, 'one call: the recheck');
  t.equal(await entries(stack), 1, "the credential's two entries are dropped; the other credential's stays");
  t.ok(
    lines.some((line) => line['msg'] === 'Deskie refused a credential: its cached answers were dropped' && line['removed'] === 2),
    'the drop is logged with how many entries went',
  );

  const today = await stack.get(TODAY);
  t.equal(today.status, 401, 'its other query, fresh until now, gets no data either');
  t.equal(stack.simulator.calls, 4, 'answered from the remembered refusal, without a call');
  stack.clock.advance(31_000);
  t.equal((await stack.get(TODAY)).status, 401, 'after the refusal is forgotten, Deskie is asked again: there is no entry to serve');
  t.equal(stack.simulator.calls, 5);

  const other = await stack.get(MONTH, { authorization: OTHER });
  t.equal(other.status, 200, 'another credential is not affected');
  t.match(other.headers['cache-status'], /fwd=request; stored/, 'its own recheck came due and was made');
});

t.test('a credential in use is rechecked in the background before it is due, so its dashboards never wait for it', async (t) => {
  const stack = await startStack(t, traced());
  await stack.get(MONTH);
  await stack.get(TODAY);
  stack.simulator.revoke('demo@example.com');
  stack.clock.advance(RECHECK_SECONDS * 900);
  const hit = await stack.get(MONTH);
  t.equal(hit.status, 200, 'in the last fifth of the recheck time a request is still answered at once');
  t.match(hit.headers['cache-status'], /; hit;/);
  await settled(stack);
  t.equal(stack.simulator.calls, 3, 'while one background call rechecks the credential');
  t.equal((await stack.get(TODAY)).status, 401, "Deskie's refusal took effect before the recheck time was up");
  t.equal(await entries(stack), 0, 'and the entries are gone');
});

t.test('past the recheck time a fresh entry is refreshed once for everyone waiting, then served from the cache again', async (t) => {
  // Deskie's cache off: the recheck within this_month's day brings the changed numbers.
  const stack = await startStack(t, { ...traced(), simulator: { knobs: { deskieCache: false } } });
  const first = await stack.get(MONTH);
  stack.clock.advance(RECHECK_SECONDS * 1000);
  stack.simulator.changeNumbers();
  stack.simulator.hold();
  const pending = Promise.all(Array.from({ length: 10 }, () => stack.get(MONTH)));
  await until(() => stack.simulator.held === 1 && stack.arrivals >= 11);
  stack.simulator.release();
  const answers = await pending;
  t.equal(stack.simulator.calls, 2, 'one recheck call for ten requests');
  const statuses = answers.map((answer) => String(answer.headers['cache-status']));
  t.equal(statuses.filter((status) => /^deskie-stats-proxy; fwd=request; stored; ttl=\d+$/.test(status)).length, 1, 'one request made the recheck (RFC 9211 fwd=request)');
  t.equal(statuses.filter((status) => /^deskie-stats-proxy; fwd=request; collapsed; ttl=\d+$/.test(status)).length, 9, 'the others waited for it');
  t.not(answers[0]?.text, first.text, 'the answer is new as well');

  stack.clock.advance((RECHECK_SECONDS - 1) * 1000);
  t.match((await stack.get(MONTH)).headers['cache-status'], /; hit;/, 'the credential is accepted for another recheck time');
  t.equal(stack.simulator.calls, 2);
});

t.test('when Deskie cannot answer the recheck, the fresh entry answers, says why, and no key of the credential calls again for 30 s', async (t) => {
  const stack = await startStack(t, traced());
  const SATISFACTION = '/api/stats_satisfaction.json?period=this_month';
  await stack.get(MONTH);
  await stack.get(TODAY);
  await stack.get(SATISFACTION);
  stack.clock.advance(RECHECK_SECONDS * 1000);
  stack.simulator.set({ fault: 'error500' });
  const answer = await stack.get(MONTH);
  t.equal(answer.status, 200, 'a Deskie that does not answer cannot revoke anything: the entry still answers');
  t.match(answer.headers['cache-status'], /^deskie-stats-proxy; fwd=request; fwd-status=500; detail=\S+; ttl=\d+$/, 'Cache-Status says the recheck failed');
  const callsAfterFailure = stack.simulator.calls;
  for (let poll = 0; poll < 5; poll++) {
    stack.clock.advance(5_000);
    for (const path of [MONTH, TODAY, SATISFACTION]) {
      t.match((await stack.get(path)).headers['cache-status'], /; hit;/, `poll ${poll + 1} of ${path} within 30 s of the failure is a hit`);
    }
  }
  await settled(stack);
  t.equal(stack.simulator.calls, callsAfterFailure, 'and none of them called Deskie');
  stack.simulator.set({ fault: 'none' });
  stack.simulator.revoke('demo@example.com');
  stack.clock.advance(6_000);
  await stack.get(MONTH);
  await settled(stack);
  t.equal((await stack.get(MONTH)).status, 401, 'once the 30 s are up and Deskie answers again, the revocation takes effect');
});

t.test('a recheck ahead that Deskie could not answer is tried again after 30 s, from the same entry', async (t) => {
  // Ten minutes: the last fifth (two) is longer than the 30 s between tries.
  const stack = await startStack(t, { env: { ...ENV, AUTH_RECHECK_SECONDS: '600' }, logger: capturedLog('trace').logger });
  await stack.get(MONTH);
  stack.clock.advance(510_000);
  stack.simulator.set({ fault: 'error500' });
  await stack.get(MONTH);
  await settled(stack);
  t.equal(stack.simulator.calls, 2, 'the recheck ahead was tried and failed');
  stack.clock.advance(5_000);
  await stack.get(MONTH);
  await settled(stack);
  t.equal(stack.simulator.calls, 2, 'not again within 30 s');
  stack.simulator.set({ fault: 'none' });
  stack.clock.advance(26_000);
  t.match((await stack.get(MONTH)).headers['cache-status'], /; hit;/, 'still answered at once');
  await settled(stack);
  t.equal(stack.simulator.calls, 3, 'and rechecked in the background again, though this entry had a failed refresh');
  stack.clock.advance(300_000);
  t.match((await stack.get(MONTH)).headers['cache-status'], /; hit;/, 'the credential is accepted anew');
});

t.test('a page=all entry does not start a recheck ahead: it would cost every page for what one proves', async (t) => {
  const stack = await startStack(t, traced());
  const ALL = '/api/stats_staff_statuses.json?period=this_month&page=all';
  await stack.get(ALL);
  const callsForAll = stack.simulator.calls;
  stack.clock.advance(RECHECK_SECONDS * 900);
  t.match((await stack.get(ALL)).headers['cache-status'], /; hit;/);
  await settled(stack);
  t.equal(stack.simulator.calls, callsForAll, 'no call in the last fifth');
  await stack.get(MONTH);
  stack.clock.advance(RECHECK_SECONDS * 50);
  t.match((await stack.get(ALL)).headers['cache-status'], /; hit;/, 'a single-page entry of the same credential renewed it');
});

t.test('a 200 for a call sent before the refusal neither stores its answer nor accepts the credential again', async (t) => {
  const stack = await startStack(t, traced());
  await stack.get(TODAY);
  stack.simulator.hold();
  const slow = stack.get(MONTH);
  await until(() => stack.simulator.held === 1);
  // The held call was let in while the key was valid; Deskie refuses the next one, answered at once.
  stack.simulator.revoke('demo@example.com');
  stack.simulator.stopHolding();
  stack.clock.advance(RECHECK_SECONDS * 1000);
  const today = await stack.get(TODAY);
  stack.simulator.release();
  const month = await slow;
  t.equal(today.status, 401);
  t.equal(month.status, 401, 'the answer that arrived after the refusal is not served');
  t.equal(await entries(stack), 0, 'nor stored');
  const again = await stack.get(MONTH);
  t.equal(again.status, 401, 'and the credential stays refused');
  t.match(again.headers['cache-status'], /remembered-401/, 'answered from the remembered refusal, without a call');
});

t.test('the credential recheck is per credential: one call renews it for all its entries', async (t) => {
  const stack = await startStack(t, traced());
  await stack.get(MONTH);
  await stack.get('/api/stats_satisfaction.json?period=this_month');
  stack.clock.advance(RECHECK_SECONDS * 1000);
  await stack.get(MONTH);
  t.equal(stack.simulator.calls, 3, 'the first request past the recheck time called Deskie');
  const satisfaction = await stack.get('/api/stats_satisfaction.json?period=this_month');
  t.match(satisfaction.headers['cache-status'], /; hit;/, "another entry of the same credential is a hit: Deskie has just accepted it");
  t.equal(stack.simulator.calls, 3);
});

t.test('no credential these tests used appears in any log line, the refusals and drops included', async (t) => {
  t.ok(everyCapturedLine.length > 20, `lines were captured (${everyCapturedLine.length})`);
  for (const secret of [DEMO.slice('Basic '.length), OTHER.slice('Basic '.length), 'other@example.com:secret', 'demo@example.com:demo']) {
    t.notOk(everyCapturedLine.some((line) => line.includes(secret)), `${secret.slice(0, 4)}… appears in no line`);
  }
});
