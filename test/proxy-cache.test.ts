import t from 'tap';
import { DEMO, OTHER, startStack, ttlOf, until, WRONG } from './helpers/stack.js';

const LEADERBOARD = '/api/stats_leaderboard.json';

t.test('a miss is fetched once and stored; the next request is a hit with the same bytes', async (t) => {
  const stack = await startStack(t, { now: '2026-11-28T12:00:00Z' });
  const first = await stack.get(`${LEADERBOARD}?period=this_month`);
  t.equal(first.status, 200);
  t.equal(first.headers['cache-status'], 'deskie-stats-proxy; fwd=miss; stored; ttl=86400');
  t.equal(first.headers['cache-control'], 'private, max-age=86400');
  t.equal(first.headers['age'], '0');
  t.match(first.headers['content-type'], /^application\/json/);

  stack.clock.advance(90_500);
  const second = await stack.get(`${LEADERBOARD}?period=this_month`);
  t.equal(second.headers['cache-status'], 'deskie-stats-proxy; hit; ttl=86310', 'ttl counts down with the clock');
  t.equal(second.headers['age'], '90');
  t.equal(second.headers['cache-control'], 'private, max-age=86400', 'max-age is the whole lifetime; minus Age it leaves ttl');
  t.equal(second.text, first.text, 'same body');
  t.equal(stack.simulator.calls, 1, 'one upstream call');
});

t.test('50 concurrent identical requests make one upstream call', async (t) => {
  const stack = await startStack(t);
  stack.simulator.hold();
  const pending = Promise.all(Array.from({ length: 50 }, () => stack.get(`${LEADERBOARD}?period=today`)));
  await until(() => stack.arrivals === 50 && stack.simulator.held === 1);
  stack.simulator.release();
  const answers = await pending;
  t.equal(stack.simulator.calls, 1, 'one call reached Deskie');
  t.ok(answers.every((a) => a.status === 200 && a.text === answers[0]?.text), 'all got the same 200');
  const statuses = answers.map((a) => String(a.headers['cache-status']));
  t.equal(statuses.filter((s) => s.includes('fwd=miss; stored')).length, 1, 'one request stored the answer');
  t.equal(statuses.filter((s) => s === 'deskie-stats-proxy; fwd=miss; collapsed; ttl=300').length, 49, 'all 49 others arrived while it was held, and waited for it');
});

t.test('equivalent queries share one entry whatever their order or time form', async (t) => {
  const stack = await startStack(t);
  await stack.get(`${LEADERBOARD}?period=today&user_id[]=2&user_id[]=1&channel=email`);
  const reordered = await stack.get(`${LEADERBOARD}?channel=email&user_id[]=1&period=today&user_id[]=2`);
  t.match(reordered.headers['cache-status'], /; hit;/);
  await stack.get(`${LEADERBOARD}?from_time=2026-11-01&to_time=2026-11-02`);
  const sameRange = await stack.get(`${LEADERBOARD}?from_time=01.11.2026&to_time=2026-11-02%2000:00:00%20%2B0000`);
  t.match(sameRange.headers['cache-status'], /; hit;/, 'another spelling of the same instants is a hit');
  t.equal(stack.simulator.calls, 2);
});

t.test('staff_id=5 and staff_id[]=5 are one entry and one upstream call; so are page=1 and no page', async (t) => {
  const stack = await startStack(t);
  await stack.get(`${LEADERBOARD}?period=today&staff_id=5`);
  t.match((await stack.get(`${LEADERBOARD}?period=today&staff_id[]=5`)).headers['cache-status'], /; hit;/);
  t.match((await stack.get(`${LEADERBOARD}?period=today&staff_id=5&staff_id[]=5`)).headers['cache-status'], /; hit;/);
  await stack.get('/api/stats_staff_statuses.json?period=today&page=1');
  t.match((await stack.get('/api/stats_staff_statuses.json?period=today')).headers['cache-status'], /; hit;/);
  t.equal(stack.simulator.calls, 2);
  t.same(stack.simulator.requests.map((r) => r.query), ['period=today&staff_id=5', 'period=today'], 'one form of each goes upstream');
});

t.test('a second credential makes its own call and never gets the first one\'s entry', async (t) => {
  const stack = await startStack(t);
  await stack.get(`${LEADERBOARD}?period=today`, { authorization: DEMO });
  const other = await stack.get(`${LEADERBOARD}?period=today`, { authorization: OTHER });
  t.equal(other.status, 200);
  t.match(other.headers['cache-status'], /fwd=miss; stored/);
  t.equal(stack.simulator.calls, 2, 'each credential made its own call');
  const sent = stack.simulator.requests.map((r) => r.headers['authorization']);
  t.same(sent, [DEMO, OTHER], 'each call carried its own credential');
});

t.test('a wrong password gets Deskie\'s 401 even while a good fetch of the same query is in flight', async (t) => {
  const stack = await startStack(t);
  // Known to Deskie already, so the two calls do not queue for the new-credential share.
  await stack.get(`${LEADERBOARD}?period=yesterday`, { authorization: DEMO });
  stack.simulator.hold();
  const pending = Promise.all([
    stack.get(`${LEADERBOARD}?period=today`, { authorization: DEMO }),
    stack.get(`${LEADERBOARD}?period=today`, { authorization: WRONG }),
  ]);
  await until(() => stack.simulator.held === 2);
  t.same(
    stack.simulator.requests.slice(-2).map((r) => r.headers['authorization']).sort(),
    [DEMO, WRONG].sort(),
    'both calls were at Deskie at once: the wrong password did not join the good fetch',
  );
  stack.simulator.release();
  const [good, wrong] = await pending;
  t.equal(good.status, 200);
  t.equal(wrong.status, 401, 'Deskie said no');
  t.notMatch(wrong.text, /staff_name/, 'no cached statistics in the body');
  const after = await stack.get(`${LEADERBOARD}?period=today`, { authorization: WRONG });
  t.equal(after.status, 401, 'still no after the good answer is cached');
  t.notMatch(after.text, /staff_name/);
  t.equal(after.headers['cache-status'], 'deskie-stats-proxy; hit; detail=remembered-401', 'the refusal is answered from memory');
  t.equal(stack.simulator.calls, 3, 'no statistics were stored for the wrong password, and its 401 was remembered');
});

t.test('requests that wait on the refetch of an expired entry say fwd=stale; collapsed', async (t) => {
  const stack = await startStack(t, { env: { STALE_WHILE_REVALIDATE_SECONDS: '0' } });
  await stack.get(`${LEADERBOARD}?period=today`);
  stack.clock.advance(300_000);
  stack.simulator.hold();
  const pending = Promise.all(Array.from({ length: 5 }, () => stack.get(`${LEADERBOARD}?period=today`)));
  await until(() => stack.arrivals === 6 && stack.simulator.held === 1);
  stack.simulator.release();
  const answers = await pending;
  const statuses = answers.map((a) => String(a.headers['cache-status'])).sort();
  t.same(statuses, [...Array(4).fill('deskie-stats-proxy; fwd=stale; collapsed; ttl=300'), 'deskie-stats-proxy; fwd=stale; stored; ttl=300']);
  t.equal(stack.simulator.calls, 2);
});

t.test('an entry expires with its TTL and the next request fetches again', async (t) => {
  const stack = await startStack(t, { now: '2026-11-28T12:00:00Z', env: { STALE_WHILE_REVALIDATE_SECONDS: '0' } });
  await stack.get(`${LEADERBOARD}?period=today`);
  stack.clock.advance(299_000);
  t.match((await stack.get(`${LEADERBOARD}?period=today`)).headers['cache-status'], /hit; ttl=1$/);
  stack.clock.advance(1_000);
  const refetched = await stack.get(`${LEADERBOARD}?period=today`);
  t.equal(refetched.headers['cache-status'], 'deskie-stats-proxy; fwd=stale; stored; ttl=300');
  t.equal(stack.simulator.calls, 2);
});

t.test('yesterday before and after midnight are different entries', async (t) => {
  const stack = await startStack(t, { now: '2026-11-28T23:59:50Z' });
  const before = await stack.get(`${LEADERBOARD}?period=yesterday`);
  t.equal(ttlOf(before), 10, 'fresh only until midnight');
  stack.clock.set('2026-11-29T00:00:30Z');
  const after = await stack.get(`${LEADERBOARD}?period=yesterday`);
  t.match(after.headers['cache-status'], /fwd=miss; stored; ttl=86370/, 'a new window, a new entry');
  t.equal(stack.simulator.calls, 2);
});

t.test('the ttl follows the table and window changes in UTC', async (t) => {
  const stack = await startStack(t, { now: '2026-11-28T23:58:00Z' });
  const cases: Array<[string, number]> = [
    ['today', 120], // 5 minutes, cut at midnight
    ['last_24_hours', 300], // rolling: the table alone
    ['last_7_days', 120], // days end at midnight
    ['yesterday', 120],
    ['this_week', 86_400], // 2026-11-28 is a Saturday: the week turns on Monday, after more than the table's day
    ['this_month', 86_400],
    ['last_month', 2 * 86_400 + 120], // until 1 December
    ['this_year', 86_400],
    ['last_year', 33 * 86_400 + 120], // until 1 January
  ];
  for (const [period, ttl] of cases) {
    t.equal(ttlOf(await stack.get(`${LEADERBOARD}?period=${period}`)), ttl, period);
  }
  t.equal(ttlOf(await stack.get(`${LEADERBOARD}?from_time=2026-11-01%2010:00&to_time=2026-11-01%2012:00`)), 3600, 'short custom range: 1 hour');
  t.equal(ttlOf(await stack.get(`${LEADERBOARD}?from_time=2026-11-01&to_time=2026-11-10`)), 86_400, 'long custom range: 1 day');
});

t.test('the ttl follows midnight in Pacific/Kiritimati, 14 hours ahead of UTC', async (t) => {
  // 09:58:00 UTC is 23:58:00 in Kiritimati.
  const kiritimati = await startStack(t, { now: '2026-11-28T09:58:00Z', env: { DESKIE_TIMEZONE: 'Pacific/Kiritimati' } });
  const utc = await startStack(t, { now: '2026-11-28T09:58:00Z' });
  t.equal(ttlOf(await kiritimati.get(`${LEADERBOARD}?period=today`)), 120, 'Kiritimati: two minutes to midnight');
  t.equal(ttlOf(await utc.get(`${LEADERBOARD}?period=today`)), 300, 'UTC: the table value');
  t.equal(ttlOf(await kiritimati.get(`${LEADERBOARD}?period=this_month`)), 86_400);
  t.equal(ttlOf(await kiritimati.get('/api/stats_satisfaction.json?period=yesterday')), 120);
  kiritimati.clock.set('2026-11-28T10:00:30Z');
  const tomorrow = await kiritimati.get(`${LEADERBOARD}?period=today`);
  t.match(tomorrow.headers['cache-status'], /fwd=miss; stored; ttl=300/, 'a new day there is a new entry');
});

t.test('the week turns over at the configured week start', async (t) => {
  // Saturday 2026-11-28 23:58 UTC.
  const sunday = await startStack(t, { now: '2026-11-28T23:58:00Z', env: { DESKIE_WEEK_START: 'sunday' } });
  t.equal(ttlOf(await sunday.get(`${LEADERBOARD}?period=this_week`)), 120, 'a Sunday start is two minutes away');
  t.equal(ttlOf(await sunday.get(`${LEADERBOARD}?period=last_week`)), 120);
});

t.test('a day on the October DST change is 25 hours; a "1 day" lifetime stays 24 hours', async (t) => {
  // 2026-10-25 is the last Sunday of October; Berlin goes from +02:00 to +01:00 at 03:00.
  const stack = await startStack(t, { now: '2026-10-24T22:00:00Z', env: { DESKIE_TIMEZONE: 'Europe/Berlin' } });
  // 00:00 in Berlin: yesterday's window changes 25 hours later, the table says 1 day.
  t.equal(ttlOf(await stack.get(`${LEADERBOARD}?period=yesterday`)), 86_400);
  stack.clock.set('2026-10-25T22:58:00Z'); // 23:58 in Berlin, after the change
  t.equal(ttlOf(await stack.get(`${LEADERBOARD}?period=today`)), 120, 'midnight is two minutes away in winter time');
});

t.test('month end and year end cut freshness at the turn', async (t) => {
  const stack = await startStack(t, { now: '2026-12-31T23:59:30Z' });
  t.equal(ttlOf(await stack.get(`${LEADERBOARD}?period=this_year`)), 30);
  t.equal(ttlOf(await stack.get(`${LEADERBOARD}?period=this_month`)), 30);
  t.equal(ttlOf(await stack.get(`${LEADERBOARD}?period=month_3`)), 30);
  stack.clock.set('2027-01-01T00:00:10Z');
  const lastYear = await stack.get(`${LEADERBOARD}?period=last_year`);
  t.match(lastYear.headers['cache-status'], /fwd=miss; stored; ttl=31535990/, 'last year is 2026 now, fresh until 2028');
});

t.test('the operator can override a period\'s TTL in the config file', async (t) => {
  const { mkdtempSync, writeFileSync } = await import('node:fs');
  const { join } = await import('node:path');
  const { tmpdir } = await import('node:os');
  const file = join(mkdtempSync(join(tmpdir(), 'proxy-config-')), 'proxy.json');
  writeFileSync(file, JSON.stringify({ ttlSeconds: { today: 60, this_month: 7 * 86_400 } }));
  const stack = await startStack(t, { now: '2026-11-28T12:00:00Z', env: { CONFIG_FILE: file } });
  t.equal(ttlOf(await stack.get(`${LEADERBOARD}?period=today`)), 60);
  t.equal(ttlOf(await stack.get(`${LEADERBOARD}?period=this_month`)), 2 * 86_400 + 12 * 3600, 'still cut at the month\'s end');
});

t.test('a per-endpoint ttlSeconds shows in that endpoint\'s ttl while the others keep the table', async (t) => {
  const { mkdtempSync, writeFileSync } = await import('node:fs');
  const { join } = await import('node:path');
  const { tmpdir } = await import('node:os');
  const file = join(mkdtempSync(join(tmpdir(), 'proxy-config-')), 'proxy.json');
  writeFileSync(file, JSON.stringify({ ttlSeconds: { stats_staff_statuses: { today: 60 } } }));
  const stack = await startStack(t, { now: '2026-11-28T12:00:00Z', env: { CONFIG_FILE: file } });
  t.equal(ttlOf(await stack.get('/api/stats_staff_statuses.json?period=today')), 60);
  t.equal(ttlOf(await stack.get(`${LEADERBOARD}?period=today`)), 300);
  t.equal(ttlOf(await stack.get('/api/stats_satisfaction.json?period=today')), 300);
});

t.test('staff statuses and satisfaction are cached by the same rules', async (t) => {
  const stack = await startStack(t);
  for (const path of ['/api/stats_staff_statuses.json?period=today&page=2', '/api/stats_satisfaction.json?period=today&limit=50']) {
    t.match((await stack.get(path)).headers['cache-status'], /fwd=miss; stored; ttl=300/);
    t.match((await stack.get(path)).headers['cache-status'], /hit; ttl=300/);
  }
  t.equal(stack.simulator.calls, 2);
});

t.test('HEAD is answered from the same entry without a body', async (t) => {
  const stack = await startStack(t);
  await stack.get(`${LEADERBOARD}?period=today`);
  const head = await stack.get(`${LEADERBOARD}?period=today`, { method: 'HEAD' });
  t.equal(head.status, 200);
  t.equal(head.text, '');
  t.match(head.headers['cache-status'], /hit/);
  t.equal(stack.simulator.calls, 1);
});

t.test('a month-long lifetime is a calendar month in the account zone', async (t) => {
  // 15:00 UTC on 28 February 2027 is already 05:00 on 1 March in Kiritimati:
  // last_month (February there) stays fresh until April begins there.
  const stack = await startStack(t, { now: '2027-02-28T15:00:00Z', env: { DESKIE_TIMEZONE: 'Pacific/Kiritimati' } });
  const expected = (Date.parse('2027-03-31T10:00:00Z') - Date.parse('2027-02-28T15:00:00Z')) / 1000;
  t.equal(ttlOf(await stack.get(`${LEADERBOARD}?period=last_month`)), expected);
});

t.test('a miss tells its freshness as of when Deskie answered', async (t) => {
  // The clock is three seconds later once Deskie has received the request, as
  // if Deskie took that long to answer.
  const start = Date.parse('2026-11-28T12:00:00Z');
  let deskieCalls = (): number => 0;
  const stack = await startStack(t, { clock: () => start + (deskieCalls() > 0 ? 3_000 : 0) });
  deskieCalls = () => stack.simulator.calls;
  const answer = await stack.get(`${LEADERBOARD}?period=today`);
  t.equal(ttlOf(answer), 297, 'three seconds of the five minutes went by');
});

t.test('the 23-hour March day in Berlin: today ends at midnight, yesterday after it is that short day', async (t) => {
  const stack = await startStack(t, { now: '2026-03-29T21:58:00Z', env: { DESKIE_TIMEZONE: 'Europe/Berlin' } }); // 23:58 CEST
  t.equal(ttlOf(await stack.get(`${LEADERBOARD}?period=today`)), 120);
  stack.clock.set('2026-03-29T22:00:30Z'); // 00:00:30 on the 30th
  const yesterday = await stack.get(`${LEADERBOARD}?period=yesterday&format=rows`);
  t.same(JSON.parse(yesterday.text).window, { from: '2026-03-29T00:00:00.000+01:00', to: '2026-03-30T00:00:00.000+02:00', timezone: 'Europe/Berlin' });
});

t.test('week, month and year turn over at midnight in the account zone, over HTTP', async (t) => {
  // Sunday 2026-05-31 23:59:30 in Berlin (21:59:30 UTC) is the end of a week and a month.
  const stack = await startStack(t, { now: '2026-05-31T21:59:30Z', env: { DESKIE_TIMEZONE: 'Europe/Berlin' } });
  for (const period of ['this_week', 'last_week', 'this_month', 'last_month', 'today']) {
    t.equal(ttlOf(await stack.get(`${LEADERBOARD}?period=${period}`)), 30, `${period} changes at Berlin's midnight`);
  }
  stack.clock.set('2026-12-31T22:59:30Z'); // 23:59:30 on New Year's Eve in Berlin
  t.equal(ttlOf(await stack.get(`${LEADERBOARD}?period=this_year`)), 30);
  t.equal(ttlOf(await stack.get(`${LEADERBOARD}?period=last_year`)), 30);
  stack.clock.set('2026-12-31T23:00:10Z');
  const lastYear = await stack.get(`${LEADERBOARD}?period=last_year&format=rows`);
  t.match(lastYear.headers['cache-status'], /fwd=miss/, 'a new year, a new entry');
  t.equal(JSON.parse(lastYear.text).window.from, '2026-01-01T00:00:00.000+01:00');
});

t.test('in America/Santiago, whose 6 September 2026 has no midnight, every calendar period is right', async (t) => {
  const stack = await startStack(t, { now: '2026-09-06T03:58:00Z', env: { DESKIE_TIMEZONE: 'America/Santiago' } }); // 23:58 on the 5th (-04)
  t.equal(ttlOf(await stack.get(`${LEADERBOARD}?period=today`)), 120, 'the 5th ends when the clocks jump to 01:00');
  stack.clock.set('2026-09-07T02:58:00Z'); // 23:58 on the 6th (-03)
  t.equal(ttlOf(await stack.get(`${LEADERBOARD}?period=today`)), 120, 'the 23-hour 6th ends at midnight');
  stack.clock.set('2026-09-07T03:30:00Z'); // 00:30 on the 7th
  const yesterday = await stack.get(`${LEADERBOARD}?period=yesterday&format=rows`);
  t.match(yesterday.headers['cache-status'], /fwd=miss/, 'not a hit on the window of the 5th');
  t.same(JSON.parse(yesterday.text).window, { from: '2026-09-06T01:00:00.000-03:00', to: '2026-09-07T00:00:00.000-03:00', timezone: 'America/Santiago' });
});

t.test('If-None-Match: * is answered 304 when there is an answer', async (t) => {
  const stack = await startStack(t);
  await stack.get(`${LEADERBOARD}?period=today`);
  const notModified = await stack.get(`${LEADERBOARD}?period=today`, { headers: { 'if-none-match': '*' } });
  t.equal(notModified.status, 304);
  t.equal(notModified.text, '');
});

t.test('a client that leaves during a miss does not waste the call: the answer is stored for the next one', async (t) => {
  const { request } = await import('undici');
  const stack = await startStack(t);
  stack.simulator.hold();
  const controller = new AbortController();
  const leaving = request(`${stack.proxyUrl}${LEADERBOARD}?period=today`, { headers: { authorization: DEMO }, signal: controller.signal }).catch((error: unknown) => error);
  await until(() => stack.simulator.held === 1);
  controller.abort();
  t.match(await leaving, { name: 'AbortError' }, 'the client left');
  stack.simulator.release();
  await until(() => stack.simulator.held === 0);
  const next = await stack.get(`${LEADERBOARD}?period=today`);
  t.match(next.headers['cache-status'], /fwd=miss; collapsed|; hit;/, 'the next client got the fetch the first one started');
  t.equal(stack.simulator.calls, 1);
});

t.test('a clock set back does not reuse the window checked later', async (t) => {
  const stack = await startStack(t, { now: '2026-11-29T00:00:30Z' });
  const after = await stack.get(`${LEADERBOARD}?period=yesterday`);
  t.match(after.headers['cache-status'], /fwd=miss; stored/);
  stack.clock.set('2026-11-28T23:59:50Z');
  const before = await stack.get(`${LEADERBOARD}?period=yesterday`);
  t.match(before.headers['cache-status'], /fwd=miss; stored; ttl=10/, "the 28th's yesterday, its own entry");
  t.equal(stack.simulator.calls, 2);
});
