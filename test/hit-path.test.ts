import t, { type Test } from 'tap';
import { once } from 'node:events';
import { type AddressInfo, connect, type Socket } from 'node:net';
import type { IncomingMessage, Server, ServerResponse } from 'node:http';
import { request } from 'undici';
import { HitPath } from '../src/routes/hit-path.js';
import { eventually } from './helpers/eventually.js';
import { capturedLog } from './helpers/log.js';
import { DEMO, startStack } from './helpers/stack.js';

const TODAY = '/api/stats_leaderboard.json?period=today';
/** What the transport writes, which differs between a real connection and an injected request. */
const TRANSPORT = new Set(['date', 'connection', 'keep-alive', 'x-request-id', 'transfer-encoding']);
const comparable = (headers: Record<string, unknown>) => Object.fromEntries(Object.entries(headers).filter(([name]) => !TRANSPORT.has(name)));

t.test('a hit answered before routing reads byte for byte as the route answers it, in every format, coding and validator', async (t) => {
  const stack = await startStack(t);
  const miss = await stack.get(TODAY);
  t.match(miss.headers['cache-status'], /fwd=miss; stored/);
  const etag = String(miss.headers['etag']);
  const lastModified = String(miss.headers['last-modified']);
  const asks: Array<[string, string, Record<string, string>]> = [
    ['the default format', TODAY, {}],
    ['format=raw', `${TODAY}&format=raw`, {}],
    ['format=rows', `${TODAY}&format=rows`, {}],
    ['CSV with a BOM', `${TODAY}&format=csv&bom=1`, {}],
    ['CSV by Accept', TODAY, { accept: 'text/csv' }],
    ['gzip', TODAY, { 'accept-encoding': 'gzip' }],
    ['br', `${TODAY}&format=raw`, { 'accept-encoding': 'br, gzip' }],
    ['If-None-Match', TODAY, { 'if-none-match': etag }],
    ['If-None-Match that does not match', TODAY, { 'if-none-match': '"other"' }],
    ['If-Modified-Since', TODAY, { 'if-modified-since': lastModified }],
  ];
  for (const [what, path, headers] of asks) {
    const routedBefore = stack.routed;
    const direct = await request(`${stack.proxyUrl}${path}`, { headers: { authorization: DEMO, ...headers } });
    const directBody = Buffer.from(await direct.body.arrayBuffer());
    t.equal(stack.routed, routedBefore, `${what}: answered before routing`);
    const routed = await stack.app.inject({ method: 'GET', url: path, headers: { authorization: DEMO, ...headers } });
    t.equal(direct.statusCode, routed.statusCode, `${what}: the same status (${routed.statusCode})`);
    t.same(comparable(direct.headers), comparable(routed.headers), `${what}: the same headers`);
    t.same(directBody, routed.rawPayload, `${what}: the same body`);
    t.match(direct.headers['cache-status'], /; hit; ttl=\d+$/, `${what}: a hit`);
    t.match(direct.headers['x-request-id'], /^[\w-]{7,12}$/, `${what}: with a request id of its own`);
  }
  t.equal(stack.simulator.calls, 1, 'one call to Deskie for them all');
});

t.test('whatever is not a plain GET hit is left to Fastify, which answers it as before', async (t) => {
  const { logger, lines } = capturedLog();
  const stack = await startStack(t, { logger });
  const routedAfter = async (what: string, path: string, options: Parameters<typeof stack.get>[1], expect: { status: number; cacheStatus?: RegExp }) => {
    const before = stack.routed;
    const answer = await stack.get(path, options);
    t.equal(stack.routed, before + 1, `${what}: routed by Fastify`);
    t.equal(answer.status, expect.status, `${what}: ${expect.status}`);
    if (expect.cacheStatus) t.match(answer.headers['cache-status'], expect.cacheStatus, `${what}: ${expect.cacheStatus}`);
  };
  await routedAfter('a miss', TODAY, {}, { status: 200, cacheStatus: /fwd=miss/ });
  await routedAfter('HEAD', TODAY, { method: 'HEAD' }, { status: 200, cacheStatus: /; hit;/ });
  await routedAfter('a percent-encoded path', '/api/stats%5Fleaderboard.json?period=today', {}, { status: 200, cacheStatus: /; hit;/ });
  await routedAfter('a trailing slash', '/api/stats_leaderboard.json/?period=today', {}, { status: 404 });
  await routedAfter('no credentials', TODAY, { authorization: null }, { status: 401 });
  const twice = stack.routed;
  const twoHeaders = await request(`${stack.proxyUrl}${TODAY}`, { headers: ['authorization', DEMO, 'authorization', DEMO] });
  await twoHeaders.body.dump();
  t.equal(twoHeaders.statusCode, 400, 'two Authorization headers: 400');
  t.equal(stack.routed, twice + 1, 'two Authorization headers: routed by Fastify');
  await routedAfter('a bad query', '/api/stats_leaderboard.json?period=someday', {}, { status: 400 });
  await routedAfter('an undecodable query', '/api/stats_leaderboard.json?period=%zz', {}, { status: 400 });
  t.equal(stack.simulator.calls, 1, 'the refusals reached nobody');

  const before = stack.routed;
  t.equal((await stack.get(TODAY)).status, 200);
  t.equal(stack.routed, before, 'and a plain hit is not routed');
  const hits = lines.filter((line) => line['msg'] === 'request' && line['outcome'] === 'hit');
  t.match(hits.at(-1), { route: 'stats_leaderboard', period: 'today', format: 'normalized', method: 'GET', status: 200, bytes: Number }, 'its access line');
  t.equal(hits.length, 3, 'one access line per hit, whichever answered it');
  const metrics = await stack.get('/metrics', { authorization: null });
  const counted = /deskie_proxy_requests_total\{route="stats_leaderboard",period_class="[^"]+",outcome="hit",status="200"\} (\d+)/.exec(metrics.text);
  t.equal(counted?.[1], '3', 'each hit counted once, whichever answered it');
});

/** A HitPath's server answering on a loopback port, with `answerer` for /hit and a stand-in for Fastify. */
async function hitServer(
  t: Test,
  answerer: (request: IncomingMessage, response: ServerResponse, query: string) => boolean,
  { connectionTimeout = 3000, answerRouted = true } = {},
) {
  const { logger, lines } = capturedLog();
  const hitPath = new HitPath(logger);
  hitPath.add('/hit', answerer);
  const routed: string[] = [];
  const server = hitPath.serverFactory(
    (request, response) => {
      routed.push(`${request.method} ${request.url}`);
      if (answerRouted) response.end('routed');
    },
    { keepAliveTimeout: 1000, requestTimeout: 2000, connectionTimeout, maxRequestsPerSocket: 5 },
  );
  t.match(server, { keepAliveTimeout: 1000, requestTimeout: 2000, maxRequestsPerSocket: 5 }, 'the timeouts Fastify would set on a server of its own');
  t.equal(server.timeout, 0, 'the connection timeout is set where a connection can idle, not re-armed by every request');
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  t.teardown(() => new Promise<void>((resolve) => server.close(() => resolve())));
  const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  return { hitPath, routed, url, lines, server };
}

/** Opens a connection to `server`, writes `text`, never reads; resolves once the server closes its end, with how long that took. */
function heldOpen(server: Server, text: string): Promise<number> {
  return new Promise((resolve) => {
    const started = performance.now();
    server.once('connection', (socket: Socket) =>
      socket.once('close', () => {
        resolve(performance.now() - started);
        client.destroy();
      }),
    );
    const client = connect((server.address() as AddressInfo).port, '127.0.0.1', () => client.write(text));
    client.pause();
    client.on('error', () => {});
  });
}

t.test('a connection may go CONNECTION_TIMEOUT_MS without a byte either way: open, on a routed request, on a hit not read; a hit written at once leaves it to keep-alive', async (t) => {
  const big = Buffer.alloc(64 * 1024 * 1024, 'x');
  const timeouts: number[] = [];
  const { url, server } = await hitServer(
    t,
    (_request, response, query) => {
      const { socket } = response;
      response.on('finish', () => timeouts.push(socket?.timeout ?? -1));
      response.end(query === 'big' ? big : 'small');
      return true;
    },
    { connectionTimeout: 200, answerRouted: false },
  );
  const idle = await heldOpen(server, '');
  t.ok(idle >= 190 && idle < 1000, `a connection that sends nothing is closed after the connection timeout, not the keep-alive one (${Math.round(idle)} ms)`);
  const stalled = await heldOpen(server, 'GET /routed HTTP/1.1\r\nhost: x\r\n\r\n');
  t.ok(stalled >= 190 && stalled < 1000, `so is one whose routed request gets no answer (${Math.round(stalled)} ms)`);
  const unread = await heldOpen(server, 'GET /hit?big HTTP/1.1\r\nhost: x\r\n\r\n');
  t.ok(unread >= 190 && unread < 1000, `and one that does not read a hit too big to be written at once (${Math.round(unread)} ms)`);
  const first = await request(`${url}/hit?small`);
  t.equal(await first.body.text(), 'small');
  await new Promise((resolve) => setTimeout(resolve, 400));
  const second = await request(`${url}/hit?small`);
  t.equal(await second.body.text(), 'small', 'a keep-alive connection idle past the connection timeout, within the keep-alive one, serves again');
  // Node arms the keep-alive timeout with a margin of its own: at least 1000 ms, never the connection timeout's 200.
  t.ok(timeouts.slice(-2).every((ms) => ms >= 1000), `after a hit written at once, only the keep-alive timeout runs (${timeouts.slice(-2).join(', ')} ms)`);
});

t.test('the hit path: exact paths only, GET only, nothing once closing, and an answerer that fails before writing leaves the request to Fastify', async (t) => {
  const queries: string[] = [];
  let failing: 'before' | 'after' | undefined;
  const { hitPath, routed, url, lines } = await hitServer(t, (_request, response, query) => {
    if (failing === 'before') throw new Error('failed before writing');
    if (query === 'miss') return false;
    queries.push(query);
    response.writeHead(200, ['content-type', 'text/plain']);
    if (failing === 'after') throw new Error('failed after the head');
    response.end('hit');
    return true;
  });
  const text = async (path: string, method: 'GET' | 'POST' = 'GET') => (await request(`${url}${path}`, { method })).body.text();
  t.equal(await text('/hit?a=1&b=2'), 'hit');
  t.equal(await text('/hit'), 'hit');
  t.equal(await text('/hit?'), 'hit');
  t.same(queries, ['a=1&b=2', '', ''], 'the query string as it came, or none');
  t.equal(await text('/hits?a=1'), 'routed', 'a longer path: routed');
  t.equal(await text('/hit?miss'), 'routed', 'not a hit: routed');
  t.equal(await text('/hit', 'POST'), 'routed', 'another method: routed');
  t.equal(await text('/Hit'), 'routed', 'another path: routed');
  failing = 'before';
  t.equal(await text('/hit?a=1'), 'routed', 'an answerer that throws before writing: routed');
  failing = 'after';
  await t.rejects(text('/hit?a=1'), 'one that throws after writing its head: the connection is closed');
  t.match(lines.at(-1), { level: 50, msg: 'a hit failed while it was written', err: { message: 'failed after the head' } });
  failing = undefined;
  hitPath.close();
  t.equal(await text('/hit?a=1'), 'routed', 'once closing: routed (Fastify answers 503)');
  t.same(routed, ['GET /hits?a=1', 'GET /hit?miss', 'POST /hit', 'GET /Hit', 'GET /hit?a=1', 'GET /hit?a=1']);
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
  t.match(late, /\r\nx-request-id: late-1\r\n/i);
  t.match(late, /\r\ncontent-type: application\/json; charset=utf-8\r\n/i);
  t.match(JSON.parse(late?.split('\r\n\r\n')[1] ?? '{}'), { status: 'error', error: /shutting down/ }, "the proxy's error shape");
  t.match(
    lines.filter((line) => line['msg'] === 'request' && line['status'] === 503),
    [{ reqId: 'late-1', method: 'GET', route: '/healthz', status: 503, bytes: Number }],
    'one access line for it',
  );
});
