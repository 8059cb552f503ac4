import { type ChildProcess, spawn } from 'node:child_process';
import { once } from 'node:events';
import { fileURLToPath } from 'node:url';
import type { Test } from 'tap';
import { request } from 'undici';
import { freePort } from './redis.js';

const SERVER = fileURLToPath(new URL('../../src/server.ts', import.meta.url));

/** A proxy in a process of its own, as one replica of a deployment. */
export interface Replica {
  readonly url: string;
  readonly process: ChildProcess;
  /** Its stderr and stdout so far: the log lines, for a failing test to show. */
  readonly output: () => string;
  /** SIGKILL: the replica dies as a crashed or evicted container does, with nothing released. */
  kill(): Promise<void>;
}

/** Starts `src/server.ts` with `env` on a free loopback port, ready (and its Redis connected) when this returns. */
export async function startReplica(t: Test, env: Record<string, string>): Promise<Replica> {
  const port = await freePort();
  let output = '';
  const child = spawn(process.execPath, ['--import', 'tsx', SERVER], {
    env: { PATH: process.env['PATH'] ?? '', LOG_LEVEL: 'warn', ...env, PORT: String(port), HOST: '127.0.0.1' },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  child.stdout?.on('data', (chunk: Buffer) => (output += chunk.toString()));
  child.stderr?.on('data', (chunk: Buffer) => (output += chunk.toString()));
  const kill = async (): Promise<void> => {
    if (child.exitCode !== null || child.signalCode !== null) return;
    child.kill('SIGKILL');
    await once(child, 'exit');
  };
  t.teardown(kill);
  const url = `http://127.0.0.1:${port}`;
  for (let attempt = 0; attempt < 300; attempt += 1) {
    if (child.exitCode !== null) throw new Error(`replica exited (${child.exitCode}): ${output}`);
    try {
      const { statusCode, body } = await request(`${url}/readyz`);
      const ready = (await body.json()) as { store?: { shared?: { redis?: string } } };
      if (statusCode === 200 && (env['REDIS_URL'] === undefined || ready.store?.shared?.redis === 'up')) return { url, process: child, output: () => output, kill };
    } catch {
      // Not listening yet.
    }
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
  throw new Error(`replica did not become ready: ${output}`);
}
