// The simulator's model of Deskie's own cache: one compute per query and
// lifetime, the record of computes, wasted calls and the foreign client.
import t, { type Test } from 'tap';
import { request } from 'undici';
import { MAX_CACHED_QUERIES, MAX_COMPUTES_PER_QUERY, foreignCallAfter } from '../src/simulator/deskie-cache.js';
import { startSimulator, type CacheReport, type QueryComputes, type Simulator, type SimulatorOptions } from '../src/simulator/index.js';

const DEMO_AUTH = `Basic ${Buffer.from('demo@example.com:demo').toString('base64')}`;
const LEADERBOARD = '/api/stats_leaderboard.json';
const STAFF_STATUSES = '/api/stats_staff_statuses.json';
const SATISFACTION = '/api/stats_satisfaction.json';
const SECOND_MS = 1_000;
const MINUTE_MS = 60 * SECOND_MS;
const HOUR_MS = 60 * MINUTE_MS;
const DAY_MS = 24 * HOUR_MS;
/** Deskie's cache lifetime of `today` (deskie-api-stats.txt, "Caching"). */
const TODAY_LIFETIME_MS = 5 * MINUTE_MS;
const START = '2026-11-28T12:00:00.000Z';

interface Answer {
  readonly statusCode: number;
  readonly text: string;
  readonly computedAt: string;
  readonly expiresAt: string;
  readonly cache: string;
}

interface ManualClock {
  readonly now: () => number;
  advance(ms: number): void;
  set(iso: string): void;
}

function manualClock(iso = START): ManualClock {
  let nowMs = Date.parse(iso);
  return {
    now: () => nowMs,
    advance: (ms) => {
      nowMs += ms;
    },
    set: (at) => {
      nowMs = Date.parse(at);
    },
  };
}

async function startSim(t: Test, options: SimulatorOptions = {}): Promise<{ sim: Simulator; clock: ManualClock }> {
  const clock = manualClock();
  const sim = await startSimulator({ clock: clock.now, ...options });
  t.teardown(() => sim.close());
  return { sim, clock };
}

async function get(sim: Simulator, pathAndQuery: string): Promise<Answer> {
  const res = await request(`${sim.url}${pathAndQuery}`, { headers: { authorization: DEMO_AUTH } });
  const header = (name: string) => String(res.headers[name] ?? '');
  return {
    statusCode: res.statusCode,
    text: await res.body.text(),
    computedAt: header('x-simulator-computed-at'),
    expiresAt: header('x-simulator-expires-at'),
    cache: header('x-simulator-cache'),
  };
}

async function control(sim: Simulator, pathAndQuery: string, method: 'GET' | 'POST' = 'GET'): Promise<{ statusCode: number; headers: Record<string, unknown>; json: unknown }> {
  const res = await request(`${sim.url}${pathAndQuery}`, { method });
  return { statusCode: res.statusCode, headers: res.headers, json: await res.body.json() };
}

t.test('calls within the lifetime get the same bytes, computed once', async (t) => {
  const { sim, clock } = await startSim(t);
  const first = await get(sim, `${LEADERBOARD}?period=today`);
  t.equal(first.cache, 'miss', 'the first call computes');
  t.equal(first.computedAt, START, 'computed now');
  t.equal(first.expiresAt, '2026-11-28T12:05:00.000Z', "today's numbers are kept 5 minutes");
  sim.changeNumbers();
  clock.advance(TODAY_LIFETIME_MS - 1);
  const within = await get(sim, `${LEADERBOARD}?period=today`);
  t.equal(within.text, first.text, 'the same body, byte for byte, though the numbers changed meanwhile');
  t.equal(within.cache, 'hit', 'from the cache');
  t.equal(within.computedAt, START, 'computed when the first call was');
  clock.advance(1);
  const after = await get(sim, `${LEADERBOARD}?period=today`);
  t.not(after.text, first.text, 'new numbers once the lifetime ends');
  t.equal(after.cache, 'miss', 'the first call after it computes');
  t.equal(after.computedAt, '2026-11-28T12:05:00.000Z', 'at that call');
  t.equal(sim.calls, 3, 'every call still reaches the simulator and is counted');
});

t.test("each period keeps its numbers for its row of Deskie's table", async (t) => {
  const { sim } = await startSim(t);
  const expiries: Record<string, string> = {
    'period=last_24_hours': '2026-11-28T12:05:00.000Z',
    'period=last_7_days': '2026-11-28T13:00:00.000Z',
    'period=yesterday': '2026-11-29T12:00:00.000Z',
    'period=last_week': '2026-12-05T12:00:00.000Z',
    'period=last_month': '2026-12-28T12:00:00.000Z',
    'period=last_year': '2027-11-28T12:00:00.000Z',
    'from_time=2026-11-01&to_time=2026-11-02': '2026-11-28T13:00:00.000Z',
    'from_time=2026-11-01&to_time=2026-11-02%2000:00:01': '2026-11-29T12:00:00.000Z',
  };
  for (const [query, expiresAt] of Object.entries(expiries)) {
    t.equal((await get(sim, `${SATISFACTION}?${query}`)).expiresAt, expiresAt, `${query}: kept until ${expiresAt}`);
  }
});

t.test('months are calendar months in the account zone', async (t) => {
  const { sim } = await startSim(t, { timezone: 'Europe/Berlin' });
  // 13:00 on 28 November in Berlin; a month later is 13:00 on 28 December there.
  t.equal((await get(sim, `${LEADERBOARD}?period=last_month`)).expiresAt, '2026-12-28T12:00:00.000Z', 'a month later, same wall time');
});

t.test('queries are cached apart; pages, sort and parameter order are not other queries', async (t) => {
  const { sim, clock } = await startSim(t);
  const today = await get(sim, `${SATISFACTION}?period=today&group_id=318`);
  clock.advance(MINUTE_MS);
  const otherFilter = await get(sim, `${SATISFACTION}?period=today&group_id=746`);
  t.equal(otherFilter.cache, 'miss', 'another filter computes its own numbers');
  t.equal(otherFilter.computedAt, '2026-11-28T12:01:00.000Z', 'at its own first call');
  const otherEndpoint = await get(sim, `${LEADERBOARD}?period=today&group_id=318`);
  t.equal(otherEndpoint.cache, 'miss', 'another endpoint too');
  const page = await get(sim, `${SATISFACTION}?group_id=318&limit=10&page=2&sort=added_at_asc&period=today`);
  t.equal(page.cache, 'hit', 'a page of the same query reads the numbers computed for it');
  t.equal(page.computedAt, today.computedAt, 'computed with the first');
  clock.advance(TODAY_LIFETIME_MS - MINUTE_MS);
  t.equal((await get(sim, `${SATISFACTION}?period=today&group_id=318`)).cache, 'miss', 'the first query expires on its own time');
  t.equal((await get(sim, `${SATISFACTION}?period=today&group_id=746`)).cache, 'hit', 'while the second is still cached');
});

t.test("a calendar period's new window is a new query: today after midnight is computed at once", async (t) => {
  const { sim, clock } = await startSim(t);
  clock.set('2026-11-28T23:58:00Z');
  const before = await get(sim, `${STAFF_STATUSES}?period=today`);
  clock.set('2026-11-29T00:00:30Z');
  const after = await get(sim, `${STAFF_STATUSES}?period=today`);
  t.equal(after.cache, 'miss', "the 29th's today is not the 28th's");
  t.not(after.text, before.text, 'and has its own numbers');
  t.equal(sim.cacheReport().queries.length, 2, 'two queries, one a day');
});

t.test('the record of computes: the JS API and GET /_simulator/computed', async (t) => {
  const { sim, clock } = await startSim(t);
  await get(sim, `${LEADERBOARD}?period=today`);
  clock.advance(MINUTE_MS);
  await get(sim, `${LEADERBOARD}?period=today`);
  clock.advance(TODAY_LIFETIME_MS);
  await get(sim, `${LEADERBOARD}?period=today`);
  const startMs = Date.parse(START);
  const expected: QueryComputes = {
    query: `${LEADERBOARD}?period=today@${Date.parse('2026-11-28T00:00:00Z') / SECOND_MS}`,
    lifetime: 'PT5M',
    current: { computedAtMs: startMs + 6 * MINUTE_MS, expiresAtMs: startMs + 11 * MINUTE_MS, by: 'call', generation: 0, calls: 1, wastedCalls: 0 },
    calls: 3,
    wastedCalls: 1,
    computes: [
      { computedAtMs: startMs, expiresAtMs: startMs + TODAY_LIFETIME_MS, by: 'call', generation: 0, calls: 2, wastedCalls: 1 },
      { computedAtMs: startMs + 6 * MINUTE_MS, expiresAtMs: startMs + 11 * MINUTE_MS, by: 'call', generation: 0, calls: 1, wastedCalls: 0 },
    ],
  };
  t.same(sim.computes(`${LEADERBOARD}?period=today`), expected, 'computes() lists when and by whom the numbers were computed');

  const one = await control(sim, `/_simulator/computed${LEADERBOARD}?period=today`);
  t.equal(one.statusCode, 200, 'GET /_simulator/computed/<endpoint>?<query> answers 200');
  t.same(one.json, expected, 'with the same record as JSON');
  const all = await control(sim, '/_simulator/computed');
  t.same(all.json, { computes: 2, calls: 3, wastedCalls: 1, queries: [expected] } satisfies CacheReport, 'GET /_simulator/computed: totals and every query');
  t.equal(sim.calls, 3, 'control requests are not counted');

  clock.advance(TODAY_LIFETIME_MS);
  t.equal(sim.computes(`${LEADERBOARD}?period=today`).current, null, 'no numbers in force once they expired');
  t.same((await control(sim, `/_simulator/computed${LEADERBOARD}?period=yesterday`)).json, {
    query: `${LEADERBOARD}?period=yesterday@${Date.parse('2026-11-27T00:00:00Z') / SECOND_MS}`,
    lifetime: 'P1D',
    current: null,
    calls: 0,
    wastedCalls: 0,
    computes: [],
  }, 'a query never asked has no computes');
  t.equal(sim.cacheReport().queries.length, 1, 'and looking at it does not make it remembered');
});

t.test('GET /_simulator/computed refuses what Deskie would refuse', async (t) => {
  const { sim } = await startSim(t);
  const badPeriod = await control(sim, `/_simulator/computed${LEADERBOARD}?period=someday`);
  t.equal(badPeriod.statusCode, 400, 'an unknown period gets 400');
  t.match(badPeriod.json, { status: 'error', error: /unknown period/ }, 'saying why');
  t.equal((await control(sim, '/_simulator/computed/api/nothing.json?period=today')).statusCode, 400, 'an unknown endpoint gets 400');
  const post = await control(sim, '/_simulator/computed', 'POST');
  t.equal(post.statusCode, 405, 'POST gets 405');
  t.equal(post.headers.allow, 'GET', 'allow: GET');
  t.equal((await control(sim, '/_simulator/knobs/extra', 'POST')).statusCode, 404, 'other routes take no path after their name');
  t.throws(() => sim.computes(`${LEADERBOARD}?from_time=2026-11-01`), /both from_time and to_time/, 'computes() throws for a bad query');
});

t.test('wasted calls: calls that got numbers Deskie had already given for that exact request', async (t) => {
  const { sim, clock } = await startSim(t);
  const path = `${STAFF_STATUSES}?period=this_week`;
  await get(sim, `${path}&page=1`);
  await get(sim, `${path}&page=2`);
  t.equal(sim.cacheReport().wastedCalls, 0, 'each page once: nothing wasted');
  clock.advance(30 * SECOND_MS);
  await get(sim, `${path}&page=1`);
  await get(sim, `${path}&page=2`);
  t.equal(sim.cacheReport().wastedCalls, 2, 'the same pages again within the lifetime: both wasted');
  clock.advance(DAY_MS);
  await get(sim, `${path}&page=1`);
  const report = sim.cacheReport();
  t.same({ computes: report.computes, calls: report.calls, wastedCalls: report.wastedCalls }, { computes: 2, calls: 5, wastedCalls: 2 }, 'a call after the lifetime gets new numbers');
});

t.test('an answer that is not a 200 computes nothing', async (t) => {
  const { sim } = await startSim(t);
  t.equal((await get(sim, `${SATISFACTION}?period=today&limit=500`)).statusCode, 400, 'a bad limit gets 400');
  t.equal((await get(sim, `${SATISFACTION}?period=today&page=0`)).statusCode, 400, 'a bad page too');
  t.equal((await get(sim, `${SATISFACTION}?period=never`)).statusCode, 400, 'and a bad period');
  t.same(sim.computes(`${SATISFACTION}?period=today`).computes, [], 'no compute was kept');
  const good = await get(sim, `${SATISFACTION}?period=today`);
  t.equal(good.cache, 'miss', 'the first good call computes');
  t.equal((await get(sim, `${SATISFACTION}?period=today&page=0`)).computedAt, '', 'a 400 carries no compute headers');
  t.equal(sim.cacheReport().calls, 1, 'only answered calls count');
});

t.test('deskieCache: false computes at every call, so a change shows at once', async (t) => {
  const { sim } = await startSim(t, { knobs: { deskieCache: false } });
  const first = await get(sim, `${LEADERBOARD}?period=today`);
  sim.changeNumbers();
  const second = await get(sim, `${LEADERBOARD}?period=today`);
  t.not(second.text, first.text, 'the new numbers at the next call');
  t.equal(second.cache, 'miss', 'computed by that call');
  t.equal(second.expiresAt, second.computedAt, 'and kept for no time');
  await get(sim, `${LEADERBOARD}?period=today`);
  t.match(sim.cacheReport(), { computes: 3, calls: 3, wastedCalls: 0 }, 'one compute per call, none wasted');
  t.equal(sim.computes(`${LEADERBOARD}?period=today`).current, null, 'nothing is in force');

  sim.set({ deskieCache: true });
  const cached = await get(sim, `${LEADERBOARD}?period=today`);
  t.equal(cached.cache, 'miss', 'turned back on, the next call computes');
  t.equal((await get(sim, `${LEADERBOARD}?period=today`)).cache, 'hit', 'and the one after reads the cache');
});

t.test('changeNumbers(): the new numbers appear at the next compute, query by query', async (t) => {
  const { sim, clock } = await startSim(t);
  const today = await get(sim, `${LEADERBOARD}?period=today`);
  const yesterday = await get(sim, `${LEADERBOARD}?period=yesterday`);
  sim.changeNumbers();
  clock.advance(TODAY_LIFETIME_MS);
  t.not((await get(sim, `${LEADERBOARD}?period=today`)).text, today.text, "today's cache expired: new numbers");
  t.equal((await get(sim, `${LEADERBOARD}?period=yesterday`)).text, yesterday.text, "yesterday's has a day to go: the old ones");
  t.same(
    sim.computes(`${LEADERBOARD}?period=today`).computes.map((compute) => compute.generation),
    [0, 1],
    'each compute records its generation',
  );
});

t.test('a clock set back before the compute computes again', async (t) => {
  const { sim, clock } = await startSim(t);
  await get(sim, `${LEADERBOARD}?period=today`);
  clock.advance(-MINUTE_MS);
  t.equal((await get(sim, `${LEADERBOARD}?period=today`)).cache, 'miss', 'numbers from the future are not in force');
});

t.test('the foreign client', async (t) => {
  const FOREIGN = { foreignClient: true, foreignClientSeed: 7, foreignClientIntervalMs: MINUTE_MS } as const;

  t.test("its calls start Deskie's cache periods, so ours may get numbers computed earlier", async (t) => {
    const { sim, clock } = await startSim(t, { knobs: FOREIGN });
    const pollTimes = new Set<number>();
    for (let poll = 0; poll < 120; poll++) {
      clock.advance(30 * SECOND_MS);
      pollTimes.add(clock.now());
      await get(sim, `${LEADERBOARD}?period=today`);
    }
    const record = sim.computes(`${LEADERBOARD}?period=today`);
    const foreign = record.computes.filter((compute) => compute.by === 'foreignClient');
    t.ok(record.computes.length >= 10, `about one compute per lifetime over the hour (got ${record.computes.length})`);
    t.ok(foreign.length > 0, `the other client started some periods (${foreign.length} of ${record.computes.length})`);
    t.ok(foreign.some((compute) => compute.calls > 0), 'and our calls got numbers it computed');
    t.ok(foreign.every((compute) => !pollTimes.has(compute.computedAtMs)), 'at moments of its own');
    t.ok(
      record.computes.filter((compute) => compute.by === 'call').every((compute) => pollTimes.has(compute.computedAtMs)),
      'ours at our calls',
    );
    for (const [index, later] of record.computes.entries()) {
      const earlier = record.computes[index - 1];
      if (earlier !== undefined) t.ok(later.computedAtMs >= earlier.expiresAtMs, 'a compute only once the one before expired');
    }
    t.equal(record.calls, 120, 'every call answered');
    t.equal(record.wastedCalls, 120 - record.computes.filter((compute) => compute.calls > 0).length, 'wasted: every call but the first on each set of numbers');
  });

  t.test('the same seed and clock give the same moments; another seed others', async (t) => {
    const moments = async (seed: number) => {
      const { sim, clock } = await startSim(t, { knobs: { ...FOREIGN, foreignClientSeed: seed } });
      const times: number[] = [];
      for (let step = 0; step < 12; step++) {
        clock.advance(2 * MINUTE_MS + 17 * SECOND_MS);
        times.push(Date.parse((await get(sim, `${SATISFACTION}?period=today`)).computedAt));
      }
      return { times, computes: sim.computes(`${SATISFACTION}?period=today`).computes };
    };
    const first = await moments(7);
    t.same(await moments(7), first, 'repeatable');
    t.notSame((await moments(8)).times, first.times, 'another seed, other moments');
  });

  t.test('one call in every interval, at a seeded moment within it', async (t) => {
    let afterMs = 0;
    for (let call = 0; call < 50; call++) {
      const next = foreignCallAfter('key', afterMs, 3, MINUTE_MS);
      t.ok(next > afterMs, 'after the instant asked');
      t.ok(next < afterMs + 2 * MINUTE_MS, 'within two intervals of it');
      afterMs = next;
    }
    t.equal(foreignCallAfter('key', 0, 3, MINUTE_MS), foreignCallAfter('key', 0, 3, MINUTE_MS), 'deterministic');
  });

  t.test('a foreign compute has the numbers of its moment', async (t) => {
    const { sim, clock } = await startSim(t, { knobs: FOREIGN });
    clock.advance(10 * MINUTE_MS);
    sim.changeNumbers();
    clock.advance(10 * MINUTE_MS);
    const computes = sim.computes(`${LEADERBOARD}?period=today`).computes;
    const changeAtMs = Date.parse(START) + 10 * MINUTE_MS;
    t.ok(computes.length > 2, 'the other client computed several times');
    t.ok(
      computes.every((compute) => compute.generation === (compute.computedAtMs < changeAtMs ? 0 : 1)),
      'those before the change have the old numbers, those after the new',
    );
  });

  t.test('turned on at run time, it makes no call before', async (t) => {
    const { sim, clock } = await startSim(t);
    clock.advance(HOUR_MS);
    sim.set({ foreignClient: true });
    t.same(sim.computes(`${LEADERBOARD}?period=today`).computes, [], 'nothing computed during the hour it was off');
    clock.advance(10 * MINUTE_MS);
    t.ok(sim.computes(`${LEADERBOARD}?period=today`).computes.length > 0, 'its calls start when it was turned on');
  });

  t.test('with the cache off it changes nothing', async (t) => {
    const { sim, clock } = await startSim(t, { knobs: { ...FOREIGN, deskieCache: false } });
    clock.advance(HOUR_MS);
    t.same(sim.computes(`${LEADERBOARD}?period=today`).computes, [], 'no compute of its own');
    t.equal((await get(sim, `${LEADERBOARD}?period=today`)).cache, 'miss', 'ours computes');
  });
});

t.test('bounded: queries and computes remembered', async (t) => {
  const { sim, clock } = await startSim(t, { knobs: { foreignClient: true, foreignClientIntervalMs: 1 } });
  clock.advance((MAX_COMPUTES_PER_QUERY + 1) * TODAY_LIFETIME_MS);
  const record = sim.computes(`${LEADERBOARD}?period=last_24_hours`);
  t.equal(record.computes.length, MAX_COMPUTES_PER_QUERY, `the last ${MAX_COMPUTES_PER_QUERY} computes of a query are kept`);
  t.ok(sim.cacheReport().computes > MAX_COMPUTES_PER_QUERY, 'the total counts them all');
  // Turned on again from now, the foreign client asks each new query once at most: quick to remember many.
  sim.set({ foreignClient: false });
  sim.set({ foreignClient: true, foreignClientIntervalMs: DAY_MS });
  for (let group = 0; group <= MAX_CACHED_QUERIES; group++) sim.computes(`${LEADERBOARD}?period=today&group_id=${group}`);
  const queries = sim.cacheReport().queries;
  t.equal(queries.length, MAX_CACHED_QUERIES, `${MAX_CACHED_QUERIES} queries are remembered`);
  t.notOk(
    queries.some((query) => query.query.startsWith(`${LEADERBOARD}?period=last_24_hours`)),
    'the least recently asked is forgotten first',
  );
});
