import { get as httpGet } from 'node:http';
import { connect } from 'node:net';
import t, { type Test } from 'tap';
import { buildApp } from '../src/app.js';
import { loadConfig } from '../src/config/config.js';
import { startSimulator } from '../src/simulator/index.js';
import { eventually } from './helpers/eventually.js';
import { openEventStream } from './helpers/event-stream.js';
import { capturedLog } from './helpers/log.js';
import { redisSkip, startRedis } from './helpers/redis.js';
import { ManualScheduler } from './helpers/scheduler.js';
import { DEMO, ManualClock, OTHER, settled, type Stack, startStack, WRONG } from './helpers/stack.js';

const LEADERBOARD = '/api/stats_leaderboard.json';
const TODAY = `${LEADERBOARD}?period=today`;
const FIVE_MINUTES = 300_000;
const MARGIN = 1_000;
const HEARTBEAT = 15_000;

/** A proxy whose refreshes and heartbeats run when the test moves the clock past them. */
async function phased(t: Test, env: Record<string, string> = {}): Promise<{ stack: Stack; scheduler: ManualScheduler }> {
  let scheduler: ManualScheduler | undefined;
  const stack = await startStack(t, { simulatorOnProxyClock: true, env, scheduler: (clock) => (scheduler = new ManualScheduler(clock)) });
  return { stack, scheduler: scheduler as ManualScheduler };
}

/** Moves the clock by `ms`, runs what is due, and lets any call a refresh made land. */
async function advance(stack: Stack, scheduler: ManualScheduler, ms: number): Promise<void> {
  scheduler.advance(ms);
  await settled(stack);
}

/** A short real wait for what the server wrote to reach the client (an event that is not coming, proven absent). */
const ioWait = (): Promise<void> => new Promise((resolve) => setTimeout(resolve, 50));

async function waitFor(t: Test, check: () => boolean, what: string): Promise<void> {
  t.ok(await eventually(check), what);
}

t.test('the first event is the current answer: its body as a poll gets it, its id the ETag', async (t) => {
  const { stack } = await phased(t);
  const polled = await stack.get(TODAY);
  const stream = await openEventStream(stack, TODAY);
  t.teardown(() => stream.close());
  t.equal(stream.status, 200, 'a stream');
  t.match(String(stream.headers['content-type']), /^text\/event-stream/, 'of server-sent events');
  await waitFor(t, () => stream.events.length === 1, 'one event');
  t.equal(stream.events[0]?.data, polled.text, 'the normalized JSON a poll gets');
  t.equal(stream.events[0]?.id, polled.headers['etag'], 'its id is the ETag');
  t.equal(stack.simulator.calls, 1, 'a hit: no call for the stream');
});

t.test('a refresh that brings other numbers is one event with the new body and a new id; one with the same numbers is none', async (t) => {
  const { stack, scheduler } = await phased(t);
  const stream = await openEventStream(stack, TODAY);
  t.teardown(() => stream.close());
  await waitFor(t, () => stream.events.length === 1, 'the first answer, fetched for the stream');
  await advance(stack, scheduler, FIVE_MINUTES + MARGIN);
  t.equal(stack.simulator.calls, 2, 'refreshed once, just after Deskie\'s cache expired');
  await ioWait();
  t.equal(stream.events.length, 1, 'the same numbers: no event');
  stack.simulator.changeNumbers();
  await advance(stack, scheduler, FIVE_MINUTES + MARGIN);
  t.equal(stack.simulator.calls, 3, 'a stream alone keeps its key refreshed, with no poll');
  await waitFor(t, () => stream.events.length === 2, 'the new numbers are one event');
  const [first, second] = stream.events;
  t.not(second?.data, first?.data, 'with the new body');
  t.not(second?.id, first?.id, 'and a new id');
  t.equal(second?.id, (await stack.get(TODAY)).headers['etag'], "the new answer's ETag");
});

t.test('a body over several lines is sent as several data lines (format=csv)', async (t) => {
  const { stack } = await phased(t);
  const polled = await stack.get(`${TODAY}&format=csv`);
  const stream = await openEventStream(stack, `${TODAY}&format=csv`);
  t.teardown(() => stream.close());
  await waitFor(t, () => stream.events.length === 1, 'one event');
  t.ok(polled.text.trimEnd().includes('\n'), 'the CSV has several lines');
  t.equal(stream.events[0]?.data, polled.text.replace(/\r\n|\r|\n/g, '\n'), 'each line a data line, joined back by the client');
});

t.test('Last-Event-ID equal to the current ETag resumes without resending it; a malformed one is ignored', async (t) => {
  const { stack, scheduler } = await phased(t);
  const etag = String((await stack.get(TODAY)).headers['etag']);
  const resumed = await openEventStream(stack, TODAY, { headers: { 'last-event-id': etag } });
  t.teardown(() => resumed.close());
  const overLong = await openEventStream(stack, TODAY, { headers: { 'last-event-id': `${etag}${'x'.repeat(500)}` } });
  t.teardown(() => overLong.close());
  await waitFor(t, () => overLong.events.length === 1, 'an over-long Last-Event-ID is ignored: the answer is sent');
  scheduler.advance(HEARTBEAT);
  await waitFor(t, () => resumed.comments.length === 1, 'a heartbeat comes after 15 s');
  t.equal(resumed.comments[0], ': heartbeat', 'as a comment');
  t.equal(resumed.events.length, 0, 'the answer the client has was not sent again');
  stack.simulator.changeNumbers();
  await advance(stack, scheduler, FIVE_MINUTES + MARGIN - HEARTBEAT);
  await waitFor(t, () => resumed.events.length === 1, 'the next answer is sent');
  t.not(resumed.events[0]?.id, etag, 'with its own id');
});

t.test('a bad query gets the same 400 JSON, and a bad credential the same 401, before any stream starts', async (t) => {
  const { stack } = await phased(t);
  const bad = await stack.get(`${LEADERBOARD}?period=someday`, { headers: { accept: 'text/event-stream' } });
  t.equal(bad.status, 400, '400');
  t.match(String(bad.headers['content-type']), /^application\/json/, 'JSON');
  t.equal(bad.text, (await stack.get(`${LEADERBOARD}?period=someday`)).text, 'as a poll gets it');
  const refused = await stack.get(TODAY, { authorization: WRONG, headers: { accept: 'text/event-stream' } });
  t.equal(refused.status, 401, '401 for a credential Deskie refuses');
});

t.test('past a limit a stream gets 503 with Retry-After: per client, then for the server', async (t) => {
  const { stack } = await phased(t, { SSE_MAX_STREAMS: '2', SSE_MAX_STREAMS_PER_CLIENT: '1' });
  const first = await openEventStream(stack, TODAY);
  t.teardown(() => first.close());
  const sameClient = await stack.get(TODAY, { headers: { accept: 'text/event-stream' } });
  t.equal(sameClient.status, 503, "past the client's share");
  t.ok(Number(sameClient.headers['retry-after']) > 0, 'with Retry-After');
  const other = await openEventStream(stack, TODAY, { authorization: OTHER });
  t.teardown(() => other.close());
  t.equal(other.status, 200, 'another credential has its own share');
  const third = await stack.get(TODAY, { authorization: OTHER, headers: { accept: 'text/event-stream' } });
  t.equal(third.status, 503, "past the server's limit");
  first.close();
  const freed = await eventually(async () => {
    const again = await openEventStream(stack, TODAY);
    again.close();
    return again.status === 200;
  });
  t.ok(freed, 'a closed stream frees its place');
});

t.test('streams whose first answer is still awaited count against SSE_MAX_STREAMS', async (t) => {
  const { stack } = await phased(t, { SSE_MAX_STREAMS: '1' });
  stack.simulator.hold();
  const waiting = openEventStream(stack, TODAY);
  t.ok(await eventually(() => stack.simulator.held === 1), 'the first stream waits on Deskie');
  const second = await stack.get(TODAY, { authorization: OTHER, headers: { accept: 'text/event-stream' } });
  t.equal(second.status, 503, 'the limit is reached meanwhile');
  stack.simulator.release();
  const first = await waiting;
  t.teardown(() => first.close());
  t.equal(first.status, 200, 'the first stream opens');
});

t.test('in service mode the share is per client token', async (t) => {
  const wall = 'w'.repeat(32);
  const laptop = 'l'.repeat(32);
  const stack = await startStack(t, {
    env: { DESKIE_EMAIL: 'demo@example.com', DESKIE_API_KEY: 'demo', PROXY_TOKENS: `wall:${wall},laptop:${laptop}`, SSE_MAX_STREAMS_PER_CLIENT: '1' },
  });
  const first = await openEventStream(stack, TODAY, { authorization: `Bearer ${wall}` });
  t.teardown(() => first.close());
  t.equal(first.status, 200, "the wall's stream");
  const again = await stack.get(TODAY, { authorization: `Bearer ${wall}`, headers: { accept: 'text/event-stream' } });
  t.equal(again.status, 503, "the wall's share is used");
  const other = await openEventStream(stack, TODAY, { authorization: `Bearer ${laptop}` });
  t.teardown(() => other.close());
  t.equal(other.status, 200, 'the laptop has its own share, on the same Deskie credential');
  const refused = await stack.get(TODAY, { authorization: 'Bearer nope', headers: { accept: 'text/event-stream' } });
  t.equal(refused.status, 401, 'no token, no stream');
});

t.test('a client that goes while its first answer is awaited leaves no stream open', async (t) => {
  const { stack } = await phased(t);
  stack.simulator.hold();
  const request = httpGet(`${stack.proxyUrl}${TODAY}`, { headers: { accept: 'text/event-stream', authorization: DEMO } });
  request.on('error', () => {});
  await eventually(() => stack.simulator.held === 1);
  request.destroy();
  await ioWait();
  stack.simulator.release();
  await settled(stack);
  const open = (): Promise<string> => stack.get('/metrics', { authorization: null }).then((answer) => answer.text);
  t.ok(await eventually(async () => /^deskie_proxy_event_streams_open 0$/m.test(await open())), 'none open');
});

t.test('a stream that ends writes one log line with its request id, route, period and the events it sent', async (t) => {
  const { logger, lines } = capturedLog();
  const stack = await startStack(t, { logger });
  const stream = await openEventStream(stack, TODAY);
  await waitFor(t, () => stream.events.length === 1, 'the answer');
  stream.close();
  await waitFor(t, () => lines.some((line) => line['msg'] === 'event stream ended'), 'a line when it ends');
  const line = lines.find((logged) => logged['msg'] === 'event stream ended');
  t.match(line, { route: 'stats_leaderboard', period: 'today', format: 'normalized', events: 1, reqId: String }, 'what it was and what it sent');
});

t.test('two streams on one key cost one refresh call, and both get its event', async (t) => {
  const { stack, scheduler } = await phased(t);
  const one = await openEventStream(stack, TODAY);
  t.teardown(() => one.close());
  const two = await openEventStream(stack, TODAY, { authorization: DEMO });
  t.teardown(() => two.close());
  await waitFor(t, () => one.events.length === 1 && two.events.length === 1, 'both have the answer');
  t.equal(stack.simulator.calls, 1, 'one call for both');
  stack.simulator.changeNumbers();
  await advance(stack, scheduler, FIVE_MINUTES + MARGIN);
  t.equal(stack.simulator.calls, 2, 'one refresh call');
  await waitFor(t, () => one.events.length === 2 && two.events.length === 2, 'each stream has the new answer');
});

t.test('at midnight a today stream moves to the new day', async (t) => {
  let scheduler: ManualScheduler | undefined;
  const stack = await startStack(t, { now: '2026-11-28T23:58:00Z', simulatorOnProxyClock: true, scheduler: (clock) => (scheduler = new ManualScheduler(clock)) });
  const stream = await openEventStream(stack, TODAY);
  t.teardown(() => stream.close());
  await waitFor(t, () => stream.events.length === 1, "the day's answer");
  await advance(stack, scheduler as ManualScheduler, 2 * 60_000 + MARGIN);
  await waitFor(t, () => stream.events.length === 2, 'an event for the new day');
  const polled = await stack.get(TODAY);
  t.equal(stream.events[1]?.id, polled.headers['etag'], "it is the new day's answer");
  t.equal(stack.simulator.calls, 2, 'one call for the new day');
});

t.test('when Deskie fails a refresh the stream stays open with its last answer, and a heartbeat past expiry asks again', async (t) => {
  const { stack, scheduler } = await phased(t);
  const stream = await openEventStream(stack, TODAY);
  t.teardown(() => stream.close());
  await waitFor(t, () => stream.events.length === 1, 'the answer');
  stack.simulator.set({ fault: 'error500' });
  stack.simulator.changeNumbers();
  await advance(stack, scheduler, FIVE_MINUTES + MARGIN);
  await ioWait();
  t.equal(stream.events.length, 1, 'no event while Deskie fails');
  t.notOk(stream.ended(), 'the stream stays open');
  stack.simulator.set({ fault: 'none' });
  await advance(stack, scheduler, HEARTBEAT);
  await waitFor(t, () => stream.events.length === 2, "the next heartbeat's ask brings the new numbers");
});

t.test('a credential Deskie refuses ends its streams', async (t) => {
  const { stack, scheduler } = await phased(t);
  const stream = await openEventStream(stack, TODAY);
  t.teardown(() => stream.close());
  await waitFor(t, () => stream.events.length === 1, 'the answer');
  stack.simulator.revoke('demo@example.com');
  await advance(stack, scheduler, FIVE_MINUTES + MARGIN);
  await waitFor(t, () => stream.ended(), 'the stream ended');
});

t.test("the server's close ends open streams promptly", async (t) => {
  const { stack } = await phased(t);
  const stream = await openEventStream(stack, TODAY);
  await waitFor(t, () => stream.events.length === 1, 'the answer');
  const startedAt = performance.now();
  await stack.app.close();
  t.ok(performance.now() - startedAt < 2_000, 'closed without waiting on the stream');
  await waitFor(t, () => stream.ended(), 'the stream ended');
});

t.test('a client that does not read what it is sent is dropped once its unsent bytes pass SSE_MAX_BUFFER_BYTES', async (t) => {
  let scheduler: ManualScheduler | undefined;
  const stack = await startStack(t, {
    simulatorOnProxyClock: true,
    // Answers of about half a megabyte, which a client that does not read cannot take for long.
    simulator: { knobs: { staffStatusChanges: 5_000 } },
    env: { SSE_MAX_BUFFER_BYTES: '1024' },
    scheduler: (clock) => (scheduler = new ManualScheduler(clock)),
  });
  const { port } = new URL(stack.proxyUrl);
  const socket = connect(Number(port), '127.0.0.1');
  t.teardown(() => socket.destroy());
  socket.on('error', () => {});
  socket.pause();
  socket.write(`GET /api/stats_staff_statuses.json?period=today&page=all HTTP/1.1\r\nHost: proxy\r\nAccept: text/event-stream\r\nAuthorization: ${DEMO}\r\n\r\n`);
  const scrape = async (): Promise<string> => (await stack.get('/metrics', { authorization: null })).text;
  t.ok(await eventually(async () => /^deskie_proxy_event_streams_open 1$/m.test(await scrape())), 'the stream is open');
  const dropped = /^deskie_proxy_event_streams_dropped_total\{reason="slow-consumer"\} 1$/m;
  for (let refresh = 0; refresh < 10 && !dropped.test(await scrape()); refresh++) {
    stack.simulator.changeNumbers();
    await advance(stack, scheduler as ManualScheduler, FIVE_MINUTES + MARGIN);
  }
  const scraped = await scrape();
  t.match(scraped, dropped, 'dropped, and counted');
  t.match(scraped, /^deskie_proxy_event_streams_open 0$/m, 'no longer open');
});

t.test('metrics count open streams and events sent', async (t) => {
  const { stack, scheduler } = await phased(t);
  const stream = await openEventStream(stack, TODAY);
  t.teardown(() => stream.close());
  await waitFor(t, () => stream.events.length === 1, 'the answer');
  stack.simulator.changeNumbers();
  await advance(stack, scheduler, FIVE_MINUTES + MARGIN);
  await waitFor(t, () => stream.events.length === 2, 'the change');
  const scraped = (await stack.get('/metrics', { authorization: null })).text;
  t.match(scraped, /^deskie_proxy_event_streams_open 1$/m, 'one stream open');
  t.match(scraped, /^deskie_proxy_stream_events_total 2$/m, 'two events sent');
  t.match(scraped, /^deskie_proxy_event_streams_dropped_total\{reason="slow-consumer"\} 0$/m, 'none dropped');
  stream.close();
  t.ok(
    await eventually(async () => /^deskie_proxy_event_streams_open 0$/m.test((await stack.get('/metrics', { authorization: null })).text)),
    'a closed stream is no longer counted',
  );
});

t.test('with Redis, streams on two replicas each get a change that cost one call for the cluster', redisSkip(), async (t) => {
  const redis = await startRedis(t);
  const clock = new ManualClock(Date.parse('2026-11-28T12:00:00Z'));
  const simulator = await startSimulator({ users: { 'demo@example.com': 'demo' }, clock: clock.now });
  t.teardown(() => simulator.close());
  const schedulers: ManualScheduler[] = [];
  const replica = async (): Promise<{ proxyUrl: string }> => {
    const config = loadConfig({ REDIS_URL: redis.url, CACHE_KEY_SECRET: 'one-secret-for-every-replica', DESKIE_URL: simulator.url });
    const scheduler = new ManualScheduler(clock);
    schedulers.push(scheduler);
    const app = buildApp({ ...config, deskieUrl: simulator.url }, { clock: clock.now, scheduler });
    await app.listen({ port: 0, host: '127.0.0.1' });
    t.teardown(() => app.close());
    const address = app.server.address();
    const proxyUrl = `http://127.0.0.1:${typeof address === 'object' && address !== null ? address.port : 0}`;
    const up = async (): Promise<boolean> => ((await (await fetch(`${proxyUrl}/readyz`)).json()) as { store: { shared: { redis: string } } }).store.shared.redis === 'up';
    t.ok(await eventually(up), 'the replica reaches Redis');
    return { proxyUrl };
  };
  const [a, b] = [await replica(), await replica()];
  const onA = await openEventStream(a, TODAY);
  t.teardown(() => onA.close());
  await waitFor(t, () => onA.events.length === 1, "a's stream has the answer");
  const onB = await openEventStream(b, TODAY);
  t.teardown(() => onB.close());
  await waitFor(t, () => onB.events.length === 1, "b's stream has it from Redis");
  t.equal(simulator.calls, 1, 'one call');
  simulator.changeNumbers();
  clock.advance(FIVE_MINUTES + MARGIN);
  for (const scheduler of schedulers) scheduler.runDue();
  await waitFor(t, () => onA.events.length === 2 && onB.events.length === 2, 'each stream has the change');
  t.equal(onA.events[1]?.id, onB.events[1]?.id, 'the same answer');
  await ioWait();
  t.equal(simulator.calls, 2, 'one refresh call for the cluster');
});
