import { type ChildProcess, spawn, spawnSync } from 'node:child_process';
import { once } from 'node:events';
import { createServer, connect } from 'node:net';
import type { Test } from 'tap';

/**
 * Whether this machine can run the Redis tests: `redis-server` on PATH. CI
 * (.ci/run) installs it and sets DESKIE_TEST_REDIS=required, so there a
 * missing server fails the suite instead of skipping it.
 */
export function redisAvailable(): boolean {
  return spawnSync('redis-server', ['--version'], { stdio: 'ignore' }).status === 0;
}

/** Skip options for a Redis test: a reason without redis-server, unless CI requires it. */
export function redisSkip(): { skip?: string } {
  if (redisAvailable() || process.env['DESKIE_TEST_REDIS'] === 'required') return {};
  return { skip: 'redis-server is not installed (apt-get install redis-server); CI runs these' };
}

/** A redis-server of the test's own on a free loopback port: stopped and started again at will, gone when the test ends. */
export interface TestRedis {
  readonly port: number;
  readonly url: string;
  stop(): Promise<void>;
  start(): Promise<void>;
}

/** A loopback port free now (the OS picks it), for a server started next. */
export async function freePort(): Promise<number> {
  const server = createServer();
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const address = server.address();
  server.close();
  if (address === null || typeof address === 'string') throw new Error('no free port');
  return address.port;
}

async function accepting(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = connect(port, '127.0.0.1');
    socket.once('connect', () => (socket.destroy(), resolve(true)));
    socket.once('error', () => resolve(false));
  });
}

export async function startRedis(t: Test): Promise<TestRedis> {
  const port = await freePort();
  let server: ChildProcess | undefined;
  const start = async (): Promise<void> => {
    // Nothing persisted: a restart is an empty Redis, as after a crash without persistence.
    // DEBUG SLEEP lets a test make Redis slow rather than gone.
    const args = ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no', '--enable-debug-command', 'local'];
    const started = spawn('redis-server', args, { stdio: 'ignore' });
    server = started;
    let failure: Error | undefined;
    started.once('error', (error) => (failure = error));
    for (let attempt = 0; attempt < 200; attempt += 1) {
      if (failure !== undefined) throw new Error(`redis-server could not be started (${failure.message}); install it: apt-get install redis-server`);
      if (await accepting(port)) return;
      await new Promise((resolve) => setTimeout(resolve, 10));
    }
    throw new Error(`redis-server did not start on port ${port}`);
  };
  const stop = async (): Promise<void> => {
    const running = server;
    server = undefined;
    if (running === undefined || running.exitCode !== null) return;
    running.kill('SIGKILL');
    await once(running, 'exit');
  };
  await start();
  t.teardown(stop);
  return { port, url: `redis://127.0.0.1:${port}`, stop, start };
}
