/**
 * Load generators as processes of their own, so that they never share an
 * event loop (or, pinned, a core) with the server they load: for a duration,
 * wrk when it is on the PATH, else autocannon's CLI (`BENCH_GENERATOR=autocannon`
 * forces it); for the stampede, bench/stampede-client.ts.
 */
import { execFile, execFileSync } from 'node:child_process';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { promisify } from 'node:util';
import type autocannon from 'autocannon';
import { DEMO_AUTHORIZATION, fromAutocannon, GENERATOR_CORE, pinned, type LoadResult } from './lib.js';

const run = promisify(execFile);

function onPath(command: string): boolean {
  try {
    execFileSync('which', [command], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
}

const WRK = process.env.BENCH_GENERATOR !== 'autocannon' && onPath('wrk');
const AUTOCANNON_CLI = join(dirname(createRequire(import.meta.url).resolve('autocannon/package.json')), 'autocannon.js');

/** The generator the hit path and the peer are loaded with. */
export const GENERATOR = WRK ? 'wrk' : "autocannon's CLI";

/** Loads `url` over `connections` for `seconds`, from the generator on its own core, and reads its report. */
export async function generate(url: string, connections: number, seconds: number): Promise<LoadResult> {
  if (WRK) {
    const [command, args] = pinned(GENERATOR_CORE, 'wrk', [
      '-t1', `-c${connections}`, `-d${seconds}s`, '--latency', '-s', 'bench/wrk-latency.lua', '-H', `authorization: ${DEMO_AUTHORIZATION}`, url,
    ]);
    return parseWrk((await run(command, args, { maxBuffer: 64 * 1024 * 1024 })).stdout);
  }
  const [command, args] = pinned(GENERATOR_CORE, process.execPath, [
    AUTOCANNON_CLI, '--json', '-c', String(connections), '-d', String(seconds), '-H', `authorization=${DEMO_AUTHORIZATION}`, url,
  ]);
  // autocannon reports its progress on stderr; the JSON alone goes to stdout.
  return fromAutocannon(JSON.parse((await run(command, args, { maxBuffer: 16 * 1024 * 1024 })).stdout) as autocannon.Result);
}

/** One request for `url` on each of `connections` connections opened beforehand, all sent at once (bench/stampede-client.ts). */
export async function stampedeLoad(url: string, connections: number): Promise<LoadResult> {
  const [command, args] = pinned(GENERATOR_CORE, process.execPath, ['--import', 'tsx', 'bench/stampede-client.ts', url, String(connections), DEMO_AUTHORIZATION]);
  return JSON.parse((await run(command, args)).stdout) as LoadResult;
}

const WRK_UNITS_MS: Record<string, number> = { us: 0.001, ms: 1, s: 1_000, m: 60_000, h: 3_600_000 };

/** wrk's text report: "Requests/sec:", the latency distribution's 50% and 99% lines, errors and non-2xx counts. */
function parseWrk(stdout: string): LoadResult {
  const number = (pattern: RegExp): number => {
    const match = pattern.exec(stdout);
    return match ? Number(match[1]) : 0;
  };
  const percentile = (p: number): number => {
    const match = new RegExp(`^\\s*${p}%\\s+([\\d.]+)(us|ms|s|m|h)\\s*$`, 'm').exec(stdout);
    if (!match) throw new Error(`wrk reported no ${p}% latency:\n${stdout}`);
    return Number(match[1]) * (WRK_UNITS_MS[match[2] ?? ''] ?? Number.NaN);
  };
  const socket = /Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)/.exec(stdout);
  const latencyCounts = new Map<number, number>();
  for (const [, micros, count] of stdout.matchAll(/^latency-bucket (\d+) (\d+)$/gm)) latencyCounts.set(Number(micros), Number(count));
  return {
    requests: number(/(\d+) requests in /),
    rps: number(/Requests\/sec:\s+([\d.]+)/),
    p50: percentile(50),
    p99: percentile(99),
    errors: socket ? socket.slice(1).reduce((sum, n) => sum + Number(n), 0) : 0,
    non2xx: number(/Non-2xx or 3xx responses: (\d+)/),
    latencyCounts,
  };
}
