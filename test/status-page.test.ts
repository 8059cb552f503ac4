import t from 'tap';
import { request } from 'undici';
import { chromiumSkip, openBrowserPage } from './helpers/chromium.js';
import { eventually } from './helpers/eventually.js';
import { type EventStream, openEventStream } from './helpers/event-stream.js';
import { startStack } from './helpers/stack.js';

const TOKEN = 'status-token-of-16-bytes';
const BEARER = `Bearer ${TOKEN}`;
const basic = (user: string, password: string): string => `Basic ${Buffer.from(`${user}:${password}`).toString('base64')}`;
const TODAY = '/api/stats_leaderboard.json?period=today';

interface Snapshot {
  requests: number;
  saved: number;
  hitRatio: number | null;
  upstreamCalls: number;
  budget: { limitPerMinute: number; callsLeftThisMinute: number; state: string; inFlight: number; queued: number };
  store: { entries: number; bytes: number; maxBytes: number };
  streamsOpen: number;
}

t.test('/status and its events are protected like /metrics: a bearer token, or the token as a password a browser asks for', async (t) => {
  const stack = await startStack(t, { env: { METRICS_TOKEN: TOKEN } });
  for (const path of ['/status', '/status/events']) {
    const refused = await stack.get(path, { authorization: null });
    t.equal(refused.status, 401, `${path}: no token, no page`);
    t.match(refused.headers['www-authenticate'], /^Basic realm="deskie-stats-proxy status"/, `${path}: a browser shows its login prompt`);
    t.match(JSON.parse(refused.text), { error: /METRICS_TOKEN is required/ }, `${path}: the error says what is accepted`);
    t.equal((await stack.get(path, { authorization: basic('ops', 'not-the-token-at-all') })).status, 401, `${path}: a wrong password`);
  }
  const page = await stack.get('/status', { authorization: basic('anyone', TOKEN) });
  t.equal(page.status, 200, 'any user name with the token as password');
  t.match(page.headers['content-type'], /^text\/html/);
  t.match(page.headers['content-security-policy'], /default-src 'none'; script-src 'sha256-[^']+'; style-src 'sha256-[^']+'; connect-src 'self'/, 'only its own script and style run');
  t.equal((await stack.get('/status', { authorization: BEARER })).status, 200, 'or the bearer token, as /metrics takes it');
});

t.test('without METRICS_TOKEN the page is open, as /metrics is', async (t) => {
  const stack = await startStack(t);
  t.equal((await stack.get('/status', { authorization: null })).status, 200);
});

t.test('/status/events: the figures at once, then again when a request changes them', async (t) => {
  const stack = await startStack(t, { env: { METRICS_TOKEN: TOKEN, UPSTREAM_RATE_PER_MIN: '30' } });
  const stream = await openEventStream(stack, '/status/events', { authorization: BEARER });
  t.equal(stream.status, 200);
  t.match(stream.headers['content-type'], /^text\/event-stream/);
  t.ok(await eventually(() => stream.events.length === 1), 'the first event at once');
  const first = JSON.parse(stream.events[0]?.data ?? '{}') as Snapshot;
  t.match(first, { requests: 0, saved: 0, hitRatio: null, upstreamCalls: 0, budget: { limitPerMinute: 30, callsLeftThisMinute: 30, state: 'open', inFlight: 0, queued: 0 }, store: { entries: 0, bytes: 0 }, streamsOpen: 0 });

  t.equal((await stack.get(TODAY)).status, 200);
  t.equal((await stack.get(TODAY)).status, 200);
  t.ok(await eventually(() => stream.events.length === 2, 3_000), 'one event once the figures changed (they are sampled each second)');
  const after = JSON.parse(stream.events[1]?.data ?? '{}') as Snapshot;
  t.match(after, { requests: 2, saved: 1, hitRatio: 0.5, upstreamCalls: 1, budget: { callsLeftThisMinute: 29 }, store: { entries: 1 } });
  t.ok(after.store.bytes > 0, 'the answer’s bytes');
  t.same(stream.comments, [], 'no heartbeat while events flow');
  stack.clock.advance(15_000);
  t.ok(await eventually(() => stream.comments.length === 1, 3_000), 'a heartbeat comment once 15 s passed without an event');
  t.equal(stream.events.length, 2, 'and no event: the figures had not changed');
  stream.close();
});

t.test('status pages are bounded, and closing the server ends them', async (t) => {
  const stack = await startStack(t);
  const streams: EventStream[] = [];
  for (let i = 0; i < 20; i++) streams.push(await openEventStream(stack, '/status/events'));
  const refused = await request(`${stack.proxyUrl}/status/events`);
  t.equal(refused.statusCode, 503, 'the 21st is refused');
  t.equal(refused.headers['retry-after'], '10');
  t.match(await refused.body.json(), { error: /too many status pages/ });
  await stack.app.close();
  t.ok(await eventually(() => streams.every((stream) => stream.ended())), 'every page’s stream ended at close');
});

t.test('in headless Chromium, the page loads with no console error and its numbers change after a request', chromiumSkip(), async (t) => {
  const stack = await startStack(t, { env: { METRICS_TOKEN: TOKEN } });
  const page = await openBrowserPage(t);
  await page.setHeaders({ authorization: BEARER });
  await page.open(`${stack.proxyUrl}/status`);
  const text = (id: string): Promise<string> => page.evaluate<string>(`document.getElementById(${JSON.stringify(id)}).textContent`);
  t.ok(await eventually(async () => (await text('live')).startsWith('live'), 10_000), 'the page shows its figures live');
  t.equal(await text('requests'), '0');
  t.equal(await text('hitRatio'), '-', 'no ratio before any request');

  t.equal((await stack.get(TODAY)).status, 200);
  t.equal((await stack.get(TODAY)).status, 200);
  t.ok(await eventually(async () => (await text('requests')) === '2', 5_000), 'the request count moved, without a reload');
  t.equal(await text('upstreamCalls'), '1');
  t.equal(await text('hitRatio'), '50.0 %');
  t.equal(await text('entries'), '1');
  t.equal(await text('budget'), '1,199 of 1,200 left this minute', 'the call came out of the budget');
  t.same(page.errors, [], 'no console error, exception or CSP violation');
});
