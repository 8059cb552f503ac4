import t from 'tap';
import { request } from 'undici';
import { loadConfig } from '../src/config/config.js';
import { startSimulator } from '../src/simulator/index.js';
import { eventually } from './helpers/eventually.js';
import { DEMO, startStack } from './helpers/stack.js';

const TODAY = '/api/stats_leaderboard.json?period=today';
const YESTERDAY = '/api/stats_leaderboard.json?period=yesterday';

t.test('SHUTDOWN_TIMEOUT_MS bounds the time from SIGTERM to exit, the drain included, and the drain must end before it', async (t) => {
  t.equal(loadConfig({}).shutdownTimeoutMs, 8_000, 'inside the 10 s docker stop gives by default');
  t.throws(() => loadConfig({ SHUTDOWN_DRAIN_SECONDS: '8' }), /SHUTDOWN_DRAIN_SECONDS \(8\) must end before SHUTDOWN_TIMEOUT_MS \(8000\)/);
  t.equal(loadConfig({ SHUTDOWN_DRAIN_SECONDS: '30', SHUTDOWN_TIMEOUT_MS: '60000' }).shutdownTimeoutMs, 60_000, 'lengthened together');
  t.throws(() => loadConfig({ SHUTDOWN_TIMEOUT_MS: '500' }), /SHUTDOWN_TIMEOUT_MS/);
});

t.test('a Deskie slower than the bound: the requests waiting on it are answered 503 with Retry-After before the bound, and the server stops within it', async (t) => {
  const simulator = await startSimulator();
  t.teardown(() => simulator.close());
  const { startServer } = await import('../src/server.js');
  const env = { PORT: '0', HOST: '127.0.0.1', DESKIE_URL: simulator.url, SHUTDOWN_DRAIN_SECONDS: '0.2', SHUTDOWN_TIMEOUT_MS: '2000', UPSTREAM_CONCURRENCY: '1', LOG_LEVEL: 'warn' };
  const running = await startServer(env, { write: () => {} });
  const { port } = running.app.server.address() as { port: number };
  const get = async (path: string) => {
    const response = await request(`http://127.0.0.1:${port}${path}`, { headers: { authorization: DEMO } });
    return { status: response.statusCode, headers: response.headers, body: (await response.body.json()) as { error: string }, atMs: performance.now() };
  };
  // Deskie keeps its answers: one call under way, the other waiting for its turn (one call at a time).
  simulator.hold();
  const inFlight = get(TODAY);
  const waiting = get(YESTERDAY);
  t.ok(await eventually(() => simulator.held === 1), 'one call reached Deskie');
  const startedMs = performance.now();
  await running.stop();
  const stoppedMs = performance.now() - startedMs;
  t.ok(stoppedMs < 2_000, `stopped within SHUTDOWN_TIMEOUT_MS (${Math.round(stoppedMs)} ms)`);
  for (const [what, pending] of [['the call under way', inFlight], ['the call waiting its turn', waiting]] as const) {
    const answer = await pending;
    t.equal(answer.status, 503, `${what}: a 503, not a cut connection`);
    t.equal(answer.headers['retry-after'], '1', `${what}: with Retry-After`);
    t.match(answer.body.error, /shutting down and cannot wait for Deskie/, `${what}: saying why`);
    t.match(answer.headers['cache-status'], /detail=shutting-down/);
    t.ok(answer.atMs - startedMs >= 900, `${what}: answered once the bound was a second away, not before (${Math.round(answer.atMs - startedMs)} ms)`);
  }
  simulator.release();
});

t.test('a request whose expired entry is still kept is answered with it when its wait for Deskie is cut', async (t) => {
  const stack = await startStack(t, { env: { STALE_WHILE_REVALIDATE_SECONDS: '0' } });
  t.equal((await stack.get(TODAY)).status, 200);
  // Past the 5-minute lifetime, within stale-if-error's day.
  stack.clock.advance(10 * 60_000);
  stack.simulator.hold();
  const pending = stack.get(TODAY);
  t.ok(await eventually(() => stack.simulator.held === 1), 'the refetch reached Deskie');
  stack.app.cutUpstream();
  const answer = await pending;
  t.equal(answer.status, 200, 'the kept answer');
  t.match(answer.headers['cache-status'], /fwd=stale; detail=shutting-down/, 'marked stale, and why');
  stack.simulator.release();
});
