import t, { type Test } from 'tap';
import { request } from 'undici';
import { buildApp } from '../../src/app.js';
import { loadConfig } from '../../src/config/config.js';
import { startSimulator } from '../../src/simulator/index.js';
import { UpstreamBudget } from '../../src/upstream/budget/budget.js';
import { BUDGET_DEFAULTS, call, refusalOf, soon } from '../helpers/budget.js';
import { eventually } from '../helpers/eventually.js';
import { capturedLog } from '../helpers/log.js';
import { redisSkip, startRedis } from '../helpers/redis.js';
import { type Answer, DEMO, ManualClock, type Stack, startStack } from '../helpers/stack.js';

/** 750 status changes in every window (the simulator's knob): each merge below needs 8 pages of 100. */
const PAGES_PER_MERGE = 8;
const PER_MINUTE = 16;
const MINUTE_MS = 60_000;
const PERIODS = ['today', 'yesterday', 'this_week'] as const;
const merge = (period: string): string => `/api/stats_staff_statuses.json?page=all&period=${period}`;
const errorOf = (answer: Answer): string => (JSON.parse(answer.text) as { error: string }).error;

/** Status changes that make PAGES_PER_MERGE pages of 100, the last one half full. */
const STATUS_CHANGES = PAGES_PER_MERGE * 100 - 50;

/** The proxy and a simulator whose staff statuses take 8 pages a period, on 16 calls a minute; Deskie has already accepted the credential. */
async function eightPageStack(t: Test, queueMs: number): Promise<Stack> {
  const stack = await startStack(t, {
    env: { UPSTREAM_RATE_PER_MIN: String(PER_MINUTE), UPSTREAM_QUEUE_MS: String(queueMs), PAGE_ALL_TIMEOUT_MS: '20000' },
    simulator: { knobs: { staffStatusChanges: STATUS_CHANGES } },
    simulatorOnProxyClock: true,
  });
  // A dashboard already running: its credential is known; then the minute is left to the merges.
  t.equal((await stack.get('/api/stats_leaderboard.json?period=today')).status, 200);
  stack.clock.advance(MINUTE_MS);
  stack.simulator.resetCounters();
  return stack;
}

/** The proxy's calls in flight and waiting (for the budget or for a merge's turn), as /healthz shows them. */
async function upstreamLoad(stack: Stack): Promise<number> {
  const health = JSON.parse((await stack.get('/healthz', { authorization: null })).text) as { upstream: { inFlight: number; queued: number } };
  return health.upstream.inFlight + health.upstream.queued;
}

/** The merges for `periods` at once: Deskie holds its answers until every one is under way (calling or waiting). */
async function mergesAtOnce(stack: Stack, periods: readonly string[]): Promise<Map<string, Answer>> {
  stack.simulator.hold();
  let answered = 0;
  const pending = periods.map((period) => stack.get(merge(period)).finally(() => answered++));
  // A merge refused at once (nothing left in the minute for its pages) is never under way: it counts as answered.
  while (answered + (await upstreamLoad(stack)) < periods.length) await new Promise((resolve) => setTimeout(resolve, 5));
  stack.simulator.stopHolding();
  stack.simulator.release();
  const answers = await Promise.all(pending);
  return new Map(periods.map((period, index) => [period, answers[index] as Answer]));
}

t.test('three 8-page merges at once on 16 calls a minute: they finish one after another, and a refused one has spent nothing', async (t) => {
  const stack = await eightPageStack(t, 10_000);
  const startedAt = stack.clock.nowMs;
  const finished = new Set<string>();
  /** Calls Deskie counted in each round, and the clock time the round ran at. */
  const rounds: Array<{ at: number; calls: number }> = [];
  let waiting: readonly string[] = PERIODS;
  // Rounds until two minutes of clock have passed: the refused merges come back when their Retry-After says.
  while (waiting.length > 0 && stack.clock.nowMs - startedAt <= 2 * MINUTE_MS) {
    const before = stack.simulator.calls;
    const answers = await mergesAtOnce(stack, waiting);
    rounds.push({ at: stack.clock.nowMs, calls: stack.simulator.calls - before });
    let retryAfter = 0;
    for (const [period, answer] of answers) {
      if (answer.status === 200) {
        finished.add(period);
        continue;
      }
      t.equal(answer.status, 503, `${period}: refused with a 503`);
      t.match(answer.headers['retry-after'], /^[1-9]\d*$/, `${period}: Retry-After says when to come back`);
      t.match(errorOf(answer), /no call to Deskie could go out in time|merges take turns/, `${period}: the error says why`);
      retryAfter = Math.max(retryAfter, Number(answer.headers['retry-after']));
    }
    waiting = waiting.filter((period) => !finished.has(period));
    stack.clock.advance(retryAfter * 1_000);
  }

  t.ok(finished.size >= 2, `at least two of the three merges answered 200 within two minutes of clock (${[...finished].join(', ')})`);
  t.equal(finished.size, 3, 'here all three: two in the first minute, the third in the next');
  t.equal(stack.simulator.calls, finished.size * PAGES_PER_MERGE, 'every call Deskie counted went to a merge that finished: none spent a page it then gave up');
  for (const { at } of rounds) {
    const inMinute = rounds.filter((round) => round.at > at - MINUTE_MS && round.at <= at).reduce((sum, round) => sum + round.calls, 0);
    t.ok(inMinute <= PER_MINUTE, `at most ${PER_MINUTE} calls in the minute up to +${(at - startedAt) / 1_000} s (${inMinute})`);
  }
});

t.test('a merge that waits for the turn past UPSTREAM_QUEUE_MS gets a 503 that says why, before any call of its own', async (t) => {
  const stack = await eightPageStack(t, 100);
  // The first merge holds the turn while Deskie keeps its second page. Its first page is answered first: a
  // minute after the credential was last accepted, that call decides the credential, and until it is answered
  // another merge waits for that decision rather than for the turn.
  stack.simulator.hold();
  const holder = stack.get(merge('today'));
  t.ok(await eventually(() => stack.simulator.held === 1), "the first merge's first call reached Deskie");
  stack.simulator.release();
  stack.simulator.hold();
  t.ok(await eventually(() => stack.simulator.held === 1), "its second call reached Deskie");
  let refused: Answer | undefined;
  const second = stack.get(merge('yesterday')).then((answer) => (refused = answer));
  t.ok(await eventually(() => refused !== undefined || stack.simulator.held > 1, 5_000), 'the second merge was answered, or called');
  t.equal(stack.simulator.calls, 2, 'the second merge made no call while the first held the turn');
  stack.simulator.stopHolding();
  stack.simulator.release();
  await second;
  t.equal(refused?.status, 503, 'refused once UPSTREAM_QUEUE_MS had passed');
  t.match(refused?.headers['retry-after'], /^[1-9]\d*$/, 'with Retry-After');
  t.match(refused === undefined ? '' : errorOf(refused), /another page=all merge is fetching its pages from Deskie and merges take turns.*this one has spent nothing/, 'saying why');
  t.equal((await holder).status, 200, 'the first merge finishes');
  t.equal(stack.simulator.calls, PAGES_PER_MERGE, 'with its 8 pages, and nothing else was called');
});

t.test('with Redis, merges on three replicas share the minute: each waits for its later pages and finishes in the next minute', redisSkip(), async (t) => {
  const redis = await startRedis(t);
  const clock = new ManualClock(Date.parse('2026-11-28T12:00:00Z'));
  const simulator = await startSimulator({ users: { 'demo@example.com': 'demo' }, clock: clock.now, knobs: { staffStatusChanges: STATUS_CHANGES } });
  t.teardown(() => simulator.close());
  const queueMs = 500;
  const env = {
    REDIS_URL: redis.url,
    CACHE_KEY_SECRET: 'one-secret-for-every-replica',
    UPSTREAM_RATE_PER_MIN: String(PER_MINUTE),
    UPSTREAM_QUEUE_MS: String(queueMs),
    PAGE_ALL_TIMEOUT_MS: '20000',
  };
  const replicas: string[] = [];
  for (let i = 0; i < PERIODS.length; i++) {
    const app = buildApp({ ...loadConfig({ ...env, DESKIE_URL: simulator.url }), deskieUrl: simulator.url }, { clock: clock.now });
    await app.listen({ port: 0, host: '127.0.0.1' });
    t.teardown(() => app.close());
    const address = app.server.address();
    replicas.push(`http://127.0.0.1:${typeof address === 'object' && address !== null ? address.port : 0}`);
  }
  const get = async (url: string): Promise<Answer> => {
    const response = await request(url, { headers: { authorization: DEMO } });
    return { status: response.statusCode, headers: response.headers, text: await response.body.text() };
  };
  const redisUp = async (url: string) => ((await (await request(`${url}/readyz`)).body.json()) as { store: { shared: { redis: string } } }).store.shared.redis === 'up';
  for (const url of replicas) t.ok(await eventually(() => redisUp(url), 5_000), 'the replica uses Redis');
  // Deskie has accepted the credential on every replica; then the minute is left to the merges.
  for (const [index, url] of replicas.entries()) t.equal((await get(`${url}/api/stats_leaderboard.json?period=${PERIODS[index]}`)).status, 200);
  clock.advance(MINUTE_MS);
  simulator.resetCounters();

  // One merge a replica, their first pages all at Deskie before it answers any.
  simulator.hold();
  const answers: Array<Answer | undefined> = PERIODS.map(() => undefined);
  const pending = PERIODS.map((period, index) => get(`${replicas[index]}${merge(period)}`).then((answer) => (answers[index] = answer)));
  t.ok(await eventually(() => simulator.held === PERIODS.length), 'three first pages under way');
  simulator.stopHolding();
  simulator.release();
  t.ok(await eventually(() => simulator.calls === PER_MINUTE, 5_000), 'the minute is spent');
  // Longer than UPSTREAM_QUEUE_MS in real time (the clock stays): a merge under way waits for its pages beyond it.
  await new Promise((resolve) => setTimeout(resolve, 2 * queueMs));
  t.equal(simulator.calls, PER_MINUTE, `no more than ${PER_MINUTE} calls in the first minute`);
  t.same(answers, [undefined, undefined, undefined], 'no merge has given up the pages it spent, nor finished without its later ones');
  clock.advance(MINUTE_MS);
  await Promise.all(pending);
  const finished = answers.filter((answer) => answer?.status === 200).length;
  t.equal(finished, PERIODS.length, 'within two minutes of clock, every merge answered 200');
  t.equal(simulator.calls, finished * PAGES_PER_MERGE, 'and Deskie was asked for each page once');
});

t.test('the merge turn passes on when its holder is released or refused, and a merge waiting for it holds no call', async (t) => {
  const now = Date.parse('2026-11-28T12:00:00Z');
  const budget = new UpstreamBudget({ ...BUDGET_DEFAULTS, ratePerMinute: 4, clock: () => now, log: capturedLog('info').logger });
  // Waiting merges end on unref'ed timers, as in the server; here nothing else keeps the process up.
  const keepAlive = setInterval(() => {}, 1_000);
  t.teardown(() => (budget.close(), clearInterval(keepAlive)));
  const holder = await budget.reserve(call({ merge: true }));
  const tooLarge = budget.reserve(call({ merge: true, calls: 5, deadline: soon(2_000) }));
  const next = budget.reserve(call({ merge: true, deadline: soon(2_000) }));
  t.equal(budget.snapshot().queued, 2, 'two merges wait for the turn');
  t.equal(budget.snapshot().callsLeftThisMinute, 3, 'holding no calls: only the holder has one reserved');
  const single = await budget.reserve(call());
  t.equal(single.remaining, 1, 'a call that is not a merge does not wait for the turn');
  single.release();
  holder.release();
  t.match(await refusalOf(tooLarge), { statusCode: 422 }, 'the next merge gets the turn, and is refused: 5 calls never fit in 4 a minute');
  const grant = await next;
  t.equal(grant.remaining, 1, 'the turn passed on past the refused merge');
  grant.release();
});
