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

t.test('the container starts the server as npm start does, with Node\'s default flags', async (t) => {
  const { scripts } = JSON.parse(readFileSync('package.json', 'utf8')) as { scripts: { start: string } };
  const cmd = /^CMD (\[.*\])$/m.exec(dockerfile)?.[1];
  t.ok(cmd, 'the Dockerfile has an exec-form CMD');
  t.same(JSON.parse(cmd ?? '[]'), scripts.start.split(/\s+/));
  t.equal(scripts.start, 'node dist/server.js', 'no Node flags: the cache bound keeps memory in check');
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

t.test('the two-replica compose file: every replica on one Redis, with the same key secret, and only settings the server reads', async (t) => {
  const compose = readFileSync('deploy/docker-compose.yml', 'utf8');
  const { SETTING_NAMES } = await import('../src/config/config.js');
  // The shared environment's block: indented keys under `environment: &proxy-environment`.
  const block = /environment: &proxy-environment\n((?: {4}.*\n)+)/.exec(compose)?.[1] ?? '';
  const settings = [...block.matchAll(/^ {4}([A-Z0-9_]+):/gm)].map((match) => match[1] as string);
  t.ok(settings.length >= 3, `the replicas' environment: ${settings.join(', ')}`);
  for (const name of settings) t.ok(SETTING_NAMES.includes(name), `${name} is a setting the server reads`);
  for (const name of ['REDIS_URL', 'CACHE_KEY_SECRET', 'DESKIE_URL']) t.ok(settings.includes(name), `${name} is set`);
  t.match(compose, /CACHE_KEY_SECRET: \$\{CACHE_KEY_SECRET:\?/, 'the secret comes from the operator, never from the file');
  const replicas = [...compose.matchAll(/^ {2}([a-z0-9-]+):\n {4}<<: \*proxy$/gm)].map((match) => match[1]);
  t.same(replicas, ['proxy-a', 'proxy-b'], 'two replicas share that definition');
  t.match(compose, /^ {2}redis:\n {4}image: (redis|valkey\/valkey):/m, 'a Redis (or Valkey) service');
  t.match(compose, /REDIS_URL: redis:\/\/redis:6379/, 'which the replicas reach by its service name');
  t.match(compose, /dist\/simulator\/cli\.js/, 'and the simulator, from the same image');
});
