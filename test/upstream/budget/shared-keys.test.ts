import t, { type Test } from 'tap';
import { Redis } from 'ioredis';
import { SharedRedis } from '../../../src/redis/connection.js';
import { SharedKeys } from '../../../src/upstream/budget/shared-keys.js';
import { eventually } from '../../helpers/eventually.js';
import { capturedLog } from '../../helpers/log.js';
import { redisSkip, startRedis } from '../../helpers/redis.js';

/**
 * The shared budget's scripts, replica by replica on one real Redis: what a
 * take sees while a lost log is written back, when an allkeys-lru Redis
 * evicts the budget's keys one at a time.
 */
const PREFIX = 'keys-test:';
const LOG_KEY = `${PREFIX}v1:budget:log`;
const RECOVERY_KEY = `${PREFIX}v1:budget:recovery`;
const LIMIT = 10;
const NOW = Date.parse('2026-11-28T12:00:00Z');

async function threeReplicas(t: Test, recoveryMs: number) {
  const redis = await startRedis(t);
  const { logger } = capturedLog('info');
  const connections = [0, 1, 2].map(() => new SharedRedis({ url: redis.url, prefix: PREFIX, timeoutMs: 500, log: logger }));
  t.teardown(() => Promise.all(connections.map((connection) => connection.close())));
  const admin = new Redis(redis.url);
  t.teardown(() => admin.disconnect());
  if (!(await eventually(() => connections.every((connection) => connection.state === 'up'), 5_000))) throw new Error('Redis never answered');
  const keys = connections.map((connection) => new SharedKeys(connection, recoveryMs));
  const beat = (replica: SharedKeys, sent: ReadonlyArray<string | number>, writesBack: boolean) =>
    replica.heartbeat({ wallNow: Date.now(), liveMs: 60_000, knownReplicas: 3, sent, writesBack });
  // The first beats find no log: the (empty) write-back every replica then makes ends that recovery.
  for (const replica of keys) await beat(replica, [], false);
  for (const replica of keys) await beat(replica, [], true);
  /** Each replica's calls of the minute, as its write-back sends them: 4, 3 and 3. */
  const calls = [4, 3, 3].map((count, replica) => Array.from({ length: count }, (_, call) => [NOW, `r${replica}c${call}`]).flat());
  for (const [replica, sent] of calls.entries()) await beat(keys[replica] as SharedKeys, sent, false);
  return { admin, keys, calls, beat };
}

t.test('a lost log while its record of write-backs is evicted too', redisSkip(), async (t) => {
  t.test('the count starts again: a log half written back never reads as whole', async (t) => {
    const { admin, keys, calls, beat } = await threeReplicas(t, 10_000);
    const [a, b, c] = keys as [SharedKeys, SharedKeys, SharedKeys];
    t.equal((await a.take(NOW, LIMIT, ['x1'], 3)).notBefore, NOW + 60_000, 'the ten calls spend the minute');

    await admin.del(LOG_KEY);
    t.equal((await a.take(NOW, LIMIT, ['x2'], 3)).recovery, 'write-back', 'the lost log is found and a write-back asked for');
    await beat(a, calls[0] ?? [], true);
    await admin.del(RECOVERY_KEY);
    const halfway = await a.take(NOW, LIMIT, ['x3'], 3);
    t.not(halfway.recovery, 'none', 'with one replica of three written back, no call is taken');

    for (const [replica, sent] of calls.entries()) await beat(keys[replica] as SharedKeys, sent, true);
    const whole = await c.take(NOW, LIMIT, ['x4'], 3);
    t.equal(whole.recovery, 'none', 'once all three have written back the recovery is over');
    t.equal(whole.notBefore, NOW + 60_000, 'and the ten calls written back spend the minute');
    t.equal((await b.take(NOW + 60_000, LIMIT, ['x5'], 3)).notBefore, 0, 'the next minute takes a call');
    t.same(await admin.zrangebyscore(LOG_KEY, '+inf', '+inf'), ['mark'], 'nothing of the recovery is left in the log');
  });

  t.test('a replica that never writes back holds calls no longer than the recovery allows', async (t) => {
    const { admin, keys, beat } = await threeReplicas(t, 300);
    const [a] = keys as [SharedKeys];
    await admin.del(LOG_KEY);
    t.equal((await a.take(NOW, LIMIT, ['x1'], 3)).recovery, 'write-back', 'the lost log is found');
    await beat(a, [], true);
    await admin.del(RECOVERY_KEY);
    t.not((await a.take(NOW, LIMIT, ['x2'], 3)).recovery, 'none', 'the evicted record is counted again, for the time left');
    const over = await eventually(async () => (await a.take(NOW, LIMIT, ['x3'], 3)).recovery === 'none', 3_000);
    t.ok(over, 'the recovery ends when its time is up, the others never heard from');
  });
});
