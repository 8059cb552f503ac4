import t from 'tap';
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { request } from 'undici';
import { startSimulator } from '../src/simulator/index.js';
import { freePort } from './helpers/redis.js';

const SERVER = fileURLToPath(new URL('../src/server.ts', import.meta.url));
const PROBE = fileURLToPath(new URL('helpers/hangup-probe.ts', import.meta.url));
const PROBE_LINE = 'probe: server.ts listens for SIGHUP';

async function ready(url: string): Promise<boolean> {
  try {
    const { statusCode, body } = await request(`${url}/readyz`);
    await body.dump();
    return statusCode === 200;
  } catch {
    return false;
  }
}

t.test('SIGHUP during start-up does not end the process: it is handled from the first statement of server.ts', async (t) => {
  const simulator = await startSimulator({ users: { 'service@example.com': 'service-api-key-7f3a9c' } });
  t.teardown(() => simulator.close());
  const tokens = join(mkdtempSync(join(tmpdir(), 'proxy-tokens-')), 'tokens');
  writeFileSync(tokens, 'wall wall-token-0123456789abcdef\n');
  const port = await freePort();
  const url = `http://127.0.0.1:${port}`;
  let output = '';
  const child = spawn(process.execPath, ['--import', 'tsx', '--import', PROBE, SERVER], {
    env: {
      PATH: process.env['PATH'] ?? '',
      LOG_LEVEL: 'warn',
      PORT: String(port),
      HOST: '127.0.0.1',
      DESKIE_URL: simulator.url,
      DESKIE_EMAIL: 'service@example.com',
      DESKIE_API_KEY: 'service-api-key-7f3a9c',
      PROXY_TOKENS_FILE: tokens,
    },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  child.stdout.on('data', (chunk: Buffer) => (output += chunk.toString()));
  child.stderr.on('data', (chunk: Buffer) => (output += chunk.toString()));
  const exited = once(child, 'exit');
  // Killed, as other tests' replicas are: a child that exits cleanly writes coverage that tsx maps apart from the runner's, which spoils the report.
  t.teardown(async () => {
    if (child.exitCode === null && child.signalCode === null) {
      child.kill('SIGKILL');
      await exited;
    }
  });
  const pid = child.pid as number;

  // Before server.ts has run, SIGHUP would end any process: wait for its listener, without sending.
  while (!output.includes(PROBE_LINE) && child.exitCode === null) await new Promise((resolve) => setTimeout(resolve, 1));
  t.notOk(await ready(url), 'SIGHUP is handled before the server listens');

  // A supervisor's reload signals all through start-up.
  let sent = 0;
  while (child.exitCode === null && child.signalCode === null && !(await ready(url))) {
    process.kill(pid, 'SIGHUP');
    sent += 1;
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
  t.same({ exitCode: child.exitCode, signal: child.signalCode }, { exitCode: null, signal: null }, `still running after ${sent} SIGHUPs`, { output });
  t.ok(sent >= 3, `SIGHUP sent ${sent} times while the server started`);
  process.kill(pid, 'SIGHUP');
  const response = await request(`${url}/readyz`);
  await response.body.dump();
  t.equal(response.statusCode, 200, 'the started server answers, after a reload too');
});
