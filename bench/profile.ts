/**
 * `--profile`: where a server's CPU goes, from the V8 profile Node writes at
 * exit (`--cpu-prof`), as self time per function in µs a request. Only the
 * samples taken during the measured round count, not start-up or warm-up.
 */
import { mkdtempSync, readdirSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

/** Node flags that write a profile into a new directory when the process exits (cleanly: SIGTERM, not SIGKILL). */
export function profiling(): { flags: string[]; dir: string } {
  const dir = mkdtempSync(join(tmpdir(), 'bench-profile-'));
  // Every 250 µs rather than V8's 1 ms, so that a round of a second or two has
  // samples enough for functions of 1 %; more often costs the server too much.
  return { flags: ['--cpu-prof', `--cpu-prof-dir=${dir}`, '--cpu-prof-interval=250'], dir };
}

/** Now on the clock V8 stamps its samples with (both are CLOCK_MONOTONIC on Linux), in µs. */
export const monotonicMicros = (): number => Number(process.hrtime.bigint() / 1000n);

interface CpuProfile {
  nodes: { id: number; callFrame: { functionName: string; url: string; lineNumber: number } }[];
  startTime: number;
  samples: number[];
  timeDeltas: number[];
}

export interface SelfTimes {
  /** µs of self time by function ("name file:line"), idle excluded. */
  readonly functions: Map<string, number>;
  readonly busyMicros: number;
}

/**
 * Self time per function in the main thread's profile written to `dir`
 * (CPU.<date>.<time>.<pid>.<thread>.<n>.cpuprofile, thread 0; a loader such
 * as tsx runs on a thread of its own), counting only samples stamped within [from, to].
 */
export function selfTimes(dir: string, from: number, to: number): SelfTimes {
  const file = readdirSync(dir).find((name) => /^CPU(\.\d+){3}\.0\.\d+\.cpuprofile$/.test(name));
  if (!file) throw new Error(`no main-thread .cpuprofile in ${dir}: did the server exit cleanly?`);
  const profile = JSON.parse(readFileSync(join(dir, file), 'utf8')) as CpuProfile;
  const names = new Map(profile.nodes.map((node) => [node.id, functionName(node.callFrame)]));
  const functions = new Map<string, number>();
  let busyMicros = 0;
  let stamp = profile.startTime;
  profile.samples.forEach((id, i) => {
    const delta = profile.timeDeltas[i] ?? 0;
    stamp += delta;
    const name = names.get(id) ?? '(unknown)';
    if (stamp < from || stamp > to || name === '(idle)') return;
    functions.set(name, (functions.get(name) ?? 0) + delta);
    busyMicros += delta;
  });
  return { functions, busyMicros };
}

function functionName(frame: CpuProfile['nodes'][number]['callFrame']): string {
  if (!frame.url) return frame.functionName; // (program), (garbage collector), (idle), (root)
  // Paths from the project or node_modules, not the whole file URL.
  const url = frame.url.replace(/^file:\/\//, '').replace(`${process.cwd()}/`, '').replace(/^.*\/node_modules\//, '');
  return `${frame.functionName || '(anonymous)'} ${url}:${frame.lineNumber + 1}`;
}

/** The `top` functions by self time, in µs a request over `requests`, with the total. */
export function formatSelfTimes(title: string, times: SelfTimes, requests: number, top = 15): string {
  const perRequest = (micros: number) => (micros / requests).toFixed(2).padStart(7);
  const share = (micros: number) => `${((100 * micros) / times.busyMicros).toFixed(1)}%`.padStart(6);
  const lines = [...times.functions].sort((a, b) => b[1] - a[1]).slice(0, top);
  return [
    `${title}: ${requests.toLocaleString('en-US')} requests, ${(times.busyMicros / requests).toFixed(2)} µs/request of JavaScript-thread CPU (idle excluded)`,
    ' µs/req  share  self time',
    ...lines.map(([name, micros]) => `${perRequest(micros)} ${share(micros)}  ${name}`),
    '',
  ].join('\n');
}
