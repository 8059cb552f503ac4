import { once } from 'node:events';
import { connect } from 'node:net';
import t from 'tap';
import { request } from 'undici';
import { MemoryStore } from '../src/cache/memory-store.js';
import { eventually } from './helpers/eventually.js';
import { capturedLog } from './helpers/log.js';
import { DEMO, settled, startStack, WRONG } from './helpers/stack.js';

const TODAY = '/api/stats_leaderboard.json?period=today';
const FIVE_MINUTES = 300_000;
const METRICS_TOKEN = 'metrics-token-0123456789';

/** The value of one series in Prometheus text, matched by name and the labels given (in any order). */
function sample(text: string, name: string, labels: Record<string, string> = {}): number | undefined {
  for (const line of text.split('\n')) {
    const match = /^([a-z_]+)(?:\{(.*)\})? (\S+)$/.exec(line);
    if (!match || match[1] !== name) continue;
    const has = Object.entries(labels).every(([label, value]) => (match[2] ?? '').includes(`${label}="${value}"`));
    if (has) return Number(match[3]);
  }
  return undefined;
}

t.test('/metrics shows the hit ratio inputs, calls to Deskie and those saved, stale answers and the budget', async (t) => {
  const stack = await startStack(t, { env: { STALE_WHILE_REVALIDATE_SECONDS: '0' } });
  await stack.get(TODAY); // miss
  await stack.get(TODAY); // hit
  await stack.get(TODAY); // hit
  await stack.get('/api/stats_leaderboard.json?period=nope'); // 400, never sent
  stack.clock.advance(FIVE_MINUTES + 1_000);
  stack.simulator.set({ fault: 'error500' });
  t.equal((await stack.get(TODAY)).status, 200, 'Deskie failed: the expired entry answers');

  const scraped = await stack.get('/metrics', { authorization: null });
  t.equal(scraped.status, 200);
  t.match(scraped.headers['content-type'], /^text\/plain; version=0\.0\.4/, "Prometheus's text format");
  const text = scraped.text;
  const requests = (outcome: string, status: string) =>
    sample(text, 'deskie_proxy_requests_total', { route: 'stats_leaderboard', period_class: 'today', outcome, status });
  t.equal(requests('miss', '200'), 1, 'one miss');
  t.equal(requests('hit', '200'), 2, 'two hits');
  t.equal(requests('stale', '200'), 1, 'one stale answer');
  t.equal(sample(text, 'deskie_proxy_requests_total', { period_class: 'none', outcome: 'error', status: '400' }), 1, 'the refused query, before any period');
  t.equal(sample(text, 'deskie_proxy_upstream_calls_total', { route: 'stats_leaderboard', status: '200' }), 1);
  t.equal(sample(text, 'deskie_proxy_upstream_calls_total', { route: 'stats_leaderboard', status: '500' }), 1);
  t.equal(sample(text, 'deskie_proxy_upstream_duration_seconds_count', { route: 'stats_leaderboard' }), 2, 'both calls timed');
  t.equal(sample(text, 'deskie_proxy_upstream_calls_saved_total', { route: 'stats_leaderboard' }), 2, 'the hits took no call');
  t.equal(sample(text, 'deskie_proxy_stale_answers_total', { route: 'stats_leaderboard' }), 1);
  const limit = sample(text, 'deskie_proxy_budget_limit_per_minute') ?? 0;
  t.ok(limit > 0, `${limit} calls a minute, from Deskie's headers less the reserve`);
  t.equal(sample(text, 'deskie_proxy_budget_calls_left'), limit - 1, 'one call in the last minute (the first was five minutes ago)');
  t.ok(Number.isFinite(sample(text, 'deskie_proxy_deskie_calls_left')), "Deskie's api_calls_left as last seen");
  t.equal(sample(text, 'deskie_proxy_budget_circuit_open'), 0);
  t.equal(sample(text, 'deskie_proxy_store_entries'), 1);
  t.ok((sample(text, 'deskie_proxy_store_bytes') ?? 0) > 0, 'the entry is counted');
  t.equal(sample(text, 'deskie_proxy_store_evictions_total'), 0);
  t.ok(sample(text, 'process_cpu_seconds_total') !== undefined, "prom-client's default process metrics");
  t.notMatch(text, /demo@example\.com|Basic /, 'no credential in any label');
});

t.test('a 429 opens the circuit: /metrics and /readyz show it, and /readyz stays 200', async (t) => {
  const stack = await startStack(t);
  await stack.get(TODAY);
  stack.simulator.set({ fault: 'rateLimited' });
  await stack.get('/api/stats_leaderboard.json?period=yesterday');
  const ready = await stack.get('/readyz', { authorization: null });
  t.equal(ready.status, 200, 'cached answers still serve: a limited Deskie is no reason to leave the rotation');
  t.match(JSON.parse(ready.text), { status: 'ready', store: { usable: true, entries: 1 }, upstream: { state: 'circuit-open', lastAnswer: { status: 429 } } });
  const text = (await stack.get('/metrics', { authorization: null })).text;
  t.equal(sample(text, 'deskie_proxy_budget_circuit_open'), 1);
  t.equal((await stack.get(TODAY)).status, 200, 'the cached answer still serves');
});

t.test('METRICS_TOKEN: /metrics needs it as a bearer token', async (t) => {
  const stack = await startStack(t, { env: { METRICS_TOKEN } });
  const missing = await stack.get('/metrics', { authorization: null });
  t.equal(missing.status, 401);
  t.equal(missing.headers['www-authenticate'], 'Bearer realm="metrics"');
  t.equal((await stack.get('/metrics', { authorization: `Bearer ${METRICS_TOKEN.slice(0, -1)}x` })).status, 401, 'one character changed');
  t.equal((await stack.get('/metrics', { authorization: DEMO })).status, 401, "a client's Basic credential is not the token");
  t.equal((await stack.get('/metrics', { authorization: `Bearer ${METRICS_TOKEN}` })).status, 200);
});

t.test('/readyz is 503 once the store is unusable', async (t) => {
  let store: MemoryStore | undefined;
  const stack = await startStack(t, { store: (clock) => (store = new MemoryStore({ maxBytes: 16 * 1024 * 1024, clock })) });
  t.equal((await stack.get('/readyz', { authorization: null })).status, 200);
  await store?.close();
  const answer = await stack.get('/readyz', { authorization: null });
  t.equal(answer.status, 503);
  t.match(JSON.parse(answer.text), { status: 'store-unusable', store: { usable: false } });
  t.equal((await stack.get('/healthz', { authorization: null })).status, 200, '/healthz still says the process is alive');
});

t.test('each request leaves one access line at info, with its request id, outcome, bytes and time', async (t) => {
  const { logger, lines } = capturedLog('info');
  const stack = await startStack(t, { logger, env: { STALE_WHILE_REVALIDATE_SECONDS: '0' } });
  const requestsOf = () => lines.filter((line) => line['msg'] === 'request' || line['msg'] === 'request refused');
  const miss = await stack.get(`${TODAY}&format=csv`, { headers: { 'x-request-id': 'dash-42.a' } });
  const hit = await stack.get(`${TODAY}&format=csv`, { headers: { 'x-request-id': 'bad id with spaces' } });
  await stack.get('/api/stats_leaderboard.json?period=nope');
  await stack.get(TODAY, { authorization: null });
  await stack.get('/nowhere?user_email=a@b.c');
  await stack.get('/healthz', { authorization: null });
  await stack.get(TODAY, { method: 'HEAD' });

  t.equal(miss.headers['x-request-id'], 'dash-42.a', "a well-formed client id is kept and sent back");
  t.match(hit.headers['x-request-id'], /^[\w-]+-[0-9a-z]+$/, 'a malformed one is replaced by ours');
  const logged = requestsOf();
  t.equal(logged.length, 7, 'one line per request');
  for (const line of logged) t.type(line['time'], 'number');
  t.match(logged[0], { level: 30, reqId: 'dash-42.a', method: 'GET', route: 'stats_leaderboard', period: 'today', format: 'csv', coding: 'identity', outcome: 'miss', status: 200, bytes: Buffer.byteLength(miss.text), ms: Number, upstreamMs: Number });
  t.match(logged[1], { reqId: hit.headers['x-request-id'], outcome: 'hit', status: 200, bytes: Buffer.byteLength(hit.text) });
  t.notOk('upstreamMs' in (logged[1] as object), 'a hit took no time at Deskie');
  t.match(logged[2], { route: 'stats_leaderboard', outcome: 'error', status: 400 });
  t.match(logged[3], { route: 'stats_leaderboard', outcome: 'error', status: 401 });
  t.match(logged[4], { route: '/nowhere', status: 404 });
  t.match(logged[5], { route: '/healthz', status: 200 });
  t.match(logged[6], { method: 'HEAD', outcome: 'hit', status: 200, bytes: 0 });
  for (const line of logged) t.notOk('url' in line, 'no URL (its query can name a person)');
});

t.test('no secret reaches any log line at LOG_LEVEL=trace, errors and refused requests included', async (t) => {
  const { logger, lines } = capturedLog('trace');
  const adminToken = 'admin-token-0123456789';
  const stack = await startStack(t, { logger, env: { METRICS_TOKEN, ADMIN_TOKEN: adminToken, UPSTREAM_TIMEOUT_MS: '200' } });
  const email = 'person@example.org';
  await stack.get(`/api/stats_leaderboard.json?period=today&user_email=${encodeURIComponent(email)}`);
  await stack.get(`/api/stats_leaderboard.json?period=today&user_email[]=${encodeURIComponent(email)}&user_phone=%2B15550100`);
  await stack.get(TODAY, { authorization: WRONG });
  stack.simulator.set({ fault: 'drop' });
  await stack.get(`/api/stats_leaderboard.json?period=yesterday&user_phone=%2B15550100`);
  await stack.get('/metrics', { authorization: `Bearer ${METRICS_TOKEN}` });
  await stack.get('/admin/entries', { authorization: `Bearer ${adminToken}` });
  // A request Node's parser refuses carries its raw bytes (and so the Authorization header) on the error.
  const { port } = new URL(stack.proxyUrl);
  await new Promise<void>((resolve) => {
    const socket = connect(Number(port), '127.0.0.1', () => {
      socket.end(`GET /api/stats_leaderboard.json HTTP/1.1\r\nHost: x\r\nAuthorization: ${DEMO}\r\nBad Header\r\n\r\n`);
    });
    socket.on('data', () => {});
    socket.on('close', () => resolve());
  });
  await settled(stack);

  const text = lines.map((line) => JSON.stringify(line)).join('\n');
  t.ok(lines.length >= 8, `${lines.length} lines logged`);
  t.match(text, /request refused/, "the parser's refusal was logged");
  const demoBasic = DEMO.slice('Basic '.length);
  for (const secret of [demoBasic, WRONG.slice('Basic '.length), 'demo@example.com:demo', METRICS_TOKEN, adminToken, email, encodeURIComponent(email), '15550100', 'test-secret-of-16-bytes']) {
    t.notOk(text.includes(secret), `${secret.slice(0, 6)}… never logged`);
  }
});

t.test('SIGTERM drains: /readyz answers 503 at once while requests are still served, then the server closes', async (t) => {
  const { startServer } = await import('../src/server.js');
  const running = await startServer({ PORT: '0', HOST: '127.0.0.1', SHUTDOWN_DRAIN_SECONDS: '0.5', LOG_LEVEL: 'warn' }, { write: () => {} });
  const { port } = running.app.server.address() as { port: number };
  const base = `http://127.0.0.1:${port}`;
  t.equal((await request(`${base}/readyz`)).statusCode, 200, 'ready once listening');
  const stopped = running.stop();
  const draining = await request(`${base}/readyz`);
  t.equal(draining.statusCode, 503);
  t.match(await draining.body.json(), { status: 'draining' });
  const served = await request(`${base}${TODAY}`, { headers: { authorization: 'Basic ' + Buffer.from('demo@example.com:demo').toString('base64') } });
  t.equal(served.statusCode, 200, 'still served while draining');
  await served.body.text();
  await stopped;
  await t.rejects(request(`${base}/healthz`), 'closed after the drain');
});

t.test("a request on an open connection once the server is closing gets a 503 in the proxy's shape, then the connection closes, and leaves an access line", async (t) => {
  const { logger, lines } = capturedLog();
  const stack = await startStack(t, { logger });
  stack.simulator.set({ latencyMs: 300 });
  const socket = connect(Number(new URL(stack.proxyUrl).port), '127.0.0.1');
  t.teardown(() => void socket.destroy());
  let text = '';
  socket.on('data', (chunk: Buffer) => (text += chunk.toString('latin1')));
  const closed = once(socket, 'close');
  socket.write(`GET ${TODAY} HTTP/1.1\r\nhost: x\r\nauthorization: ${DEMO}\r\n\r\n`);
  t.ok(await eventually(() => stack.simulator.calls > 0), 'the first request waits on Deskie');
  const closing = stack.app.close();
  t.ok(await eventually(() => !stack.app.server.listening), 'the server is closing, the connection still open');
  socket.write('GET /healthz HTTP/1.1\r\nhost: x\r\nx-request-id: late-1\r\n\r\n');
  await closed;
  await closing;
  const [first, late] = text.split(/(?=HTTP\/1\.1 )/);
  t.match(first, /^HTTP\/1\.1 200 /, 'the request in flight is answered');
  t.match(late, /^HTTP\/1\.1 503 Service Unavailable\r\n/, 'the late one is refused');
  t.match(late, /\r\nconnection: close\r\n/i, 'and the connection closed after it');
  t.match(late, /\r\nretry-after: 1\r\n/i, 'with when to retry');
  t.match(late, /\r\nx-request-id: late-1\r\n/i);
  t.match(late, /\r\ncontent-type: application\/json; charset=utf-8\r\n/i);
  t.match(JSON.parse(late?.split('\r\n\r\n')[1] ?? '{}'), { status: 'error', error: /shutting down/ }, "the proxy's error shape");
  t.match(
    lines.filter((line) => line['msg'] === 'request' && line['status'] === 503),
    [{ reqId: 'late-1', method: 'GET', route: '/healthz', status: 503, bytes: Number }],
    'one access line for it',
  );
});
