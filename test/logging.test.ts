import t, { type Test } from 'tap';
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { closeSync, mkdtempSync, openSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Readable } from 'node:stream';
import { finished } from 'node:stream/promises';
import { fileURLToPath } from 'node:url';
import { redactQuery, stdoutDestination } from '../src/observability/logging.js';
import { eventually } from './helpers/eventually.js';
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

t.test('stdout is pretty on a terminal outside production, JSON lines through pino\'s asynchronous destination otherwise', async (t) => {
  const isSonic = (destination: object): boolean => typeof (destination as { flushSync?: unknown }).flushSync === 'function';
  t.notOk(isSonic(await stdoutDestination(false, { terminal: true })), 'pino-pretty on a terminal');
  t.ok(isSonic(await stdoutDestination(true, { terminal: true })), 'JSON in production, terminal or not');
  t.ok(isSonic(await stdoutDestination(false, { terminal: false })), 'JSON when stdout is not a terminal');
});

t.test('on a stdout pipe every line arrives whole and in order when the process exits as the server does', async (t) => {
  for (const lines of [5, 20_000]) {
    const writer = stdoutWriter(t, lines, 'exit');
    t.same(await writer.exited, [0, null], 'exited by itself');
    await finished(writer.stdout);
    t.same(writer.numbers(), upTo(lines), `${lines} lines: what was buffered was written out before the exit`);
  }
});

t.test('SIGTERM loses no line: on a pipe and on a file', async (t) => {
  const piped = stdoutWriter(t, 20_000, 'linger');
  t.ok(await piped.alive(), 'up');
  piped.child.kill('SIGTERM');
  t.same(await piped.exited, [0, null]);
  await finished(piped.stdout);
  t.same(piped.numbers(), upTo(20_000), 'every line on the pipe, in order');

  const dir = mkdtempSync(join(tmpdir(), 'stdout-file-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  for (const mode of ['exit', 'linger'] as const) {
    const file = join(dir, `${mode}.log`);
    const fd = openSync(file, 'w');
    const child = spawn(process.execPath, ['--import', 'tsx', STDOUT_WRITER, '20000', mode], { stdio: ['ignore', fd, 'pipe'] });
    closeSync(fd);
    if (mode === 'linger') {
      await once(child.stderr as Readable, 'data');
      child.kill('SIGTERM');
    }
    t.same(await once(child, 'exit'), [0, null], `${mode}: exited`);
    const numbers = readFileSync(file, 'utf8').split('\n').filter(Boolean).map((line) => (JSON.parse(line) as { n: number }).n);
    t.same(numbers, upTo(20_000), `${mode}: every line in the file, in order`);
  }
});

t.test('a stdout reader that stops reading cannot grow memory: past the bound lines are dropped, said once, and the writer goes on', async (t) => {
  // About 30 MB of lines against a bound of 1 MiB and a pipe nobody reads.
  const lines = 200_000;
  const writer = stdoutWriter(t, lines, 'linger', { read: false, maxBytes: 1024 * 1024, exposeGc: true });
  t.ok(await writer.alive(), 'its event loop ran on with the pipe full');
  const heapGrowth = Number(/heap=(-?\d+)/.exec(writer.stderr())?.[1]);
  t.ok(heapGrowth < 8 * 1024 * 1024, `its heap grew ${Math.round(heapGrowth / 1024)} kB while 30 MB of lines were logged`);
  t.equal(writer.stderr().match(/stdout is not being read/g)?.length, 1, 'said once on stderr');
  const chunks: Buffer[] = [];
  writer.stdout.on('data', (chunk: Buffer) => chunks.push(chunk));
  writer.stdout.resume();
  writer.child.kill('SIGTERM');
  t.same(await writer.exited, [0, null], 'ends when told to');
  await finished(writer.stdout);
  const numbers = Buffer.concat(chunks).toString().split('\n').filter(Boolean).map((line) => (JSON.parse(line) as { n: number }).n);
  t.ok(numbers.length > 0 && numbers.length < lines, `${numbers.length} whole lines were written, the rest dropped`);
  t.ok(numbers.every((n, at) => at === 0 || n > (numbers[at - 1] as number)), 'those written are whole and in order');
});

t.test('a stdout reader that goes away does not end the writer: it says so once on stderr and drops lines', async (t) => {
  const writer = stdoutWriter(t, 20_000, 'linger', { read: false });
  writer.stdout.destroy();
  t.ok(await writer.alive(), 'its event loop ran on');
  t.equal(writer.child.exitCode, null, 'still running');
  t.ok((writer.stderr().match(/no longer written/g)?.length ?? 0) <= 1, 'said at most once');
  writer.child.kill('SIGTERM');
  t.same(await writer.exited, [0, null], 'and ends when told to');
});

/** A process logging to a stdout pipe as the server does (test/helpers/stdout-writer.ts), and what it has written so far. */
function stdoutWriter(t: Test, lines: number, mode: 'exit' | 'linger', { read = true, maxBytes, exposeGc = false }: { read?: boolean; maxBytes?: number; exposeGc?: boolean } = {}) {
  const args = [...(exposeGc ? ['--expose-gc'] : []), '--import', 'tsx', STDOUT_WRITER, String(lines), mode, ...(maxBytes === undefined ? [] : [String(maxBytes)])];
  const child = spawn(process.execPath, args, { stdio: ['ignore', 'pipe', 'pipe'] });
  t.teardown(() => void child.kill('SIGKILL'));
  const out: Buffer[] = [];
  let err = '';
  const stdout = child.stdout as Readable;
  if (read) stdout.on('data', (chunk: Buffer) => out.push(chunk));
  else stdout.pause();
  child.stderr?.on('data', (chunk: Buffer) => (err += chunk.toString()));
  const exited = once(child, 'exit') as Promise<[number | null, string | null]>;
  return {
    child,
    stdout,
    exited,
    stderr: () => err,
    /** Whether it said, within 30 s, that it has logged its lines and its event loop runs. */
    alive: () => eventually(() => err.includes('alive'), 30_000),
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
