import t, { type Test } from 'tap';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { request } from 'undici';
import { startServer } from '../src/server.js';
import { startSimulator } from '../src/simulator/index.js';
import { capturedLog, everyCapturedLine } from './helpers/log.js';
import { DEMO, type Stack, startStack, until } from './helpers/stack.js';

const TODAY = '/api/stats_leaderboard.json?period=today';
const MONTH = '/api/stats_leaderboard.json?period=this_month';

/** The proxy's own Deskie credential in these tests. */
const SERVICE_EMAIL = 'service@example.com';
const SERVICE_KEY = 'service-api-key-7f3a9c';
const SERVICE_BASIC = 'Basic ' + Buffer.from(`${SERVICE_EMAIL}:${SERVICE_KEY}`).toString('base64');
const WALL = 'wall-token-0123456789abcdef';
const LAPTOP = 'laptop-token-fedcba9876543210';
const KIOSK = 'kiosk-token-00112233445566778899';
const ADMIN_TOKEN = 'admin-token-0123456789';
/** Every secret these tests use: none may appear in any log line. */
const SECRETS = [SERVICE_KEY, SERVICE_BASIC.slice('Basic '.length), WALL, LAPTOP, KIOSK, ADMIN_TOKEN, DEMO.slice('Basic '.length)];

/** Lines of the servers this file starts itself (the stacks' lines are in everyCapturedLine): the last test greps them all. */
const serverLines: string[] = [];

const bearer = (token: string): string => `Bearer ${token}`;

/** A log destination for startServer: its lines, as written, kept for the last test's grep too. */
function serverLog(t: Test): { lines: string[]; sink: Writable } {
  const lines: string[] = [];
  const sink = new Writable({
    write(chunk: Buffer, _encoding, done) {
      lines.push(...chunk.toString().split('\n').filter(Boolean));
      done();
    },
  });
  t.teardown(() => {
    serverLines.push(...lines);
  });
  return { lines, sink };
}
const SERVICE_ENV = { DESKIE_EMAIL: SERVICE_EMAIL, DESKIE_API_KEY: SERVICE_KEY, ADMIN_TOKEN };
const USERS = { [SERVICE_EMAIL]: SERVICE_KEY, 'demo@example.com': 'demo' };

async function serviceStack(t: Test, env: Record<string, string> = { PROXY_TOKENS: `wall:${WALL},laptop:${LAPTOP}` }) {
  const { logger, lines } = capturedLog('trace');
  const stack = await startStack(t, { logger, env: { ...SERVICE_ENV, ...env }, simulator: { users: USERS } });
  return { stack, lines };
}

/** The Authorization of every call that reached the simulator. */
const upstreamAuthorizations = (stack: Stack): unknown[] => stack.simulator.requests.map((call) => call.headers['authorization']);

t.test('a request without a valid client token is 401 and costs no call: none, a wrong one, one character changed, Deskie credentials', async (t) => {
  const { stack } = await serviceStack(t);
  const oneChanged = WALL.slice(0, -1) + (WALL.endsWith('f') ? 'e' : 'f');
  t.equal(oneChanged.length, WALL.length, 'the changed token has the right length');
  const tries: Array<[string, string | null]> = [
    ['no Authorization', null],
    ['a wrong token', bearer('not-a-token-of-this-proxy-000')],
    ['one character changed', bearer(oneChanged)],
    ['a token with a suffix', bearer(`${WALL}x`)],
    ['Deskie credentials that Deskie would accept', SERVICE_BASIC],
    ["a client's own Deskie credentials", DEMO],
    ['the token without the Bearer scheme', WALL],
  ];
  for (const [what, authorization] of tries) {
    const answer = await stack.get(TODAY, { authorization });
    t.equal(answer.status, 401, `${what}: 401`);
    t.equal(answer.headers['www-authenticate'], 'Bearer realm="deskie-stats-proxy"', `${what}: the challenge names the Bearer scheme`);
    t.match(JSON.parse(answer.text), { error: /client token is required: Authorization: Bearer <token>/ }, `${what}: says what is accepted`);
    t.notMatch(answer.text, /staff/, `${what}: no data`);
  }
  t.equal(stack.simulator.calls, 0, 'none reached Deskie');
});

t.test('two dashboards with their own tokens share one upstream call per query, made with the proxy credential', async (t) => {
  const { stack, lines } = await serviceStack(t);
  const wall = await stack.get(TODAY, { authorization: bearer(WALL) });
  const laptop = await stack.get(TODAY, { authorization: bearer(LAPTOP) });
  const wallMonth = await stack.get(MONTH, { authorization: bearer(WALL) });
  const laptopMonth = await stack.get(MONTH, { authorization: bearer(LAPTOP) });
  t.equal(wall.status, 200);
  t.match(wall.headers['cache-status'], /fwd=miss; stored/);
  t.equal(laptop.headers['cache-status'], 'deskie-stats-proxy; hit; ttl=300', "the second dashboard gets the first one's entry");
  t.equal(laptop.text, wall.text, 'the same answer');
  t.equal(laptop.headers['etag'], wall.headers['etag'], 'and the same ETag: one partition');
  t.match(laptopMonth.headers['cache-status'], /; hit;/);
  t.equal(wallMonth.text, laptopMonth.text);
  t.equal(stack.simulator.calls, 2, 'one call per query');
  t.same(upstreamAuthorizations(stack), [SERVICE_BASIC, SERVICE_BASIC], "Deskie saw the proxy's credential only");

  const requests = lines.filter((line) => line['msg'] === 'request');
  t.same(
    requests.map((line) => [line['client'], line['outcome']]),
    [
      ['wall', 'miss'],
      ['laptop', 'hit'],
      ['wall', 'miss'],
      ['laptop', 'hit'],
    ],
    "each access line names the token's holder",
  );
  const metrics = await stack.get('/metrics', { authorization: null });
  t.match(metrics.text, /deskie_proxy_client_requests_total\{client="wall"\} 2/);
  t.match(metrics.text, /deskie_proxy_client_requests_total\{client="laptop"\} 2/);
  t.match(metrics.text, /deskie_proxy_client_tokens 2/);
});

t.test("a client's Deskie credentials are never forwarded in service mode, whatever else it sends", async (t) => {
  const { stack } = await serviceStack(t);
  await stack.get(TODAY, { authorization: bearer(WALL), headers: { 'x-authorization': DEMO } });
  t.same(upstreamAuthorizations(stack), [SERVICE_BASIC]);
});

t.test('PROXY_AUTH=none: no token needed, one partition, the client Authorization ignored, and a warning', async (t) => {
  const { stack, lines } = await serviceStack(t, { PROXY_AUTH: 'none' });
  const anonymous = await stack.get(TODAY, { authorization: null });
  const withBasic = await stack.get(TODAY, { authorization: DEMO });
  t.equal(anonymous.status, 200);
  t.match(withBasic.headers['cache-status'], /; hit;/, "a client's Basic header does not pick another partition");
  t.same(upstreamAuthorizations(stack), [SERVICE_BASIC], "Deskie saw the proxy's credential only");
  t.ok(
    lines.some((line) => line['level'] === 40 && /PROXY_AUTH=none/.test(String(line['msg']))),
    'a warning says anyone who reaches the server gets the statistics',
  );
});

t.test('prewarm in service mode uses the proxy credential and refuses one in its body', async (t) => {
  const { stack } = await serviceStack(t);
  const post = (body: unknown) =>
    request(`${stack.proxyUrl}/admin/prewarm`, {
      method: 'POST',
      headers: { authorization: bearer(ADMIN_TOKEN), 'content-type': 'application/json' },
      body: JSON.stringify(body),
    });
  const refused = await post({ authorization: DEMO, queries: [TODAY] });
  t.equal(refused.statusCode, 400);
  t.match(await refused.body.json(), { error: /leave authorization out/ });
  t.equal(stack.simulator.calls, 0, 'nothing fetched');

  const warmed = await post({ queries: [TODAY] });
  t.equal(warmed.statusCode, 200);
  t.match(await warmed.body.json(), { results: [{ outcome: 'miss', status: 200 }] });
  const hit = await stack.get(TODAY, { authorization: bearer(LAPTOP) });
  t.match(hit.headers['cache-status'], /; hit;/, "a dashboard finds the prewarmed entry: it is the proxy credential's");
  t.same(upstreamAuthorizations(stack), [SERVICE_BASIC]);
});

t.test('the token file is read again on SIGHUP: a new token works, a removed one stops, a broken file changes nothing', async (t) => {
  const simulator = await startSimulator({ users: USERS });
  t.teardown(() => simulator.close());
  const file = join(mkdtempSync(join(tmpdir(), 'proxy-tokens-')), 'tokens');
  writeFileSync(file, `# dashboards\nwall ${WALL}\n\nlaptop ${LAPTOP}\n`);
  const { lines, sink } = serverLog(t);
  const { app, stop } = await startServer(
    { PORT: '0', HOST: '127.0.0.1', DESKIE_URL: simulator.url, ...SERVICE_ENV, PROXY_TOKENS_FILE: file, LOG_LEVEL: 'trace', SHUTDOWN_DRAIN_SECONDS: '0' },
    sink,
  );
  t.teardown(() => stop({ drain: false }));
  const { port } = app.server.address() as { port: number };
  const status = async (token: string): Promise<number> => {
    const response = await request(`http://127.0.0.1:${port}${TODAY}`, { headers: { authorization: bearer(token) } });
    await response.body.dump();
    return response.statusCode;
  };
  const reloads = (pattern: RegExp) => lines.filter((line) => pattern.test(line)).length;

  t.equal(await status(WALL), 200, 'a token from the file works');
  t.equal(await status(KIOSK), 401, 'one not in it does not');

  writeFileSync(file, `wall ${WALL}\nkiosk ${KIOSK}\n`);
  process.kill(process.pid, 'SIGHUP');
  await until(() => reloads(/client tokens reloaded/) === 1);
  t.equal(await status(KIOSK), 200, 'a token added to the file works after SIGHUP, without a restart');
  t.equal(await status(LAPTOP), 401, 'a token taken out of it stops working');
  t.equal(await status(WALL), 200, 'one kept keeps working');
  t.match(lines.find((line) => /client tokens reloaded/.test(line)), /"clients":\["wall","kiosk"\]/, 'the reload names the clients');

  writeFileSync(file, `wall ${WALL}\nkiosk short\n`);
  process.kill(process.pid, 'SIGHUP');
  await until(() => reloads(/client tokens not reloaded/) === 1);
  t.equal(await status(KIOSK), 200, 'a file with a mistake changes nothing');
  t.match(lines.find((line) => /client tokens not reloaded/.test(line)), /line 2: the token has 5 characters/, 'and the log says where the mistake is');

  writeFileSync(file, '# every token withdrawn\n');
  process.kill(process.pid, 'SIGHUP');
  await until(() => reloads(/the file holds none, so every request is refused/) === 1);
  t.equal(await status(WALL), 401, 'a file emptied of tokens lets no client in');
  t.equal(await status(KIOSK), 401);
});

t.test('SIGHUP without a token file is logged and does not end the server', async (t) => {
  const simulator = await startSimulator({ users: USERS });
  t.teardown(() => simulator.close());
  const { lines, sink } = serverLog(t);
  const { app, stop } = await startServer({ PORT: '0', HOST: '127.0.0.1', DESKIE_URL: simulator.url, SHUTDOWN_DRAIN_SECONDS: '0' }, sink);
  t.teardown(() => stop({ drain: false }));
  process.kill(process.pid, 'SIGHUP');
  await until(() => lines.some((line) => /nothing to reload/.test(line)));
  const { port } = app.server.address() as { port: number };
  const response = await request(`http://127.0.0.1:${port}/healthz`);
  await response.body.dump();
  t.equal(response.statusCode, 200, 'the server still answers');
});

t.test('the API description names the scheme the statistics routes take in each mode', async (t) => {
  const securityOf = async (stack: Stack): Promise<unknown> => {
    const document = JSON.parse((await stack.get('/docs/json', { authorization: null })).text) as {
      paths: Record<string, { get: { security: unknown } }>;
      components: { securitySchemes: Record<string, unknown> };
    };
    t.match(document.components.securitySchemes['clientToken'], { type: 'http', scheme: 'bearer' });
    return document.paths['/api/stats_leaderboard.json']?.get.security;
  };
  t.same(await securityOf((await serviceStack(t)).stack), [{ clientToken: [] }], 'service mode: a client token');
  t.same(await securityOf((await serviceStack(t, { PROXY_AUTH: 'none' })).stack), [{}], 'PROXY_AUTH=none: nothing');
});

t.test('no secret these tests used appears in any log line', async (t) => {
  const allLines = [...everyCapturedLine, ...serverLines];
  t.ok(allLines.length > 40, `lines were captured (${allLines.length})`);
  for (const secret of SECRETS) {
    t.notOk(
      allLines.some((line) => line.includes(secret)),
      `${secret.slice(0, 4)}… appears in no line`,
    );
  }
});
