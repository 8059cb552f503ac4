import { once } from 'node:events';
import { connect, type Socket } from 'node:net';
import { performance } from 'node:perf_hooks';
import t, { type Test } from 'tap';
import { request } from 'undici';
import { MAX_AUTHORIZATION_BYTES } from '../src/auth/header.js';
import { ConfigError, CONNECTION_TIMEOUT_MARGIN_MS, loadConfig } from '../src/config/config.js';
import { capturedLog } from './helpers/log.js';
import { DEMO, startStack, type Stack, WRONG } from './helpers/stack.js';

const LEADERBOARD = '/api/stats_leaderboard.json';
const TODAY = `${LEADERBOARD}?period=today`;
const ADMIN_TOKEN = 'admin-token-0123456789';
const METRICS_TOKEN = 'metrics-token-0123456789';
const ADMIN = `Bearer ${ADMIN_TOKEN}`;

/** An answer read off the socket, exactly as the server wrote it. */
interface RawAnswer {
  readonly status: number;
  readonly headers: Readonly<Record<string, string>>;
  readonly body: string;
  /** Everything the server wrote, for checks that no second answer followed. */
  readonly text: string;
}

function parseAnswer(text: string): RawAnswer {
  const end = text.indexOf('\r\n\r\n');
  const [statusLine = '', ...lines] = text.slice(0, end).split('\r\n');
  const headers: Record<string, string> = {};
  for (const line of lines) {
    const colon = line.indexOf(':');
    headers[line.slice(0, colon).toLowerCase()] = line.slice(colon + 1).trim();
  }
  let body = text.slice(end + 4);
  if (headers['transfer-encoding'] === 'chunked') {
    let decoded = '';
    for (let at = 0; ; ) {
      const lineEnd = body.indexOf('\r\n', at);
      const size = parseInt(body.slice(at, lineEnd), 16);
      if (!(size > 0)) break;
      decoded += body.slice(lineEnd + 2, lineEnd + 2 + size);
      at = lineEnd + 2 + size + 2;
    }
    body = decoded;
  }
  return { status: Number(/^HTTP\/1\.1 (\d{3}) /.exec(statusLine)?.[1]), headers, body, text };
}

const portOf = (stack: Stack): number => Number(new URL(stack.proxyUrl).port);

/**
 * Sends `bytes` on a fresh connection, exactly as written (no client library
 * to normalise the path or merge headers), and reads until the server closes
 * it (the requests say `Connection: close`; ending our side first would make
 * the server drop a miss still waiting for Deskie).
 */
function exchange(stack: Stack, bytes: string): Promise<RawAnswer> {
  return new Promise((resolve, reject) => {
    const socket = connect(portOf(stack), '127.0.0.1', () => socket.write(bytes));
    let text = '';
    socket.on('data', (chunk: Buffer) => (text += chunk.toString('latin1')));
    socket.on('close', () => resolve(parseAnswer(text)));
    socket.on('error', reject);
  });
}

/** A GET of `target` as the request line writes it, with these header lines. */
const get = (target: string, headers: ReadonlyArray<readonly [string, string]> = [['Authorization', DEMO]]): string =>
  `GET ${target} HTTP/1.1\r\nHost: 127.0.0.1\r\n${headers.map(([name, value]) => `${name}: ${value}\r\n`).join('')}Connection: close\r\n\r\n`;

/** The project's error body, and nothing else: no data came with the refusal. */
function errorOf(t: Test, answer: RawAnswer, what: string): string {
  const body = JSON.parse(answer.body) as Record<string, unknown>;
  t.same(Object.keys(body), ['status', 'error'], `${what}: the error shape, no data`);
  t.match(answer.headers['content-type'], /^application\/json/, `${what}: JSON`);
  return String(body['error']);
}

// ---------------------------------------------------------------------------
// Path tricks

/**
 * Paths that find-my-way decodes to the real statistics route: it decodes
 * percent-escapes of unreserved characters (`%2E` is `.`, `%61` is `a`) and
 * routes an absolute-form target by its path. They must share its one entry.
 */
const SAME_ROUTE = [
  `/api/stats_leaderboard%2Ejson?period=today`,
  `/api/stats_leaderboard%2ejson?period=today`,
  `/%61pi/stats_leaderboard.json?period=today`,
  `http://127.0.0.1/api/stats_leaderboard.json?period=today`,
];

/**
 * Paths that name no route once decoded the way the router decodes them:
 * `..` and `.` segments are not resolved, `%2F` and `%5C` are not path
 * separators, double encoding decodes once (`%252e` is the text `%2e`), and
 * matching is exact in case, slashes and a trailing slash.
 */
const NOT_FOUND = [
  '/api/../admin/entries',
  '/admin/../admin/entries',
  '/docs/../admin/entries',
  '/api/%2e%2e/admin/entries',
  '/api/%2E%2E/admin/entries',
  '/api/..%2Fadmin/entries',
  '/api%2F..%2Fadmin/entries',
  '/admin%2Fentries',
  '/api%2Fstats_leaderboard.json?period=today',
  '/api/stats_leaderboard%252Ejson?period=today',
  '/api%252Fstats_leaderboard.json?period=today',
  '/api/%252e%252e/admin/entries',
  '/api/stats_leaderboard.json/?period=today',
  '/admin/entries/',
  '/API/Stats_Leaderboard.json?period=today',
  '/ADMIN/entries',
  '/api/./stats_leaderboard.json?period=today',
  '//api/stats_leaderboard.json?period=today',
  '//admin/entries',
  '/api\\stats_leaderboard.json?period=today',
  '/api%5Cstats_leaderboard.json?period=today',
  '/api/stats_leaderboard.json\\?period=today',
];

t.test('path tricks reach the statistics route only as itself, share its one cache entry, and never reach /admin/', async (t) => {
  const stack = await startStack(t, { env: { ADMIN_TOKEN } });
  const first = await exchange(stack, get(TODAY));
  t.equal(first.status, 200, 'the route itself');
  t.equal(stack.simulator.calls, 1, 'one call to Deskie for it');
  const admin = await exchange(stack, get('/admin/entries', [['Authorization', ADMIN]]));
  t.equal(admin.status, 200, 'the admin route exists, for a trick to aim at');

  for (const target of SAME_ROUTE) {
    const answer = await exchange(stack, get(target));
    t.equal(answer.status, 200, `${target}: decoded to the route itself`);
    t.match(answer.headers['cache-status'], /; hit;/, `${target}: answered from the same entry`);
    t.equal(answer.body, first.body, `${target}: the same bytes`);
  }
  for (const target of NOT_FOUND) {
    for (const authorization of [DEMO, ADMIN]) {
      const answer = await exchange(stack, get(target, [['Authorization', authorization]]));
      t.equal(answer.status, 404, `${target} with ${authorization.split(' ')[0]}: 404`);
      t.match(errorOf(t, answer, target), /^no route GET .*; this server answers GET and HEAD on \/api\/stats_leaderboard\.json/);
    }
  }
  // A request target that does not start with a slash is not HTTP at all: Node's parser refuses it.
  const backslashes = await exchange(stack, get('\\api\\stats_leaderboard.json?period=today'));
  t.equal(backslashes.status, 400, 'a request target of backslashes: 400');
  t.equal(errorOf(t, backslashes, 'backslashes'), 'the request could not be read as HTTP');
  // The API description's static files resolve `..` themselves, and refuse to leave their folder.
  for (const target of ['/docs/static/../../package.json', '/docs/static/%2e%2e/%2e%2e/package.json']) {
    const answer = await exchange(stack, get(target));
    t.equal(answer.status, 403, `${target}: the static files refuse it`);
    t.equal(errorOf(t, answer, target), 'Forbidden');
  }

  t.equal(stack.simulator.calls, 1, 'still one call to Deskie: no trick made a second entry');
  const entries = JSON.parse((await exchange(stack, get('/admin/entries', [['Authorization', ADMIN]]))).body) as { total: number };
  t.equal(entries.total, 1, 'and the cache holds one entry');
});

// ---------------------------------------------------------------------------
// Authorization headers

t.test('two Authorization headers are a 400 that says what is accepted, even for a cached answer, and cost no call', async (t) => {
  const stack = await startStack(t);
  t.equal((await exchange(stack, get(TODAY))).status, 200, 'the entry is cached');
  const pairs: Array<[string, ReadonlyArray<readonly [string, string]>]> = [
    ['the same credential twice', [['Authorization', DEMO], ['Authorization', DEMO]]],
    ['a good one, then a wrong one', [['Authorization', DEMO], ['Authorization', WRONG]]],
    ['names in other cases', [['authorization', DEMO], ['AUTHORIZATION', WRONG]]],
    ['another header between them', [['Authorization', DEMO], ['Accept', '*/*'], ['Authorization', 'Basic x']]],
  ];
  for (const [what, headers] of pairs) {
    const answer = await exchange(stack, get(TODAY, headers));
    t.equal(answer.status, 400, `${what}: 400`);
    t.equal(
      errorOf(t, answer, what),
      `the request has more than one Authorization header; send exactly one, of at most ${MAX_AUTHORIZATION_BYTES} bytes`,
    );
    t.notOk(answer.headers['cache-status'], `${what}: not answered from the cache`);
  }
  t.equal(stack.simulator.calls, 1, 'only the first request reached Deskie');
});

t.test('an Authorization header over 4096 bytes is a 400; one of 4096 bytes is read', async (t) => {
  const stack = await startStack(t, { env: { METRICS_TOKEN } });
  const basic = (bytes: number): string => `Basic ${'A'.repeat(bytes - 'Basic '.length)}`;
  const long = await exchange(stack, get(TODAY, [['Authorization', basic(MAX_AUTHORIZATION_BYTES + 1)]]));
  t.equal(long.status, 400, 'statistics route: 400');
  t.equal(errorOf(t, long, 'statistics route'), `the Authorization header is 4097 bytes long; at most 4096 are accepted`);
  t.equal(stack.simulator.calls, 0, 'and no call to Deskie');

  const bearer = (bytes: number): string => `Bearer ${'t'.repeat(bytes - 'Bearer '.length)}`;
  const atLimit = await exchange(stack, get('/metrics', [['Authorization', bearer(MAX_AUTHORIZATION_BYTES)]]));
  t.equal(atLimit.status, 401, '/metrics reads a 4096-byte token (and refuses it as the wrong one)');
  const overLimit = await exchange(stack, get('/metrics', [['Authorization', bearer(MAX_AUTHORIZATION_BYTES + 1)]]));
  t.equal(overLimit.status, 400, '/metrics: one byte more is a 400');
  t.match(errorOf(t, overLimit, '/metrics'), /at most 4096 are accepted/);
});

t.test('/metrics and /admin/ refuse two Authorization headers too, even when both carry the token', async (t) => {
  const stack = await startStack(t, { env: { METRICS_TOKEN, ADMIN_TOKEN } });
  const twice = (token: string): ReadonlyArray<readonly [string, string]> => [['Authorization', `Bearer ${token}`], ['Authorization', `Bearer ${token}`]];
  for (const [path, token] of [['/metrics', METRICS_TOKEN], ['/admin/entries', ADMIN_TOKEN]] as const) {
    t.equal((await exchange(stack, get(path, [['Authorization', `Bearer ${token}`]]))).status, 200, `${path} with one: 200`);
    const answer = await exchange(stack, get(path, twice(token)));
    t.equal(answer.status, 400, `${path} with two: 400`);
    t.match(errorOf(t, answer, path), /more than one Authorization header; send exactly one/);
    t.equal(answer.headers['cache-control'], 'no-store', `${path}: still an operational answer`);
  }
});

// ---------------------------------------------------------------------------
// Answer headers

t.test('every answer carries X-Content-Type-Options: nosniff', async (t) => {
  const stack = await startStack(t, { env: { ADMIN_TOKEN, METRICS_TOKEN } });
  const miss = await stack.get(TODAY);
  const answers: Array<[string, { status: number; headers: Record<string, unknown> }]> = [
    ['a miss', miss],
    ['a hit', await stack.get(TODAY)],
    ['a 304', await stack.get(TODAY, { headers: { 'if-none-match': String(miss.headers['etag']) } })],
    ['a HEAD', await stack.get(TODAY, { method: 'HEAD' })],
    ['CSV, gzipped', await stack.get(`${TODAY}&format=csv`, { headers: { 'accept-encoding': 'gzip' } })],
    ['a bad query', await stack.get(`${LEADERBOARD}?period=someday`)],
    ['no credentials', await stack.get(TODAY, { authorization: null })],
    ["Deskie's own 401", await stack.get(`${LEADERBOARD}?period=yesterday`, { authorization: WRONG })],
    ['a query string too long', await stack.get(`${TODAY}&channel=${'a'.repeat(5000)}`)],
    ['a URL that cannot be decoded', await stack.get('/api/%zz')],
    ['an unknown path', await stack.get('/nowhere')],
    ['/healthz', await stack.get('/healthz', { authorization: null })],
    ['/readyz', await stack.get('/readyz', { authorization: null })],
    ['/metrics', await stack.get('/metrics', { authorization: `Bearer ${METRICS_TOKEN}` })],
    ['/metrics without its token', await stack.get('/metrics', { authorization: null })],
    ['/admin/entries', await stack.get('/admin/entries', { authorization: ADMIN })],
    ['/admin/entries without the token', await stack.get('/admin/entries')],
    ['/docs', await stack.get('/docs', { authorization: null })],
    ['/docs/json', await stack.get('/docs/json', { authorization: null })],
    ['a redirect of the docs', await stack.get('/docs/static/index.html', { authorization: null })],
  ];
  stack.simulator.set({ fault: 'error500' });
  answers.push(["Deskie's own 500", await stack.get(`${LEADERBOARD}?period=last_week`)]);
  answers.push(['oversized headers (the parser)', await exchange(stack, get(TODAY, [['X-Big', 'a'.repeat(20_000)]]))]);
  answers.push(['not HTTP (the parser)', await exchange(stack, 'NOT HTTP AT ALL\r\n\r\n')]);
  answers.push(['a static file out of bounds', await exchange(stack, get('/docs/static/../../package.json'))]);

  const statuses = new Set(answers.map(([, answer]) => answer.status));
  t.same([...statuses].sort(), [200, 302, 304, 400, 401, 403, 404, 414, 431, 500], 'answers of every kind');
  for (const [what, answer] of answers) t.equal(answer.headers['x-content-type-options'], 'nosniff', `${what} (${answer.status})`);
});

t.test('CSV answers are attachments named after the endpoint, from the rendering; JSON answers are not', async (t) => {
  const stack = await startStack(t);
  for (const name of ['stats_leaderboard', 'stats_staff_statuses', 'stats_satisfaction']) {
    const path = `/api/${name}.json?period=today`;
    const expected = `attachment; filename="${name}.csv"`;
    for (const [what, query, headers] of [
      ['format=csv', '&format=csv', {}],
      ['format=csv&bom=1', '&format=csv&bom=1', {}],
      ['Accept: text/csv', '', { accept: 'text/csv' }],
      ['CSV in br', '&format=csv', { 'accept-encoding': 'br' }],
    ] as const) {
      const answer = await stack.get(`${path}${query}`, { headers });
      t.match(answer.headers['content-type'], /^text\/csv/, `${name}, ${what}: CSV`);
      t.equal(answer.headers['content-disposition'], expected, `${name}, ${what}: ${expected}`);
    }
    t.equal((await stack.get(`${path}&format=csv`, { method: 'HEAD' })).headers['content-disposition'], expected, `${name}: HEAD says so too`);
    for (const format of ['normalized', 'raw', 'rows']) {
      t.notOk((await stack.get(`${path}&format=${format}`)).headers['content-disposition'], `${name}, ${format}: shown, not saved`);
    }
  }
  t.equal(stack.simulator.calls, 3, 'one call per endpoint: the header costs no fetch');
});

// ---------------------------------------------------------------------------
// TRUST_PROXY

/** The access lines of answers with this status. */
const accessLines = (lines: ReadonlyArray<Record<string, unknown>>, status: number) => lines.filter((line) => line['msg'] === 'request' && line['status'] === status);

t.test('without TRUST_PROXY, X-Forwarded-For is ignored: refused answers log the peer address', async (t) => {
  const { logger, lines } = capturedLog('info');
  const stack = await startStack(t, { logger });
  const forwarded = { 'x-forwarded-for': '203.0.113.7' };
  await stack.get(TODAY, { headers: forwarded });
  await stack.get(TODAY, { headers: forwarded });
  await stack.get(TODAY, { authorization: null, headers: forwarded });
  await stack.get(`${LEADERBOARD}?period=someday`, { headers: forwarded });
  await stack.get('/nowhere', { headers: forwarded });

  for (const status of [400, 401, 404]) t.match(accessLines(lines, status), [{ ip: '127.0.0.1' }], `${status}: the peer's address`);
  const ok = accessLines(lines, 200);
  t.equal(ok.length, 2, 'a miss and a hit');
  for (const line of ok) t.notOk('ip' in line, `a ${line['outcome']} that went well logs no address`);
});

t.test('with TRUST_PROXY naming the proxy, refused answers log the client it forwarded for', async (t) => {
  // The proxy on 127.0.0.1 says it was sent the request by 203.0.113.7, which says it came from 198.51.100.1.
  const forwarded = { 'x-forwarded-for': '198.51.100.1, 203.0.113.7' };
  for (const trust of ['127.0.0.1', 'loopback', '10.0.0.0/8, 127.0.0.0/8']) {
    const { logger, lines } = capturedLog('info');
    const stack = await startStack(t, { logger, env: { TRUST_PROXY: trust } });
    await stack.get('/nowhere', { headers: forwarded });
    t.match(accessLines(lines, 404), [{ ip: '203.0.113.7' }], `TRUST_PROXY=${trust}: the address the trusted proxy saw, no further`);
  }
  {
    const { logger, lines } = capturedLog('info');
    const stack = await startStack(t, { logger, env: { TRUST_PROXY: 'true' } });
    await stack.get('/nowhere', { headers: forwarded });
    t.match(accessLines(lines, 404), [{ ip: '198.51.100.1' }], 'TRUST_PROXY=true: every hop is believed, to the first address');
  }
  const { logger, lines } = capturedLog('info');
  const stack = await startStack(t, { logger, env: { TRUST_PROXY: '10.0.0.0/8' } });
  await stack.get('/nowhere', { headers: { 'x-forwarded-for': '203.0.113.7' } });
  t.match(accessLines(lines, 404), [{ ip: '127.0.0.1' }], 'a peer outside the trusted ranges is not believed');
});

t.test('TRUST_PROXY takes true or addresses and ranges; a hop count or a bad entry stops start-up', async (t) => {
  t.equal(loadConfig({}).trustProxy, false, 'off unless set');
  t.equal(loadConfig({ TRUST_PROXY: 'true' }).trustProxy, true);
  t.equal(loadConfig({ TRUST_PROXY: 'false' }).trustProxy, false);
  t.same(loadConfig({ TRUST_PROXY: '10.0.0.1, 192.168.0.0/16,::1,fd00::/8,uniquelocal' }).trustProxy, ['10.0.0.1', '192.168.0.0/16', '::1', 'fd00::/8', 'uniquelocal']);
  t.throws(() => loadConfig({ TRUST_PROXY: '1' }), new ConfigError(''), 'a hop count');
  t.throws(() => loadConfig({ TRUST_PROXY: '1' }), /TRUST_PROXY takes true, or addresses and CIDR ranges .*; not a hop count/);
  for (const bad of ['yes', '10.0.0.0/33', '10.0.0.0/0', '::1/129', '10.0.0.1/8/8', 'example.com', '10.0.0.1,', '300.1.1.1']) {
    t.throws(() => loadConfig({ TRUST_PROXY: bad }), /^TRUST_PROXY takes true, or addresses and CIDR ranges .* is neither an address nor a range$/, bad);
  }
});

// ---------------------------------------------------------------------------
// Timeouts

t.test('timeouts: sensible defaults, the connection timeout past the longest wait for Deskie, and the server gets them all', async (t) => {
  t.match(loadConfig({}), {
    headersTimeoutMs: 10_000,
    requestTimeoutMs: 30_000,
    keepAliveTimeoutMs: 72_000,
    connectionTimeoutMs: 10_000 + 120_000 + 30_000 + CONNECTION_TIMEOUT_MARGIN_MS,
  });
  t.equal(
    loadConfig({ UPSTREAM_QUEUE_MS: '1000', PAGE_ALL_TIMEOUT_MS: '2000', UPSTREAM_TIMEOUT_MS: '3000' }).connectionTimeoutMs,
    6000 + CONNECTION_TIMEOUT_MARGIN_MS,
    'by default, the longest wait for Deskie plus a margin',
  );
  t.throws(
    () => loadConfig({ CONNECTION_TIMEOUT_MS: '160000' }),
    /^CONNECTION_TIMEOUT_MS \(160000\) must exceed UPSTREAM_QUEUE_MS \+ PAGE_ALL_TIMEOUT_MS \+ UPSTREAM_TIMEOUT_MS \(160000\)/,
  );
  t.throws(() => loadConfig({ HEADERS_TIMEOUT_MS: '5000', REQUEST_TIMEOUT_MS: '4000' }), /^HEADERS_TIMEOUT_MS \(5000\) must not exceed REQUEST_TIMEOUT_MS \(4000\)/);
  t.throws(() => loadConfig({ KEEP_ALIVE_TIMEOUT_MS: '0' }), /KEEP_ALIVE_TIMEOUT_MS/);

  const stack = await startStack(t, {
    env: { HEADERS_TIMEOUT_MS: '2000', REQUEST_TIMEOUT_MS: '3000', KEEP_ALIVE_TIMEOUT_MS: '4000', CONNECTION_TIMEOUT_MS: '170001' },
  });
  const server = stack.app.server;
  t.match(server, { headersTimeout: 2000, requestTimeout: 3000, keepAliveTimeout: 4000 }, 'Node holds each');
  const opened = once(server, 'connection') as Promise<[Socket]>;
  const client = connect(portOf(stack), '127.0.0.1');
  t.teardown(() => void client.destroy());
  const [socket] = await opened;
  t.equal(socket.timeout, 170_001, 'and a connection gets CONNECTION_TIMEOUT_MS');
  t.match(server, { connectionsCheckingInterval: 200 }, 'and looks for late requests every tenth of the headers timeout');
  const defaults = await startStack(t);
  t.match(defaults.app.server, { headersTimeout: 10_000, connectionsCheckingInterval: 1000 }, 'at most every second');
});

/**
 * Writes `head` on a fresh connection, then `trickle` one byte every
 * `everyMs`, until the server closes the connection; the answer and how long it took.
 */
function trickle(stack: Stack, head: string, trickle: string, everyMs: number): Promise<{ answer: RawAnswer; ms: number; sent: number }> {
  return new Promise((resolve, reject) => {
    const started = performance.now();
    let sent = 0;
    let timer: NodeJS.Timeout | undefined;
    const socket = connect(portOf(stack), '127.0.0.1', () => {
      socket.write(head);
      timer = setInterval(() => {
        if (sent < trickle.length && socket.writable) socket.write(trickle[sent++] as string);
      }, everyMs);
    });
    let text = '';
    socket.on('data', (chunk: Buffer) => (text += chunk.toString('latin1')));
    socket.on('close', () => {
      clearInterval(timer);
      resolve({ answer: parseAnswer(text), ms: performance.now() - started, sent });
    });
    socket.on('error', (error: NodeJS.ErrnoException) => {
      // The server may close while a byte is on its way.
      if (error.code !== 'ECONNRESET' && error.code !== 'EPIPE') reject(error);
    });
  });
}

t.test('a client trickling its headers a byte at a time gets a 408 and is cut off at HEADERS_TIMEOUT_MS', async (t) => {
  const { logger, lines } = capturedLog('info');
  const stack = await startStack(t, { logger, env: { HEADERS_TIMEOUT_MS: '200', REQUEST_TIMEOUT_MS: '200' } });
  const headers = `GET ${TODAY} HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: ${DEMO}\r\nX-Slow: ${'a'.repeat(500)}\r\n\r\n`;
  const { answer, ms, sent } = await trickle(stack, '', headers, 5);
  t.equal(answer.status, 408, 'a 408');
  t.equal(errorOf(t, answer, 'the 408'), 'the request took too long to arrive');
  t.equal(answer.headers['x-content-type-options'], 'nosniff');
  t.equal(answer.headers['connection'], 'close', 'and the connection closed');
  t.ok(sent < headers.length, `cut off after ${sent} of ${headers.length} bytes`);
  t.ok(ms >= 190, `not before HEADERS_TIMEOUT_MS (${Math.round(ms)} ms)`);
  t.ok(ms < 1000, `within a small bound past it (${Math.round(ms)} ms)`);
  t.equal(stack.simulator.calls, 0, 'Deskie was never asked');
  t.match(lines.filter((line) => line['msg'] === 'request refused'), [{ status: 408, code: 'ERR_HTTP_REQUEST_TIMEOUT' }], 'the refusal is logged');
});

t.test('a body trickled in after complete headers gets a 408 at REQUEST_TIMEOUT_MS', async (t) => {
  const stack = await startStack(t, { env: { ADMIN_TOKEN, HEADERS_TIMEOUT_MS: '100', REQUEST_TIMEOUT_MS: '300' } });
  const body = JSON.stringify({ authorization: DEMO, queries: [TODAY] });
  const head = `POST /admin/prewarm HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: ${ADMIN}\r\nContent-Type: application/json\r\nContent-Length: ${body.length}\r\n\r\n`;
  const { answer, ms, sent } = await trickle(stack, head, body, 5);
  t.equal(answer.status, 408, 'a 408');
  t.equal(errorOf(t, answer, 'the 408'), 'the request took too long to arrive');
  t.ok(sent < body.length, `cut off after ${sent} of ${body.length} bytes of body`);
  t.ok(ms >= 290 && ms < 1200, `at REQUEST_TIMEOUT_MS, not at HEADERS_TIMEOUT_MS (${Math.round(ms)} ms)`);
  t.equal(stack.simulator.calls, 0, 'nothing was prewarmed');
});

t.test('a prewarm that waits on Deskie longer than CONNECTION_TIMEOUT_MS still gets its answer', async (t) => {
  // The longest wait for one miss is 50 + 50 + 200 ms, so a connection may idle 301 ms;
  // twelve queries four at a time, each 150 ms at Deskie, take longer with nothing sent.
  const stack = await startStack(t, {
    env: { ADMIN_TOKEN, UPSTREAM_QUEUE_MS: '50', PAGE_ALL_TIMEOUT_MS: '50', UPSTREAM_TIMEOUT_MS: '200', CONNECTION_TIMEOUT_MS: '301' },
  });
  t.equal((await stack.get(TODAY)).status, 200, 'Deskie knows the credential');
  stack.simulator.set({ latencyMs: 150 });
  const periods = ['yesterday', 'this_week', 'last_week', 'this_month', 'last_month', 'this_year', 'last_year', 'last_7_days', 'last_14_days', 'last_30_days', 'month_2', 'month_3'];
  const started = performance.now();
  const answer = await request(`${stack.proxyUrl}/admin/prewarm`, {
    method: 'POST',
    headers: { authorization: ADMIN, 'content-type': 'application/json' },
    body: JSON.stringify({ authorization: DEMO, queries: periods.map((period) => `${LEADERBOARD}?period=${period}`) }),
  });
  const ms = performance.now() - started;
  t.equal(answer.statusCode, 200, 'answered');
  const { results } = (await answer.body.json()) as { results: Array<{ outcome: string }> };
  t.same(results.map((result) => result.outcome), periods.map(() => 'miss'), 'every query fetched');
  t.ok(ms > 301, `after longer than CONNECTION_TIMEOUT_MS (${Math.round(ms)} ms)`);
});
