import t from 'tap';
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { createServer } from 'node:net';
import { request } from 'undici';

/** Runs src/server.ts the way `npm start` runs the built file, through tsx. */
function startServer(env: Record<string, string>) {
  const child = spawn(process.execPath, ['--import', 'tsx', 'src/server.ts'], {
    env: { PATH: process.env.PATH ?? '', ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let output = '';
  child.stdout.on('data', (chunk: Buffer) => (output += chunk.toString()));
  child.stderr.on('data', (chunk: Buffer) => (output += chunk.toString()));
  return { child, output: () => output };
}

async function freePort(): Promise<number> {
  const server = createServer();
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const { port } = server.address() as { port: number };
  server.close();
  await once(server, 'close');
  return port;
}

t.test('production without DESKIE_URL exits non-zero and says what to set', async (t) => {
  const server = startServer({ NODE_ENV: 'production' });
  const [code] = await once(server.child, 'exit');
  t.equal(code, 1);
  t.match(server.output(), /DESKIE_URL is required when NODE_ENV=production/);
});

t.test('a bad variable stops the start with its name', async (t) => {
  const server = startServer({ DESKIE_TIMEZONE: 'Mars/Olympus' });
  const [code] = await once(server.child, 'exit');
  t.equal(code, 1);
  t.match(server.output(), /DESKIE_TIMEZONE must be an IANA time zone name/);
});

t.test('without DESKIE_URL it serves simulated data, says so, and stops on SIGTERM', async (t) => {
  const port = await freePort();
  const server = startServer({ PORT: String(port), HOST: '127.0.0.1' });
  t.teardown(() => server.child.kill('SIGKILL'));
  const deadline = Date.now() + 20_000;
  while (!server.output().includes('deskie-stats-proxy ready')) {
    if (Date.now() > deadline || server.child.exitCode !== null) t.fail(`server did not start:\n${server.output()}`);
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
  t.match(server.output(), /SIMULATED data/, 'the log warns that the data is simulated');
  const response = await request(`http://127.0.0.1:${port}/api/stats_leaderboard.json?period=today`, {
    headers: { authorization: 'Basic ' + Buffer.from('demo@example.com:demo').toString('base64') },
  });
  t.equal(response.statusCode, 200);
  t.match(await response.body.json(), { 0: { staff: { staff_id: Number } } });
  server.child.kill('SIGTERM');
  const [code] = await once(server.child, 'exit');
  t.equal(code, 0, 'a clean exit');
});
