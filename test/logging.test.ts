import t from 'tap';
import { Writable } from 'node:stream';
import { LRUCache } from 'lru-cache';
import { pino } from 'pino';
import { AccessLog } from '../src/access-log.js';
import { ENDPOINTS } from '../src/deskie/endpoints.js';
import { PeriodWindows } from '../src/deskie/periods.js';
import { parseStatsQuery } from '../src/deskie/query.js';
import { PROXY_PARAMETERS } from '../src/formats/representations.js';
import { BatchedDestination, LOG_FLUSH_MS, redactQuery, stdoutDestination } from '../src/logging.js';
import { requestIds } from '../src/request-id.js';
import { capturedLog } from './helpers/log.js';

t.test('the values of user_email and user_phone are redacted from a logged query, however written', async (t) => {
  t.equal(redactQuery('period=today&user_email=a%40b.c&limit=5'), 'period=today&user_email=[redacted]&limit=5');
  t.equal(redactQuery('/api/x.json?user_phone=%2B1555&user_email[]=a&user_email%5B%5D=b'), '/api/x.json?user_phone=[redacted]&user_email[]=[redacted]&user_email%5B%5D=[redacted]');
  t.equal(redactQuery('USER_EMAIL=a'), 'USER_EMAIL=[redacted]', 'names in any case');
  t.equal(redactQuery('period=today'), 'period=today', 'nothing else changes');
  t.equal(redactQuery(42), 42, 'a value that is not a string is left alone');
});

t.test('credentials are redacted wherever a line carries them, errors included', async (t) => {
  const { logger, lines } = capturedLog('trace');
  const error = Object.assign(new Error('Parse Error'), { rawPacket: Buffer.from('GET / HTTP/1.1\r\nAuthorization: Basic c2VjcmV0\r\n') });
  logger.trace({ err: error }, 'client error');
  logger.info({ headers: { authorization: 'Basic c2VjcmV0', accept: '*/*' }, query: 'user_email=x@y.z' }, 'a request');
  logger.info({ key: 'leaderboard?period=today&user_email=x%40y.z#p' }, 'refresh ahead failed');
  logger.warn({ err: Object.assign(new Error('wrapped'), { cause: { rawPacket: 'Authorization: Basic c2VjcmV0' } }) }, 'nested');
  const text = JSON.stringify(lines);
  t.notMatch(text, /c2VjcmV0|x@y\.z|x%40y/, 'neither the credential nor the e-mail, in a query, a cache key or a nested error');
  t.match(lines[0], { err: { rawPacket: '[redacted]', message: 'Parse Error' } });
  t.match(lines[1], { headers: { authorization: '[redacted]', accept: '*/*' }, query: 'user_email=[redacted]' });
});

t.test('lines reach the target together, LOG_FLUSH_MS after the first, or at once past 64 kB', async (t) => {
  const writes: string[] = [];
  const scheduled: Array<() => void> = [];
  const batched = new BatchedDestination({ write: (chunk: Buffer) => void writes.push(chunk.toString()) }, (flush) => {
    scheduled.push(flush);
  });
  batched.write('a\n');
  batched.write('b\n');
  t.equal(scheduled.length, 1, `one flush scheduled (${LOG_FLUSH_MS} ms after the first line)`);
  t.same(writes, [], 'nothing written yet');
  scheduled.shift()?.();
  t.same(writes, ['a\nb\n'], 'both lines, one write');
  batched.flush();
  t.same(writes, ['a\nb\n'], 'nothing pending: no empty write');
  batched.write('é'.repeat(20 * 1024));
  batched.write('x'.repeat(10 * 1024));
  t.equal(writes.length, 2, 'a batch without room for the next line is handed over at once');
  t.equal(writes[1], 'é'.repeat(20 * 1024), 'multi-byte text whole');
  batched.write('y'.repeat(200 * 1024));
  scheduled.splice(0).forEach((flush) => flush());
  t.same(writes.slice(2), ['x'.repeat(10 * 1024), 'y'.repeat(200 * 1024)], 'a line longer than a batch gets a buffer of its own size');
});

t.test('stdout is pretty on a terminal outside production, JSON lines otherwise', async (t) => {
  const wasTTY = process.stdout.isTTY;
  t.teardown(() => {
    process.stdout.isTTY = wasTTY;
  });
  process.stdout.isTTY = true;
  t.notOk((await stdoutDestination(false)) instanceof BatchedDestination, 'pino-pretty on a terminal');
  t.ok((await stdoutDestination(true)) instanceof BatchedDestination, 'JSON in production, terminal or not');
  process.stdout.isTTY = false;
  t.ok((await stdoutDestination(false)) instanceof BatchedDestination, 'JSON when stdout is not a terminal');
});

t.test("a hit's access line written in parts into the batch is byte for byte the template's line", async (t) => {
  // A host name outside ASCII: the prefix is copied as UTF-8 bytes.
  const base = { pid: 7, hostname: 'hôte-é' };
  const batchedWrites: string[] = [];
  const batched = new BatchedDestination({ write: (chunk: Buffer) => void batchedWrites.push(chunk.toString('utf8')) }, () => {});
  const plainWrites: string[] = [];
  const plain = new Writable({
    write(chunk: Buffer, _encoding, done) {
      plainWrites.push(chunk.toString('utf8'));
      done();
    },
  });
  const inParts = new AccessLog(pino({ base }, batched));
  const asString = new AccessLog(pino({ base }, plain));
  const query = parseStatsQuery(ENDPOINTS.leaderboard, { period: 'today' }, {
    windows: new PeriodWindows('UTC', 1),
    ranges: new LRUCache({ max: 1 }),
    extraParameters: new Set(),
    proxyParameters: PROXY_PARAMETERS,
    nowMs: Date.parse('2026-11-28T12:00:00Z'),
  });
  for (const client of [undefined, 'wall-tv']) {
    const request = { id: 'dash-42.a', method: 'GET', raw: {}, client } as never;
    inParts.answered(inParts.forQuery(query, 0), request, 'hit', 200, 3018);
    asString.answered(asString.forQuery(query, 0), request, 'hit', 200, 3018);
  }
  // Durations and sizes of every length, on a clock the test sets: the request arrives at 1000 ms.
  const realNow = performance.now;
  t.teardown(() => void (performance.now = realNow));
  const newId = requestIds();
  for (const [afterMs, bytes] of [[0.05, 0], [0.25, 9], [12.5, 10], [1234.5, 2_147_483_647]] as const) {
    performance.now = () => 1000;
    const raw = { headers: {} } as never;
    const request = { id: newId(raw), method: 'GET', raw, client: undefined } as never;
    performance.now = () => 1000 + afterMs;
    inParts.answered(inParts.forQuery(query, 0), request, 'hit', 200, bytes);
    asString.answered(asString.forQuery(query, 0), request, 'hit', 200, bytes);
  }
  batched.flush();
  const withoutTime = (text: string) => text.replace(/"time":\d+/g, '"time":0');
  t.equal(withoutTime(batchedWrites.join('')), withoutTime(plainWrites.join('')), 'the same bytes, with and without a client name, for every number');
  t.match(batchedWrites.join(''), /"hostname":"hôte-é".*"reqId":"dash-42.a","bytes":3018,"ms":0\.00,"msg":"request"}\n.*"client":"wall-tv"/s);
  const numbers = [...batchedWrites.join('').matchAll(/"bytes":(\d+),"ms":([\d.]+),/g)].slice(2).map((match) => [match[1], match[2]]);
  t.same(numbers, [['0', '0.05'], ['9', '0.25'], ['10', '12.50'], ['2147483647', '1234.50']], 'sizes and durations written as digits');
  const parsed = batchedWrites.join('').split('\n').filter(Boolean).map((line) => JSON.parse(line) as { ms: number });
  t.same(parsed.slice(2).map((line) => line.ms), [0.05, 0.25, 12.5, 1234.5], 'each line is JSON, the duration a number');
});
