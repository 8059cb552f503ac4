import t from 'tap';
import { Writable } from 'node:stream';
import { request } from 'undici';
import { ConfigError } from '../src/config/config.js';
import { startServer } from '../src/server.js';

/** Collects pino's JSON lines. */
function logSink() {
  const lines: string[] = [];
  const stream = new Writable({
    write(chunk: Buffer, _encoding, done) {
      lines.push(...chunk.toString().split('\n').filter(Boolean));
      done();
    },
  });
  return { stream, text: () => lines.join('\n') };
}

t.test('production without DESKIE_URL refuses to start and says what to set', async (t) => {
  await t.rejects(startServer({ NODE_ENV: 'production' }), ConfigError);
  await t.rejects(startServer({ NODE_ENV: 'production' }), /DESKIE_URL is required when NODE_ENV=production/);
});

t.test('without DESKIE_URL it serves simulated data and warns that it does', async (t) => {
  const log = logSink();
  const { app } = await startServer({ PORT: '0', HOST: '127.0.0.1' }, log.stream);
  t.teardown(() => app.close());
  t.match(log.text(), /SIMULATED data/, 'the log warns that the data is simulated');
  t.match(log.text(), /deskie-stats-proxy ready/);
  const { port } = app.server.address() as { port: number };
  const response = await request(`http://127.0.0.1:${port}/api/stats_leaderboard.json?period=today`, {
    headers: { authorization: 'Basic ' + Buffer.from('demo@example.com:demo').toString('base64') },
  });
  t.equal(response.statusCode, 200);
  t.match(await response.body.json(), { 0: { staff: { staff_id: Number } } });
});

t.test('a production start without CACHE_KEY_SECRET warns that restarts change every ETag', async (t) => {
  const log = logSink();
  const { app } = await startServer({ PORT: '0', HOST: '127.0.0.1', NODE_ENV: 'production', DESKIE_URL: 'http://127.0.0.1:9' }, log.stream);
  t.teardown(() => app.close());
  t.match(log.text(), /CACHE_KEY_SECRET is not set: a random one is used, so every restart changes every ETag/);
  const quiet = logSink();
  const { app: withSecret } = await startServer(
    { PORT: '0', HOST: '127.0.0.1', NODE_ENV: 'production', DESKIE_URL: 'http://127.0.0.1:9', CACHE_KEY_SECRET: 'a-fixed-secret-16+' },
    quiet.stream,
  );
  t.teardown(() => withSecret.close());
  t.notMatch(quiet.text(), /CACHE_KEY_SECRET/);
});
