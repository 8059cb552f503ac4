import t from 'tap';
import { buildApp } from '../src/app.js';
import type { AnswerStore } from '../src/cache/store.js';
import { loadConfig } from '../src/config/config.js';
import { DEMO } from './helpers/stack.js';
import { capturedLog } from './helpers/log.js';

const config = { ...loadConfig({ CACHE_KEY_SECRET: 'test-secret-of-16-bytes' }), deskieUrl: 'http://127.0.0.1:9' };

t.test('an unexpected failure is a 500 JSON that leaks no stack, and the server keeps answering', async (t) => {
  const broken: AnswerStore = {
    get: () => undefined,
    peek: async () => undefined,
    fetch: async () => {
      throw new Error('disk on fire at /srv/secret/path');
    },
    resize: () => {},
    list: async () => [],
    delete: async () => false,
    purge: async () => 0,
    dropEnding: async () => 0,
    entries: 0,
    bytes: 0,
    evictions: 0,
    usable: true,
    close: async () => {},
  };
  const app = buildApp(config, { store: broken });
  t.teardown(() => app.close());
  const answer = await app.inject({ url: '/api/stats_leaderboard.json?period=today', headers: { authorization: DEMO } });
  t.equal(answer.statusCode, 500);
  t.same(answer.json(), { status: 'error', error: 'internal error' });
  t.equal((await app.inject({ url: '/healthz' })).statusCode, 200, 'still answering');
});

for (const level of ['info', 'debug'] as const) {
  t.test(`at ${level}, a refused request leaves one access line with its status and request id`, async (t) => {
    const { logger, lines } = capturedLog(level);
    const app = buildApp(config, { logger });
    t.teardown(() => app.close());
    const answer = await app.inject({ url: '/api/stats_leaderboard.json?period=nope', headers: { authorization: DEMO } });
    const logged = lines.filter((line) => line['msg'] === 'request');
    t.equal(logged.length, 1);
    t.match(logged[0], { method: 'GET', route: 'stats_leaderboard', outcome: 'error', status: 400, reqId: answer.headers['x-request-id'] });
  });
}

t.test('at warn, requests are not logged', async (t) => {
  const { logger, lines } = capturedLog('warn');
  const app = buildApp(config, { logger });
  t.teardown(() => app.close());
  await app.inject({ url: '/api/stats_leaderboard.json?period=nope', headers: { authorization: DEMO } });
  t.same(lines, [], 'nothing below warn');
});

t.test('a cache hit goes through Fastify like any request: inject() answers it, and a hook added to the app applies to it', async (t) => {
  const { startSimulator } = await import('../src/simulator/index.js');
  const simulator = await startSimulator({ users: { 'demo@example.com': 'demo' } });
  t.teardown(() => simulator.close());
  const app = buildApp({ ...config, deskieUrl: simulator.url });
  t.teardown(() => app.close());
  const seen: string[] = [];
  app.addHook('onSend', async (request, reply) => {
    seen.push(request.url);
    reply.header('x-added-by-hook', 'yes');
  });
  const ask = () => app.inject({ url: '/api/stats_leaderboard.json?period=today', headers: { authorization: DEMO } });
  const miss = await ask();
  const hit = await ask();
  t.match(miss.headers['cache-status'], /fwd=miss/);
  t.match(hit.headers['cache-status'], /; hit; ttl=/, 'the second is a hit');
  t.equal(hit.body, miss.body, 'with the same bytes');
  t.equal(hit.headers['x-added-by-hook'], 'yes', "the app's hook ran for the hit");
  t.equal(seen.length, 2, 'for both requests');
  t.equal(simulator.calls, 1, 'one call reached Deskie');
});
