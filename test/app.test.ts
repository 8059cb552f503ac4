import t from 'tap';
import { buildApp } from '../src/app.js';
import type { AnswerStore } from '../src/cache/store.js';
import { loadConfig } from '../src/config.js';
import { DEMO } from './helpers/stack.js';
import { capturedLog } from './helpers/log.js';

const config = { ...loadConfig({ CACHE_KEY_SECRET: 'test-secret-of-16-bytes' }), deskieUrl: 'http://127.0.0.1:9' };

t.test('an unexpected failure is a 500 JSON that leaks no stack, and the server keeps answering', async (t) => {
  const broken: AnswerStore = {
    get: () => undefined,
    fetch: async () => {
      throw new Error('disk on fire at /srv/secret/path');
    },
    resize: () => {},
    list: () => [],
    delete: () => false,
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

t.test('debug logging writes one line per answered request with the cache outcome', async (t) => {
  const { logger, lines } = capturedLog('debug');
  const app = buildApp(config, { logger });
  t.teardown(() => app.close());
  await app.inject({ url: '/api/stats_leaderboard.json?period=nope', headers: { authorization: DEMO } });
  const answered = lines.find((line) => line['msg'] === 'answered');
  t.match(answered, { method: 'GET', url: '/api/stats_leaderboard.json?period=nope', status: 400, reqId: String });
});
