import { execFileSync } from 'node:child_process';
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import t from 'tap';

const dockerfile = readFileSync('Dockerfile', 'utf8');
/** The instructions of the image's last stage, the one that runs: each a keyword and its arguments, continuation lines joined. */
const runtime = (dockerfile.replace(/\\\n/g, ' ').split(/^FROM /m).at(-1) ?? '')
  .split('\n')
  .map((line) => line.trim())
  .filter((line) => line !== '' && !line.startsWith('#'))
  .map((line) => {
    const [keyword = '', ...rest] = line.split(/\s+/);
    return { keyword: keyword.toUpperCase(), args: rest.join(' ') };
  });
const instructions = (keyword: string): string[] => runtime.filter((line) => line.keyword === keyword).map((line) => line.args);

t.test('the container starts the server with the same Node flags as npm start', async (t) => {
  const { scripts } = JSON.parse(readFileSync('package.json', 'utf8')) as { scripts: { start: string } };
  const cmd = /^CMD (\[.*\])$/m.exec(dockerfile)?.[1];
  t.ok(cmd, 'the Dockerfile has an exec-form CMD');
  t.same(JSON.parse(cmd ?? '[]'), scripts.start.split(/\s+/));
  t.match(scripts.start, /--expose-gc --max-semi-space-size=\d+ /, 'the memory settings the README describes');
});

t.test('the runtime stage runs as a non-root user', async (t) => {
  const users = instructions('USER');
  t.ok(users.length > 0, 'it names a user');
  t.notMatch(users.at(-1), /^(root|0)(:|$)/, `the last USER (${users.at(-1)}) is not root`);
  const lastUser = runtime.findLastIndex((line) => line.keyword === 'USER');
  t.notOk(runtime.slice(lastUser).some((line) => line.keyword === 'RUN'), 'nothing runs after it as another user');
});

t.test('the container runs node itself, never npm, for the server and its health check', async (t) => {
  const cmd = JSON.parse(instructions('CMD').at(-1) ?? '[]') as string[];
  t.equal(cmd[0], 'node', 'CMD starts node (npm writes its logs and cache under the home directory)');
  t.same(instructions('ENTRYPOINT'), [], 'no ENTRYPOINT wraps it');
  const healthcheck = /CMD (\[.*\])$/.exec(instructions('HEALTHCHECK').at(-1) ?? '')?.[1];
  t.equal((JSON.parse(healthcheck ?? '[]') as string[])[0], 'node', 'the HEALTHCHECK runs node too');
});

t.test('nothing is written at run time, so `docker run --read-only --tmpfs /tmp` works', async (t) => {
  t.same(instructions('VOLUME'), [], 'no VOLUME: nothing expects a writable directory');
  for (const copy of instructions('COPY')) t.notMatch(copy, /--chown|--chmod/, `${copy}: the files stay root's, so the process cannot change them either`);
  const cmd = instructions('CMD').at(-1) ?? '';
  t.notMatch(cmd, /--(cpu-prof|heap-prof|prof|report-|diagnostic-dir|redirect-warnings|heapsnapshot)/, 'no Node flag that writes a profile or report');
  // The compiled server is src/: it may read files (the config file, the docs page's assets) but never write one.
  const READS = new Set(['existsSync', 'readFileSync', 'realpathSync']);
  const sources = (dir: string): string[] =>
    readdirSync(dir, { withFileTypes: true }).flatMap((entry) => (entry.isDirectory() ? sources(join(dir, entry.name)) : entry.name.endsWith('.ts') ? [join(dir, entry.name)] : []));
  const writers: string[] = [];
  for (const file of sources('src')) {
    const text = readFileSync(file, 'utf8');
    if (/import\s+(\*\s+as\s+)?\w+\s+from\s+'(node:)?fs(\/promises)?'/.test(text)) writers.push(`${file}: the whole fs module`);
    for (const match of text.matchAll(/import\s*\{([^}]*)\}\s*from\s*'(node:)?fs(\/promises)?'/g)) {
      const names = (match[1] ?? '').split(',').map((name) => name.trim().split(/\s+as\s+/)[0] ?? '').filter(Boolean);
      writers.push(...names.filter((name) => !READS.has(name)).map((name) => `${file}: fs.${name}`));
    }
  }
  t.same(writers, [], `the server's files use only ${[...READS].join(', ')} of fs`);
});

t.test('the Dockerfile passes a Dockerfile linter (dockerfile-utils, the Docker language server\'s checks) without a warning', async (t) => {
  let output: string;
  try {
    output = execFileSync(process.execPath, ['node_modules/dockerfile-utils/bin/dockerfile-utils', 'lint', 'Dockerfile'], { encoding: 'utf8' });
  } catch (error) {
    // It exits 1 for an error, which it prints.
    output = String((error as { stdout?: string }).stdout ?? error);
  }
  t.equal(output.trim(), '', 'no error and no warning');
});
