import t, { type Test } from 'tap';
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { closeSync, mkdtempSync, openSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { type Readable, Writable } from 'node:stream';
import { finished } from 'node:stream/promises';
import { fileURLToPath } from 'node:url';
import { LRUCache } from 'lru-cache';
import { pino } from 'pino';
import { AccessLog } from '../src/observability/access-log.js';
import { ENDPOINTS } from '../src/deskie/endpoints.js';
import { PeriodWindows } from '../src/deskie/periods.js';
import { parseStatsQuery } from '../src/deskie/query.js';
import { PROXY_PARAMETERS } from '../src/formats/representations.js';
import { BatchedDestination, type BatchTarget, LOG_FLUSH_MS, redactQuery, stdoutDestination } from '../src/observability/logging.js';
import { requestIds } from '../src/http/request-id.js';
import { eventually } from './helpers/eventually.js';
import { capturedLog } from './helpers/log.js';

/** A target that keeps each batch as text; with `reuse`, it hands every buffer back at once, as a write completed in the call would. */
function textTarget(writes: string[], { reuse = true } = {}): BatchTarget {
  return {
    write(batch, reusable) {
      writes.push(batch.toString('utf8'));
      if (reuse) reusable();
    },
    writeAtExit: (batch) => void writes.push(batch.toString('utf8')),
    written: async () => {},
  };
}

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
  const batched = new BatchedDestination(textTarget(writes), (flush) => {
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

t.test('a batch buffer is filled again only once the target hands it back', async (t) => {
  const handedOver: Buffer[] = [];
  const handBack: Array<() => void> = [];
  const batched = new BatchedDestination(
    {
      write(batch, reusable) {
        handedOver.push(batch);
        handBack.push(reusable);
      },
      writeAtExit: () => {},
      written: async () => {},
    },
    () => {},
  );
  const batchOf = (line: string): Buffer => {
    batched.write(line);
    batched.flush();
    return handedOver.at(-1) as Buffer;
  };
  const first = batchOf('a\n');
  const second = batchOf('b\n');
  t.not(second.buffer, first.buffer, 'the first is still being written: a buffer of its own');
  t.equal(first.toString(), 'a\n', 'and the first batch is untouched');
  handBack.splice(0).forEach((reusable) => reusable());
  const third = batchOf('c\n');
  t.ok(third.buffer === second.buffer || third.buffer === first.buffer, 'a buffer handed back is filled again');
  batched.write('y'.repeat(100 * 1024));
  batched.flush();
  (handBack.at(-1) as () => void)();
  const afterLong = batchOf('d\n');
  t.not(afterLong.buffer, (handedOver.at(-2) as Buffer).buffer, "a long line's own buffer is not kept");
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

/**
 * The same logger twice: `inParts` writes to a batch as the server does, so
 * that its plain answers are written in parts; `asString` to a plain stream,
 * so that a hit's line is its template string and any other line pino's.
 */
function accessLogPair() {
  // A host name outside ASCII: the prefix is copied as UTF-8 bytes.
  const base = { pid: 7, hostname: 'hôte-é' };
  const batchedWrites: string[] = [];
  const batched = new BatchedDestination(textTarget(batchedWrites), () => {});
  const plainWrites: string[] = [];
  const plain = new Writable({
    write(chunk: Buffer, _encoding, done) {
      plainWrites.push(chunk.toString('utf8'));
      done();
    },
  });
  return {
    inParts: new AccessLog(pino({ base }, batched)),
    asString: new AccessLog(pino({ base }, plain)),
    /** What each has written so far, the batch flushed first. */
    written: () => {
      batched.flush();
      return { inParts: batchedWrites.join(''), asString: plainWrites.join('') };
    },
  };
}

const TODAY_QUERY = parseStatsQuery(ENDPOINTS.leaderboard, { period: 'today' }, {
  windows: new PeriodWindows('UTC', 1),
  ranges: new LRUCache({ max: 1 }),
  extraParameters: new Set(),
  proxyParameters: PROXY_PARAMETERS,
  nowMs: Date.parse('2026-11-28T12:00:00Z'),
});

t.test("a hit's access line written in parts into the batch is byte for byte the template's line", async (t) => {
  const { inParts, asString, written } = accessLogPair();
  const query = TODAY_QUERY;
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
  const lines = written();
  const withoutTime = (text: string) => text.replace(/"time":\d+/g, '"time":0');
  t.equal(withoutTime(lines.inParts), withoutTime(lines.asString), 'the same bytes, with and without a client name, for every number');
  t.match(lines.inParts, /"hostname":"hôte-é".*"reqId":"dash-42.a","bytes":3018,"ms":0\.00,"msg":"request"}\n.*"client":"wall-tv"/s);
  const numbers = [...lines.inParts.matchAll(/"bytes":(\d+),"ms":([\d.]+),/g)].slice(2).map((match) => [match[1], match[2]]);
  t.same(numbers, [['0', '0.05'], ['9', '0.25'], ['10', '12.50'], ['2147483647', '1234.50']], 'sizes and durations written as digits');
  const parsed = lines.inParts.split('\n').filter(Boolean).map((line) => JSON.parse(line) as { ms: number });
  t.same(parsed.slice(2).map((line) => line.ms), [0.05, 0.25, 12.5, 1234.5], 'each line is JSON, the duration a number');
});

t.test("any other answer that went well is written in parts too, with pino's fields; a refused one goes through pino", async (t) => {
  const { inParts, asString, written } = accessLogPair();
  const realNow = performance.now;
  t.teardown(() => void (performance.now = realNow));
  const newId = requestIds();
  const answers = [
    ['GET', 'miss', 200, 3018, 201.53, undefined],
    ['GET', 'collapsed', 200, 3018, 201.5, 'wall-tv'],
    ['HEAD', 'refreshed', 200, 0, 0.07, undefined],
    ['GET', 'stale', 200, 3018, undefined, undefined],
    ['GET', 'miss', 304, 0, 12, 'wall-tv'],
    ['GET', 'error', 502, 120, undefined, undefined],
  ] as const;
  for (const [method, outcome, status, bytes, upstreamMs, client] of answers) {
    performance.now = () => 1000;
    const raw = { headers: {} } as never;
    const request = { id: newId(raw), method, raw, client, ip: '192.0.2.7' } as never;
    performance.now = () => 1212.34;
    inParts.answered(inParts.forQuery(TODAY_QUERY, 0), request, outcome, status, bytes, upstreamMs);
    asString.answered(asString.forQuery(TODAY_QUERY, 0), request, outcome, status, bytes, upstreamMs);
  }
  const lines = written();
  const parsed = (text: string) =>
    text
      .split('\n')
      .filter(Boolean)
      .map((line) => ({ ...(JSON.parse(line) as object), time: 0 }));
  t.same(parsed(lines.inParts), parsed(lines.asString), 'the same fields and values as pino writes, line for line');
  t.match(parsed(lines.inParts), [
    { method: 'GET', outcome: 'miss', status: 200, bytes: 3018, ms: 212.34, upstreamMs: 201.53, msg: 'request' },
    { outcome: 'collapsed', client: 'wall-tv', upstreamMs: 201.5 },
    { method: 'HEAD', outcome: 'refreshed', upstreamMs: 0.07 },
    { outcome: 'stale' },
    { status: 304 },
    { outcome: 'error', status: 502, ip: '192.0.2.7' },
  ]);
  t.notOk('upstreamMs' in (parsed(lines.inParts)[3] as object), 'no upstream time for an answer that had none');
  t.match(lines.inParts, /"outcome":"miss","status":200,"reqId":"[^"]+","bytes":3018,"ms":212\.34,"upstreamMs":201\.53,"msg":"request"}\n/, 'written in parts: digits to 0.01');
  t.match(lines.inParts, /"status":502,.*"ip":"192\.0\.2\.7"/, "a refused answer's line, through pino, has the client's address");
});

/** A process logging to a stdout pipe as the server does (test/helpers/stdout-writer.ts), and what it has written so far. */
function stdoutWriter(t: Test, lines: number, mode: 'exit' | 'wait' | 'linger', { read = true } = {}) {
  const child = spawn(process.execPath, ['--import', 'tsx', STDOUT_WRITER, String(lines), mode], { stdio: ['ignore', 'pipe', 'pipe'] });
  t.teardown(() => void child.kill('SIGKILL'));
  const out: Buffer[] = [];
  let err = '';
  const stdout = child.stdout as Readable;
  if (read) stdout.on('data', (chunk: Buffer) => out.push(chunk));
  child.stderr?.on('data', (chunk: Buffer) => (err += chunk.toString()));
  const exited = once(child, 'exit') as Promise<[number | null, string | null]>;
  return {
    child,
    stdout,
    exited,
    stderr: () => err,
    /** Whether it said, within 10 s, that a timer set after its writes ran. */
    alive: () => eventually(() => err.includes('alive'), 10_000),
    /** The numbers of the lines read, in order; throws on a line that is not whole JSON. */
    numbers: () =>
      Buffer.concat(out)
        .toString()
        .split('\n')
        .filter(Boolean)
        .map((line) => (JSON.parse(line) as { n: number }).n),
  };
}
const STDOUT_WRITER = fileURLToPath(new URL('./helpers/stdout-writer.ts', import.meta.url));
const upTo = (count: number) => Array.from({ length: count }, (_, n) => n);

t.test('on a stdout pipe every line arrives whole and in order, the last batch even when the process exits at once', async (t) => {
  const few = stdoutWriter(t, 5, 'exit');
  t.same(await few.exited, [0, null], 'exited by itself');
  await finished(few.stdout);
  t.same(few.numbers(), upTo(5), 'the batch not yet handed over was written at exit');
  const many = stdoutWriter(t, 20_000, 'wait');
  t.same(await many.exited, [0, null]);
  await finished(many.stdout);
  t.same(many.numbers(), upTo(20_000), 'about 2 MB, many batches, none lost, none cut');
});

t.test('on a stdout file (written by pino\'s own destination) every line arrives whole and in order, at exit too', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'stdout-file-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  for (const [lines, mode] of [[5, 'exit'], [20_000, 'wait']] as const) {
    const file = join(dir, `${mode}.log`);
    const fd = openSync(file, 'w');
    const child = spawn(process.execPath, ['--import', 'tsx', STDOUT_WRITER, String(lines), mode], { stdio: ['ignore', fd, 'ignore'] });
    closeSync(fd);
    t.same(await once(child, 'exit'), [0, null], `${mode}: exited by itself`);
    const numbers = readFileSync(file, 'utf8').split('\n').filter(Boolean).map((line) => (JSON.parse(line) as { n: number }).n);
    t.same(numbers, upTo(lines), `${mode}: every line, in order`);
  }
});

t.test('a stdout reader that stops reading holds up neither the writer nor its lines', async (t) => {
  // 2 MB against a pipe of 64 kB: most of it waits in the writer, which goes on.
  const writer = stdoutWriter(t, 20_000, 'wait', { read: false });
  t.ok(await writer.alive(), 'its event loop ran on with the pipe full');
  t.equal(writer.child.exitCode, null, 'and it waits for its lines to be read');
  const chunks: Buffer[] = [];
  writer.stdout.on('data', (chunk: Buffer) => chunks.push(chunk));
  t.same(await writer.exited, [0, null], 'exits once the reader has caught up');
  await finished(writer.stdout);
  const numbers = Buffer.concat(chunks).toString().split('\n').filter(Boolean).map((line) => (JSON.parse(line) as { n: number }).n);
  t.same(numbers, upTo(20_000), 'every line, in order');
});

t.test('a stdout reader that goes away does not end the writer: it says so once on stderr and drops lines', async (t) => {
  const writer = stdoutWriter(t, 20_000, 'linger', { read: false });
  writer.stdout.destroy();
  t.ok(await writer.alive(), 'its event loop ran on');
  t.ok(await eventually(() => writer.stderr().includes('no longer written'), 10_000), 'it said the lines are dropped');
  t.equal(writer.child.exitCode, null, 'still running');
  t.equal(writer.stderr().match(/no longer written/g)?.length, 1, 'said once');
  writer.child.kill('SIGTERM');
  t.same(await writer.exited, [0, null], 'and ends when told to');
});
