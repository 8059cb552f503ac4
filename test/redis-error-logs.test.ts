import t, { type Test } from 'tap';
import { Redis } from 'ioredis';
import { eventually } from './helpers/eventually.js';
import { capturedLog } from './helpers/log.js';
import { redisSkip, startRedis, type TestRedis } from './helpers/redis.js';
import { startStack } from './helpers/stack.js';

/**
 * ioredis attaches each failed command and its arguments to the error it
 * gives (`command: { name, args }`): keys that hold a query's filters, and
 * AUTH's password. The proxy logs those errors, at every level from trace.
 */
const EMAIL = 'jane.doe@example.com';
const SATISFACTION = `/api/stats_satisfaction.json?period=today&user_email=${encodeURIComponent(EMAIL)}`;
/** The e-mail however a line might spell it: as given, percent-encoded, or its local part alone. */
const EMAIL_ANYHOW = /jane\.doe/i;
const RIGHT_PASSWORD = 'right-redis-password-9a2e';
const WRONG_PASSWORD = 'wrong-redis-password-4f1c';

/** A connection to the test's Redis from outside the proxy, to reconfigure it. */
async function admin(t: Test, redis: TestRedis): Promise<Redis> {
  const connection = new Redis(redis.url);
  t.teardown(() => connection.disconnect());
  return connection;
}

t.test('a full noeviction Redis: the failed command is logged by its name, without the key that holds the filter', redisSkip(), async (t) => {
  const redis = await startRedis(t);
  const { logger, lines } = capturedLog('trace');
  const stack = await startStack(t, { env: { REDIS_URL: redis.url }, logger });
  t.ok(
    await eventually(async () => (JSON.parse((await stack.get('/readyz', { authorization: null })).text) as { store: { shared: { redis: string } } }).store.shared.redis === 'up'),
    'connected to Redis',
  );
  // Redis uses more than a byte whatever it holds: every write is refused with OOM.
  const config = await admin(t, redis);
  await config.config('SET', 'maxmemory-policy', 'noeviction');
  await config.config('SET', 'maxmemory', '1');

  t.equal((await stack.get(SATISFACTION)).status, 200, 'answered from Deskie all the same');
  const failed = (): Record<string, unknown> | undefined => lines.find((line) => String(line['msg']).startsWith('a Redis command failed'));
  t.ok(await eventually(() => failed() !== undefined), 'the refused write is logged');
  t.match(failed(), { level: 40, err: { message: /OOM/, command: { name: String } } }, 'with the command that failed, by its name');
  t.notOk(Object.hasOwn((failed()?.['err'] as { command: object }).command, 'args'), 'and not its arguments');
  t.notMatch(JSON.stringify(lines), EMAIL_ANYHOW, 'no line at any level carries the e-mail of the filter');
});

t.test('a wrong Redis password: no line at any level carries it, nor the right one', redisSkip(), async (t) => {
  const redis = await startRedis(t);
  await (await admin(t, redis)).config('SET', 'requirepass', RIGHT_PASSWORD);
  const { logger, lines } = capturedLog('trace');
  const stack = await startStack(t, { env: { REDIS_URL: `redis://:${WRONG_PASSWORD}@127.0.0.1:${redis.port}` }, logger });
  const refused = (): Record<string, unknown> | undefined => lines.find((line) => (line['err'] as { command?: unknown } | undefined)?.command !== undefined);
  t.ok(await eventually(() => refused() !== undefined), 'the refused AUTH is logged');
  // Either connection (commands, or subscriptions) may be refused first.
  t.match(refused(), { msg: /^Redis (connection|subscription) failed$/, err: { message: /WRONGPASS/, command: { name: 'auth' } } }, 'as a connection failure, naming AUTH');
  t.same((refused()?.['err'] as { command: object }).command, { name: 'auth' }, 'without its arguments');
  t.equal((await stack.get(SATISFACTION)).status, 200, 'the proxy answers without Redis');
  const text = JSON.stringify(lines);
  t.notMatch(text, new RegExp(WRONG_PASSWORD), 'the password given is in no line');
  t.notMatch(text, new RegExp(RIGHT_PASSWORD), 'nor the right one');
  t.notMatch(text, EMAIL_ANYHOW, 'nor the filter');
});

t.test('nested errors lose their commands’ arguments too, and other fields stay', async (t) => {
  const { logger, lines } = capturedLog('trace');
  const command = { name: 'set', args: [`lease:satisfaction?user_email=${EMAIL}`, 'token'] };
  const reply = Object.assign(new Error('OOM command not allowed'), { command });
  const previous = Object.assign(new Error('EXECABORT'), { command: { name: 'exec', args: [] }, previousErrors: [reply] });
  const cluster = Object.assign(new Error('Failed to refresh slots cache.'), { lastNodeError: reply, code: 'CLUSTERDOWN' });
  logger.trace({ err: previous }, 'previous errors');
  logger.trace({ err: cluster }, 'last node error');
  logger.trace({ err: new AggregateError([reply], 'all failed') }, 'aggregated');
  logger.trace({ error: reply }, 'under error');
  t.notMatch(JSON.stringify(lines), EMAIL_ANYHOW, 'no argument of any nested command');
  t.match(lines[0], { err: { command: { name: 'exec' }, previousErrors: [{ message: 'OOM command not allowed', command: { name: 'set' } }] } });
  t.match(lines[1], { err: { code: 'CLUSTERDOWN', lastNodeError: { command: { name: 'set' } } } });
  t.match(lines[2], { err: { aggregateErrors: [{ command: { name: 'set' } }] } });
  t.match(lines[3], { error: { message: 'OOM command not allowed', command: { name: 'set' } } });
});
