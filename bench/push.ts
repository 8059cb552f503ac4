/**
 * A wall of live screens (`npm run bench -- --only push`): 10,000 event
 * streams on one query, one credential and one process, then one change of
 * Deskie's numbers: how soon it reaches every stream, what a stream costs in
 * memory, and how many calls Deskie sees.
 *
 * The proxy is day-proxy.ts on a clock the bench moves (X-Bench-Now), so the
 * refresh that brings the change falls due when a request moves the clock
 * past it, not five real minutes later; the simulator runs here on the same
 * clock. The streams are bench/push-client.ts's, on the load's core: it times
 * each stream's next event from the request that makes the refresh due, on
 * its own monotonic clock.
 */
import { spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { createInterface } from 'node:readline';
import { DateTime } from 'luxon';
import { startSimulator } from '../src/simulator/index.js';
import { startDayProxy, ZONE } from './day.js';
import { DEMO_AUTHORIZATION, GENERATOR_CORE, pinned, rss } from './lib.js';

export const PUSH_STREAMS = 10_000;
export const PUSH_QUERY = '/api/stats_leaderboard.json?period=today';
/** Streams opened at once on the cold key: their first answers must share one call. */
export const COLD_STREAMS = 100;
/** A Wednesday afternoon in Berlin: `today` keeps its window throughout. */
const START_MS = DateTime.fromISO('2026-12-02T14:00:00', { zone: ZONE }).toMillis();
/** Deskie's lifetime for `today` (docs/freshness.md), and the proxy's margin after it. */
const TODAY_LIFETIME_MS = 5 * 60_000;
const REFRESH_MARGIN_MS = 1_000;
/**
 * The rest open this long before the refresh is due, on the clock: each stream's first heartbeat (15 s after it
 * opened) then falls after the refresh, which is timed alone, as on a real clock, where heartbeats are spread.
 */
const OPENED_BEFORE_REFRESH_MS = 10_000;
/** File descriptors the proxy and the client need beside their streams' sockets. */
const SPARE_FILES = 1_000;

export interface PushReport {
  readonly open: number;
  readonly failed: number;
  /** Real time to open them all. */
  readonly openSeconds: number;
  /** Upstream calls for opening the streams (the key cold), and for the change. */
  readonly openCalls: number;
  readonly changeCalls: number;
  /** The proxy's RSS once the cold streams were open, and once all were. */
  readonly rssBefore: number;
  readonly rssAfter: number;
  readonly bytesPerStream: number;
  /** Streams that got the change, and those that had got more than their first event before it. */
  readonly delivered: number;
  readonly early: number;
  /** From the request that made the refresh due to each stream's event, ms. */
  readonly p50: number;
  readonly p99: number;
  readonly max: number;
}

/** This process's limit on open files; its children inherit it. */
function openFilesLimit(): number {
  const match = /^Max open files\s+(\d+|unlimited)/m.exec(readFileSync('/proc/self/limits', 'utf8'));
  return match?.[1] === 'unlimited' ? Number.POSITIVE_INFINITY : Number(match?.[1] ?? 0);
}

export async function pushToStreams(streams = PUSH_STREAMS): Promise<PushReport> {
  const limit = openFilesLimit();
  if (limit < streams + SPARE_FILES) throw new Error(`push needs ${streams + SPARE_FILES} open files a process, the limit is ${limit}: run it after ulimit -n ${streams + SPARE_FILES}`);
  let nowMs = START_MS;
  const simulator = await startSimulator({ clock: () => nowMs, timezone: ZONE });
  const { proxy, url } = await startDayProxy(simulator.url, 64 * 1024 * 1024, {
    BENCH_START_MS: String(nowMs),
    REFRESH_MARGIN_MS: String(REFRESH_MARGIN_MS),
    SSE_MAX_STREAMS: String(streams),
    SSE_MAX_STREAMS_PER_CLIENT: String(streams),
  });
  const client = spawn(...pinned(GENERATOR_CORE, process.execPath, ['--import', 'tsx', 'bench/push-client.ts', url, PUSH_QUERY, DEMO_AUTHORIZATION]), {
    env: { ...process.env, NODE_OPTIONS: '' },
    stdio: ['pipe', 'pipe', 'inherit'],
  });
  const answers = createInterface({ input: client.stdout })[Symbol.asyncIterator]();
  /** Sends the client a command and reads its answer. */
  const ask = async <T>(command: string): Promise<T> => {
    client.stdin.write(`${command}\n`);
    const { value, done } = await answers.next();
    if (done === true) throw new Error(`bench/push-client.ts ended without answering ${command}`);
    return JSON.parse(value as string) as T;
  };
  try {
    const openedAt = performance.now();
    await ask(`open ${COLD_STREAMS} ${nowMs}`);
    const rssBefore = rss(proxy.pid);
    const refreshAtMs = START_MS + TODAY_LIFETIME_MS + REFRESH_MARGIN_MS;
    nowMs = refreshAtMs - OPENED_BEFORE_REFRESH_MS;
    const opened = await ask<{ open: number; failed: number }>(`open ${streams - COLD_STREAMS} ${nowMs}`);
    const openSeconds = (performance.now() - openedAt) / 1000;
    const rssAfter = rss(proxy.pid);
    const openCalls = simulator.calls;
    // Deskie's cache for the query has expired by now, and its next compute has other numbers.
    nowMs = refreshAtMs;
    simulator.changeNumbers();
    const change = await ask<{ delivered: number; early: number; p50: number; p99: number; max: number }>(`go ${nowMs}`);
    return { ...opened, ...change, openSeconds, openCalls, changeCalls: simulator.calls - openCalls, rssBefore, rssAfter, bytesPerStream: (rssAfter - rssBefore) / (opened.open - COLD_STREAMS) };
  } finally {
    client.stdin.end();
    client.kill();
    await proxy.stop();
    await simulator.close();
  }
}
