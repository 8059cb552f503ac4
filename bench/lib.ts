import { type ChildProcess, execFileSync, spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { availableParallelism } from 'node:os';
import autocannon from 'autocannon';

export const DEMO_AUTHORIZATION = 'Basic ' + Buffer.from('demo@example.com:demo').toString('base64');

/**
 * How `npm start` runs the server, read from package.json's start script (the
 * Dockerfile runs the same): the Node flags before the script, and the script.
 * The bench starts the proxy exactly so, and gives the other Node processes
 * it measures the same flags.
 */
export function startCommand(): { readonly nodeFlags: string[]; readonly script: string } {
  const { scripts } = JSON.parse(readFileSync('package.json', 'utf8')) as { scripts: { start: string } };
  const words = scripts.start.trim().split(/\s+/);
  const args = words.slice(words.indexOf('node') + 1);
  const scriptAt = args.findIndex((word) => !word.startsWith('-'));
  if (scriptAt === -1) throw new Error(`package.json's start script names no script to run: ${scripts.start}`);
  // BENCH_NODE_FLAGS adds flags for a side-by-side run (the results name them).
  const extra = process.env['BENCH_NODE_FLAGS']?.split(/\s+/).filter(Boolean) ?? [];
  return { nodeFlags: [...args.slice(0, scriptAt), ...extra], script: args[scriptAt] as string };
}

/** Servers run on one core and the load (the generator, or this process when it loads in-process) on another, so neither takes the other's CPU. */
export const SERVER_CORE = 0;
export const GENERATOR_CORE = 1;

/** Whether `taskset` is installed and may pin to both cores (a container's cpuset may not allow them). */
export const PINNING: boolean = (() => {
  if (availableParallelism() < 2) return false;
  try {
    execFileSync('taskset', ['-c', `${SERVER_CORE},${GENERATOR_CORE}`, 'true'], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
})();

/** The command and arguments that run `command` on `core` when pinning is possible, else unchanged. */
export function pinned(core: number, command: string, args: string[]): [string, string[]] {
  return PINNING ? ['taskset', ['-c', String(core), command, ...args]] : [command, args];
}

/** Moves every thread of a running process to `core`, when pinning is possible. */
export function pin(pid: number, core: number): void {
  if (PINNING) execFileSync('taskset', ['-a', '-p', '-c', String(core), String(pid)], { stdio: 'ignore' });
}

const CLOCK_TICKS_PER_SECOND = (() => {
  try {
    return Number(execFileSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).trim()) || 100;
  } catch {
    return 100;
  }
})();

/** CPU seconds a process has used, all its threads, user and system (Linux: /proc/<pid>/stat utime + stime), or NaN. */
export function cpuSeconds(pid: number): number {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    // The command name may hold spaces and parentheses: the fields are counted after its last ')', from field 3.
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return (Number(fields[14 - 3]) + Number(fields[15 - 3])) / CLOCK_TICKS_PER_SECOND;
  } catch {
    return Number.NaN;
  }
}

/** A child process that is killed when the benchmark ends. */
export interface Child {
  readonly process: ChildProcess;
  readonly pid: number;
  stop(): Promise<void>;
}

/**
 * Starts a server process and resolves once `ready` (an HTTP probe) says it
 * listens. Its stdout is a pipe read by a `cat` of its own on the load's
 * core, into /dev/null, as a container runtime reads a server's stdout: every
 * server measured writes its log lines to the same kind of sink, drained
 * however busy this process is.
 */
export async function startChild(command: string, args: string[], env: Record<string, string>, ready: () => Promise<boolean>): Promise<Child> {
  const reader = spawn(...pinned(GENERATOR_CORE, 'cat', []), { stdio: ['pipe', 'ignore', 'inherit'] });
  const child = spawn(command, args, { env: { ...process.env, ...env }, stdio: ['ignore', reader.stdin, 'inherit'] });
  // The server holds the pipe's only writing end now: the reader ends when it does.
  reader.stdin.destroy();
  const deadline = Date.now() + 20_000;
  while (!(await ready().catch(() => false))) {
    if (child.exitCode !== null) throw new Error(`${command} ${args.join(' ')} exited with ${child.exitCode}`);
    if (Date.now() > deadline) throw new Error(`${command} ${args.join(' ')} did not start`);
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
  return {
    process: child,
    pid: child.pid ?? -1,
    async stop() {
      if (child.exitCode !== null) return;
      const exited = new Promise((resolve) => child.once('exit', resolve));
      child.kill('SIGTERM');
      await Promise.race([exited, new Promise((resolve) => setTimeout(resolve, 5_000))]);
      if (child.exitCode === null) child.kill('SIGKILL');
    },
  };
}

export async function freePort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as { port: number };
  await new Promise((resolve) => server.close(resolve));
  return port;
}

/** True once the URL answers with the given status. */
export const answers = (url: string, status = 200) => async (): Promise<boolean> => (await fetch(url)).status === status;

export interface LoadResult {
  readonly requests: number;
  readonly rps: number;
  readonly p50: number;
  readonly p99: number;
  readonly errors: number;
  readonly non2xx: number;
  /** Requests by latency in µs (wrk only): rounds pooled give a percentile of all their requests. */
  readonly latencyCounts?: ReadonlyMap<number, number>;
}

/** The p-th percentile of values counted in a histogram (value -> how many); NaN for none. */
export function percentileOf(counts: ReadonlyMap<number, number>, p: number): number {
  const sorted = [...counts].sort(([a], [b]) => a - b);
  const total = sorted.reduce((sum, [, n]) => sum + n, 0);
  let seen = 0;
  for (const [value, n] of sorted) {
    seen += n;
    if (seen >= total * (p / 100)) return value;
  }
  return Number.NaN;
}

/** The p-th percentile, in ms, of the requests of several rounds pooled (NaN without wrk's histograms). */
export function pooledPercentile(rounds: readonly LoadResult[], p: number): number {
  const counts = new Map<number, number>();
  for (const { latencyCounts } of rounds) for (const [micros, n] of latencyCounts ?? []) counts.set(micros, (counts.get(micros) ?? 0) + n);
  return percentileOf(counts, p) / 1000;
}

/** Loads from this process: `amount` requests over 50 connections, the i-th to the path `pathOf(i)`. */
export async function loadPaths(url: string, amount: number, pathOf: (index: number) => string): Promise<LoadResult> {
  let next = 0;
  const result = await autocannon({
    url,
    connections: 50,
    amount,
    headers: { authorization: DEMO_AUTHORIZATION },
    requests: [{ setupRequest: (request) => ({ ...request, path: pathOf(next++) }) }],
  });
  return fromAutocannon(result);
}

/** What the bench reads of autocannon's report, the programmatic one or its CLI's JSON. */
export function fromAutocannon(result: autocannon.Result): LoadResult {
  return {
    requests: result.requests.total,
    rps: result.requests.average,
    p50: result.latency.p50,
    p99: result.latency.p99,
    errors: result.errors + result.timeouts,
    non2xx: result.non2xx,
  };
}

export const mib = (bytes: number): string => `${(bytes / 1024 / 1024).toFixed(1)} MiB`;

/** A size /proc/<pid>/status gives in kB, in bytes (Linux), or NaN. */
function statusBytes(pid: number, field: 'VmHWM' | 'VmRSS'): number {
  try {
    const match = new RegExp(`${field}:\\s+(\\d+) kB`).exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
    return match ? Number(match[1]) * 1024 : Number.NaN;
  } catch {
    return Number.NaN;
  }
}

/** Peak resident set size of a running process in bytes (VmHWM), or NaN. */
export const peakRss = (pid: number): number => statusBytes(pid, 'VmHWM');

/** Resident set size of a running process in bytes now (VmRSS), or NaN. */
export const rss = (pid: number): number => statusBytes(pid, 'VmRSS');
