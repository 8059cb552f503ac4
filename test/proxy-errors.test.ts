import t from 'tap';
import { startStack } from './helpers/stack.js';

const LEADERBOARD = '/api/stats_leaderboard.json';

const errorOf = (text: string): string => {
  const body = JSON.parse(text) as { status: string; error: string };
  if (body.status !== 'error') throw new Error(`not an error body: ${text}`);
  return body.error;
};

t.test('bad queries get a 400 that says what is accepted, and never reach Deskie', async (t) => {
  const stack = await startStack(t);
  const cases: Array<[string, RegExp]> = [
    [`${LEADERBOARD}?period=last_2_days`, /period must be one of .*last_24_hours/],
    [`${LEADERBOARD}?from_time=2026-11-01%2010:00&to_time=2026-11-01%2010:30`, /at least 1 hour/],
    [`${LEADERBOARD}?from_time=2026-01-01&to_time=2026-06-01`, /at most 3 months/],
    ['/api/stats_staff_statuses.json?from_time=2026-01-01&to_time=2026-03-01', /at most 1 month/],
    [`${LEADERBOARD}`, /give period/],
    [`${LEADERBOARD}?period=today&_=123`, /unknown parameter _;.*accepts/],
    [`${LEADERBOARD}?period=today&foo[]=1`, /unknown parameter foo\[\]/],
    ['/api/stats_satisfaction.json?period=today&limit=500', /limit must be an integer from 1 to 100/],
    ['/api/stats_satisfaction.json?period=today&sort=newest', /sort must be added_at_desc or added_at_asc/],
    ['/api/stats_staff_statuses.json?period=today&page=-1', /page must be a positive integer/],
    [`${LEADERBOARD}?from_time=yesterday&to_time=today`, /from_time must be .*YYYY-MM-DD/],
  ];
  for (const [path, message] of cases) {
    const answer = await stack.get(path);
    t.equal(answer.status, 400, `${path} is a 400`);
    t.match(answer.headers['content-type'], /^application\/json/);
    t.match(errorOf(answer.text), message, `${path} says why`);
  }
  t.equal(stack.simulator.calls, 0, 'none reached Deskie');
});

t.test('no credentials is a 401 without an upstream call', async (t) => {
  const stack = await startStack(t);
  for (const authorization of [null, 'Bearer abc', 'Basic ']) {
    const answer = await stack.get(`${LEADERBOARD}?period=today`, { authorization });
    t.equal(answer.status, 401, `${authorization} is refused`);
    t.match(answer.headers['www-authenticate'], /^Basic/);
    t.match(errorOf(answer.text), /Basic credentials are required/);
  }
  t.equal(stack.simulator.calls, 0);
});

t.test('other paths and methods are a 404 JSON and reach nothing', async (t) => {
  const stack = await startStack(t);
  for (const path of ['/', '/api/cases.json', '/api/stats_leaderboard.json/', '/API/stats_leaderboard.json', '/api/stats_leaderboard']) {
    const answer = await stack.get(path);
    t.equal(answer.status, 404, `${path} is a 404`);
    t.match(errorOf(answer.text), /this server answers GET and HEAD on \/api\/stats_leaderboard\.json/);
  }
  const { request } = await import('undici');
  for (const [method, body, type] of [['POST', '{}', 'application/json'], ['POST', '{nope', 'application/json'], ['PUT', 'x'.repeat(2_000_000), 'text/plain']] as const) {
    const answer = await request(`${stack.proxyUrl}${LEADERBOARD}?period=today`, { method, body, headers: { 'content-type': type } });
    t.equal(answer.statusCode, 404, `${method} with ${body.length} bytes of ${type} is not a route`);
    t.match(errorOf(await answer.body.text()), /this server answers GET and HEAD/);
  }
  const badUrl = await stack.get('/api/%zz');
  t.equal(badUrl.status, 400, 'a URL that cannot be decoded');
  t.match(errorOf(badUrl.text), /could not be read/);
  t.equal(stack.simulator.calls, 0);
});

t.test('only Authorization, Accept and the canonical query go upstream', async (t) => {
  const stack = await startStack(t);
  await stack.get(`${LEADERBOARD}?status=open&period=today`, {
    headers: { cookie: 'session=1', 'x-forwarded-for': '10.0.0.1', 'x-forwarded-host': 'evil.example', 'x-custom': 'y' },
  });
  const [sent] = stack.simulator.requests;
  t.equal(sent?.path, LEADERBOARD);
  t.equal(sent?.query, 'period=today&status=open', 'the canonical query');
  t.equal(sent?.headers['accept'], 'application/json');
  t.equal(sent?.headers['host'], new URL(stack.simulator.url).host, 'Host names Deskie, not the proxy');
  for (const header of ['cookie', 'x-forwarded-for', 'x-forwarded-host', 'x-custom']) {
    t.notOk(sent?.headers[header], `${header} is not forwarded`);
  }
});

t.test('Deskie errors pass through with their status and body and are not stored', async (t) => {
  const stack = await startStack(t);
  stack.simulator.set({ fault: 'error500' });
  const failed = await stack.get(`${LEADERBOARD}?period=today`);
  t.equal(failed.status, 500);
  t.match(failed.headers['cache-status'], /fwd=miss; fwd-status=500/);
  t.equal(failed.headers['cache-control'], 'no-store');

  stack.simulator.set({ fault: 'rateLimited' });
  const limited = await stack.get(`${LEADERBOARD}?period=today`);
  t.equal(limited.status, 429);
  t.equal(limited.headers['retry-after'], '30', "Deskie's retry_after becomes Retry-After");

  stack.simulator.set({ fault: 'none' });
  stack.clock.advance(30_000); // the 429 closed the way to Deskie for its retry_after
  const recovered = await stack.get(`${LEADERBOARD}?period=today`);
  t.equal(recovered.status, 200);
  t.match(recovered.headers['cache-status'], /fwd=miss; stored/, 'nothing had been stored');
  t.equal(stack.simulator.calls, 3);
});

t.test('a 200 whose body is not JSON is a 502 and is not stored', async (t) => {
  const stack = await startStack(t);
  stack.simulator.set({ fault: 'malformed' });
  const answer = await stack.get(`${LEADERBOARD}?period=today`);
  t.equal(answer.status, 502);
  t.match(errorOf(answer.text), /not JSON/);
  stack.simulator.set({ fault: 'none' });
  t.equal((await stack.get(`${LEADERBOARD}?period=today`)).status, 200);
  t.equal(stack.simulator.calls, 2);
});

t.test('a Deskie that does not answer in time is a 504', async (t) => {
  const stack = await startStack(t, { env: { UPSTREAM_TIMEOUT_MS: '200' } });
  stack.simulator.set({ fault: 'hang' });
  const answer = await stack.get(`${LEADERBOARD}?period=today`);
  t.equal(answer.status, 504);
  t.match(errorOf(answer.text), /did not answer in time/);
});

t.test('an unreachable Deskie is a 502 and the server keeps serving', async (t) => {
  const stack = await startStack(t);
  await stack.simulator.close();
  const answer = await stack.get(`${LEADERBOARD}?period=today`);
  t.equal(answer.status, 502);
  t.match(errorOf(answer.text), /could not be reached/);
  t.equal((await stack.get(`${LEADERBOARD}?period=bogus`)).status, 400, 'still answering');
});

t.test('a body larger than the configured bound is a 502', async (t) => {
  const stack = await startStack(t, { env: { UPSTREAM_MAX_BODY_BYTES: '1024' } });
  const answer = await stack.get(`${LEADERBOARD}?period=this_month`);
  t.equal(answer.status, 502);
  t.match(errorOf(answer.text), /larger than 1024 bytes/);
});

t.test('the health route answers without touching Deskie', async (t) => {
  const stack = await startStack(t);
  const answer = await stack.get('/healthz', { authorization: null });
  t.equal(answer.status, 200);
  t.match(JSON.parse(answer.text), { status: 'ok', entries: 0 });
  t.equal(stack.simulator.calls, 0);
});

t.test('calls that cannot get a connection in time are not sent: they wait their turn, then get a 503', async (t) => {
  const timeoutMs = 300;
  const stack = await startStack(t, {
    env: { UPSTREAM_TIMEOUT_MS: String(timeoutMs), UPSTREAM_CONNECTIONS: '1', UPSTREAM_CONCURRENCY: '1', UPSTREAM_QUEUE_MS: String(timeoutMs / 2) },
  });
  stack.simulator.set({ fault: 'hang' });
  const answers = await Promise.all(
    ['today', 'yesterday', 'this_week', 'this_month', 'last_month', 'this_year'].map((period) => stack.get(`${LEADERBOARD}?period=${period}`)),
  );
  t.same(answers.map((a) => a.status).sort(), [503, 503, 503, 503, 503, 504], 'one call timed out; the rest never went out');
  t.equal(stack.simulator.calls, 1, 'only the call that had a connection reached Deskie');
  for (const answer of answers.filter((a) => a.status === 503)) {
    t.match(answer.headers['retry-after'], /^\d+$/, '503 says when to retry');
    t.equal(answer.headers['cache-status'], 'deskie-stats-proxy; detail=budget-exhausted');
  }
  t.match(answers.find((a) => a.status === 504)?.headers['cache-status'], 'deskie-stats-proxy; fwd=miss; detail=timeout');
});

t.test('a redirect from Deskie is a 502 that says where it pointed, not a hop for the client', async (t) => {
  const stack = await startStack(t);
  stack.simulator.set({ fault: 'redirect' });
  const answer = await stack.get(`${LEADERBOARD}?period=today`);
  t.equal(answer.status, 502);
  t.match(errorOf(answer.text), /redirecting to https:\/\/elsewhere\.example\/api\/; set DESKIE_URL/);
  t.notOk(answer.headers['location']);
});

t.test('requests the HTTP parser refuses get the JSON error shape too', async (t) => {
  const { connect } = await import('node:net');
  const stack = await startStack(t);
  const { port } = new URL(stack.proxyUrl);
  const send = (bytes: string) =>
    new Promise<string>((resolve, reject) => {
      const socket = connect(Number(port), '127.0.0.1', () => socket.end(bytes));
      let text = '';
      socket.on('data', (chunk: Buffer) => (text += chunk.toString()));
      socket.on('close', () => resolve(text));
      socket.on('error', reject);
    });
  const oversized = await send(`GET ${LEADERBOARD}?period=today HTTP/1.1\r\nHost: x\r\nX-Big: ${'a'.repeat(20_000)}\r\n\r\n`);
  t.match(oversized, /^HTTP\/1\.1 431 /);
  t.match(oversized, /\r\n\r\n\{"status":"error","error":"the request headers are too large"\}$/);
  const garbage = await send('NOT HTTP AT ALL\r\n\r\n');
  t.match(garbage, /^HTTP\/1\.1 400 /);
  t.match(garbage, /\{"status":"error","error":"the request could not be read as HTTP"\}$/);
  t.equal(stack.simulator.calls, 0);
});
