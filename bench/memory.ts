/**
 * Memory at the pace the budget allows (`npm run bench -- --only memory`):
 * the proxy's own process, on the real clock, while the dashboards of the day
 * (day.ts) poll every 30 s and people exploring custom ranges ask distinct
 * leaderboard queries as fast as the default budget lets them through, in
 * real time, until the cache has filled to CACHE_MAX_BYTES and evicted as
 * much again. Its peak RSS (VmHWM) is what a container's memory limit must
 * hold.
 *
 * The dashboard day runs its misses on a clock some 60 times faster than
 * real time: the budget caps them per minute of that clock, so the proxy
 * sees far more misses a second than the account allows, and V8 grows its
 * heap with the garbage they leave. Here the misses come no faster than in
 * production, so this run takes the time the budget takes: about 25 s per
 * MiB of cache (`--memory-mib`, default 2; 64 MiB takes 27 minutes).
 */
import { request } from 'undici';
import { startSimulator } from '../src/simulator/index.js';
import {
  DASHBOARD_CALLS_MARGIN, DASHBOARDS, EXPLORING_QUERIES_PER_MIB, exploringQuery, PANELS, POLL_INTERVAL_MS, queries, startDayProxy, ZONE,
} from './day.js';
import { DEMO_AUTHORIZATION, peakRss, SERVER_CORE } from './lib.js';

export interface MemoryReport {
  readonly exploringQueries: number;
  /** Exploring misses a second, as the default budget allowed them. */
  readonly missesPerSecond: number;
  readonly polls: number;
  readonly failures: number;
  readonly entries: number;
  readonly storeBytes: number;
  readonly seconds: number;
  readonly startRss: number;
  readonly peakRss: number;
}

interface Health {
  readonly entries: number;
  readonly bytes: number;
  readonly upstream: { readonly callsLeftThisMinute: number };
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, Math.max(0, ms)));

/** `extraFlags`: Node flags beyond `npm start`'s, for an opt-in measured beside the default. */
export async function memoryAtBudgetPace(cacheMaxBytes: number, extraFlags: readonly string[] = []): Promise<MemoryReport> {
  const simulator = await startSimulator({ timezone: ZONE });
  const { proxy, url } = await startDayProxy(simulator.url, cacheMaxBytes, {}, SERVER_CORE, extraFlags);
  const startRss = peakRss(proxy.pid);
  // day-proxy.ts runs on the clock its requests bring: here, the real one.
  const get = (path: string) => request(`${url}${path}`, { headers: { authorization: DEMO_AUTHORIZATION, 'x-bench-now': String(Date.now()) } });
  const health = async (): Promise<Health> => (await (await get('/healthz')).body.json()) as Health;

  const all = queries();
  let failures = 0;
  let polls = 0;
  const ask = async (path: string): Promise<void> => {
    const answer = await get(path);
    await answer.body.dump();
    if (answer.statusCode !== 200) failures += 1;
  };
  // The budget knows the account's limit once Deskie's first answers have told it: the dashboards' first polls.
  for (const { url } of all) await ask(url);
  polls += all.length;
  const exploringQueries = Math.round((EXPLORING_QUERIES_PER_MIB * cacheMaxBytes) / 1024 / 1024);
  const missesPerSecond = ((await health()).upstream.callsLeftThisMinute - DASHBOARD_CALLS_MARGIN) / 60;
  if (!(missesPerSecond > 0)) throw new Error(`the budget leaves no calls for exploring: ${JSON.stringify(await health())}`);

  const started = Date.now();
  let done = false;
  // Each dashboard asks for its three panels every 30 s, the dashboards spread over the interval.
  const dashboards = (async () => {
    for (let turn = 0; !done; turn++) {
      await sleep(started + (turn * POLL_INTERVAL_MS) / DASHBOARDS - Date.now());
      const dashboard = turn % DASHBOARDS;
      const panels = Array.from({ length: PANELS }, (_, panel) => all[(dashboard * PANELS + panel) % all.length]?.url ?? '');
      await Promise.all(panels.map(ask));
      polls += PANELS;
    }
  })();
  let peak: number;
  let store: { readonly entries: number; readonly bytes: number } | undefined;
  try {
    const exploring: Promise<void>[] = [];
    for (let index = 0; index < exploringQueries; index++) {
      await sleep(started + (index * 1000) / missesPerSecond - Date.now());
      // Not awaited: a slow answer must not slow the pace.
      exploring.push(ask(exploringQuery(index)).catch(() => void (failures += 1)));
    }
    await Promise.all(exploring);
    done = true;
    await dashboards;
    const { entries, bytes } = await health();
    store = { entries, bytes };
  } finally {
    done = true;
    peak = peakRss(proxy.pid);
    await proxy.stop();
    await simulator.close();
  }
  return {
    exploringQueries, missesPerSecond, polls, failures, entries: store?.entries ?? 0, storeBytes: store?.bytes ?? 0,
    seconds: (Date.now() - started) / 1000, startRss, peakRss: peak,
  };
}
