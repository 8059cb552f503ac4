/**
 * A simulated dashboard day (`npm run bench -- --only day`): 50 dashboards
 * poll 40 queries every 30 s for 24 hours of an injected clock, crossing a
 * midnight and a week end in Europe/Berlin, with no real waiting. From the
 * start, people exploring custom ranges also ask distinct leaderboard
 * queries as fast as the upstream budget lets them through (about 1,200 a
 * minute of Deskie's 1,500), until the cache has filled to CACHE_MAX_BYTES
 * and evicted as much again (half an hour at 64 MiB).
 *
 * The proxy runs as its own process (day-proxy.ts, compiled, with the Node
 * flags of `npm start`) on the day's clock, which every request carries; the
 * simulator runs here on the same clock, and the polls go over HTTP. So the
 * proxy's peak RSS is read from its own process, with nothing of the
 * dashboards', the simulator's or a TypeScript loader's in it.
 *
 * What it reports of the dashboards is measured against numbers computed
 * here from Deskie's period table, not with the proxy's code: the fewest
 * upstream calls a cache can make (one per query per freshness window), the
 * polls that are the first of their window, and what a plain TTL cache keyed
 * by URL would have answered from the wrong window.
 */
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { DateTime } from 'luxon';
import ts from 'typescript';
import { request } from 'undici';
import { startSimulator } from '../src/simulator/index.js';
import { answers, type Child, DEMO_AUTHORIZATION, freePort, peakRss, percentileOf, pinned, SERVER_CORE, startChild, startCommand } from './lib.js';

export const ZONE = 'Europe/Berlin';
/** Sunday morning in Berlin (at no round minute, as dashboards start): the day crosses midnight into Monday, a new week. */
const START = DateTime.fromISO('2026-11-29T06:03:17', { zone: ZONE });
export const POLL_INTERVAL_MS = 30_000;
/** Dashboards, each showing three of the 40 queries: every query is on three or four of them. */
export const DASHBOARDS = 50;
export const PANELS = 3;
const PLAIN_TTL_MS = 5 * 60 * 1000;
/** The header day-proxy.ts reads the day's clock from. */
const CLOCK_HEADER = 'x-bench-now';
/** day-proxy.ts's header: the earliest refresh it has scheduled, in epoch ms, when it answered. */
const NEXT_DUE_HEADER = 'x-bench-next-due';
/** Dashboards whose quiet polls go at once: a span of at most 32 × 0.6 s, far less than the shortest lifetime. */
const QUIET_BATCH = 32;

/** Distinct exploring queries per MiB of cache: some 1.25 times what a MiB holds, so the store fills and evicts. */
export const EXPLORING_QUERIES_PER_MIB = 300;
/** Calls a minute the exploring leaves to the dashboards: at most 40 windows change at once (midnight). */
export const DASHBOARD_CALLS_MARGIN = 50;
/** Exploring requests in flight at once. */
const EXPLORING_CONCURRENCY = 16;

const MINUTE = 60_000;
const HOUR = 60 * MINUTE;
const DAY = 24 * HOUR;

type Kind = 'today' | 'yesterday' | 'this_week' | 'this_month' | 'last_24_hours' | 'custom_short' | 'custom_long';

/** Deskie's cache table for the kinds used here (deskie-api-stats.txt, "Caching"). */
const TABLE_MS: Readonly<Record<Kind, number>> = {
  today: 5 * MINUTE,
  yesterday: DAY,
  this_week: DAY,
  this_month: DAY,
  last_24_hours: 5 * MINUTE,
  custom_short: HOUR,
  custom_long: DAY,
};

interface DayQuery {
  readonly url: string;
  readonly kind: Kind;
}

/** A custom range's bound as the proxy sends it to Deskie (explicit offset), so the simulator's cache, keyed by what it is sent, can be looked up by it. */
const at = (localTime: string): string => encodeURIComponent(`${localTime} +0100`);

/** The 40 queries: the three endpoints, the everyday periods and some custom ranges. */
export function queries(): DayQuery[] {
  const periods = ['today', 'yesterday', 'this_week', 'this_month', 'last_24_hours'] as const;
  const list: DayQuery[] = [];
  for (const group of [1, 2, 3]) {
    for (const period of periods) list.push({ url: `/api/stats_leaderboard.json?period=${period}&group_id=${group}`, kind: period });
  }
  list.push({ url: `/api/stats_leaderboard.json?from_time=${at('2026-11-28 09:00:00')}&to_time=${at('2026-11-28 18:00:00')}`, kind: 'custom_short' });
  list.push({ url: `/api/stats_leaderboard.json?from_time=${at('2026-11-01 00:00:00')}&to_time=${at('2026-11-15 00:00:00')}`, kind: 'custom_long' });
  for (const filter of ['', '&rating=low']) {
    for (const period of periods) list.push({ url: `/api/stats_satisfaction.json?period=${period}${filter}`, kind: period });
  }
  list.push({ url: `/api/stats_satisfaction.json?from_time=${at('2026-11-01 00:00:00')}&to_time=${at('2026-11-20 00:00:00')}`, kind: 'custom_long' });
  for (const filter of ['', '&staff_id=42047']) {
    for (const period of periods) list.push({ url: `/api/stats_staff_statuses.json?period=${period}${filter}`, kind: period });
  }
  list.push({ url: `/api/stats_staff_statuses.json?from_time=${at('2026-11-27 08:00:00')}&to_time=${at('2026-11-27 20:00:00')}`, kind: 'custom_short' });
  list.push({ url: `/api/stats_staff_statuses.json?from_time=${at('2026-11-10 00:00:00')}&to_time=${at('2026-11-25 00:00:00')}`, kind: 'custom_long' });
  return list;
}

/** The i-th exploring query: a two-hour range of its own earlier in the year, a one-format leaderboard answer. */
export function exploringQuery(index: number): string {
  const from = Date.parse('2026-01-01T00:00:00Z') / 1000 + 60 * index;
  return `/api/stats_leaderboard.json?from_time=${from}&to_time=${from + 7200}`;
}

interface Window {
  readonly key: string;
  /** When the window began: the change before it (never, for rolling and fixed periods). */
  readonly startsAtMs: number;
  readonly endsAtMs: number;
}

/** The proxy's default REFRESH_MARGIN_MS: a window's first answer is fetched this long after the change, not before. */
const REFRESH_MARGIN_MS = 1_000;

/** Windows change only at a midnight, on a whole minute: each kind's is worked out once a minute rather than for every poll. */
const windowsByMinute = new Map<string, Window>();

/** Which window a query means at `atMs`, and when that changes; computed here, independently of the proxy. */
function windowAt(kind: Kind, atMs: number): Window {
  const minute = `${kind}@${Math.floor(atMs / MINUTE)}`;
  let window = windowsByMinute.get(minute);
  if (window === undefined) windowsByMinute.set(minute, (window = periodWindow(kind, atMs)));
  return window;
}

function periodWindow(kind: Kind, atMs: number): Window {
  const at = DateTime.fromMillis(atMs, { zone: ZONE });
  const day = (offset: number) => at.plus({ days: offset }).startOf('day');
  switch (kind) {
    case 'today':
      return { key: day(0).toISODate() ?? '', startsAtMs: day(0).toMillis(), endsAtMs: day(1).toMillis() };
    case 'yesterday':
      return { key: day(-1).toISODate() ?? '', startsAtMs: day(0).toMillis(), endsAtMs: day(1).toMillis() };
    case 'this_week':
      return { key: at.startOf('week').toISODate() ?? '', startsAtMs: at.startOf('week').toMillis(), endsAtMs: at.plus({ weeks: 1 }).startOf('week').toMillis() };
    case 'this_month':
      return { key: at.startOf('month').toISODate() ?? '', startsAtMs: at.startOf('month').toMillis(), endsAtMs: at.plus({ months: 1 }).startOf('month').toMillis() };
    default:
      // Rolling or fixed: the window never changes its meaning.
      return { key: kind, startsAtMs: Number.NEGATIVE_INFINITY, endsAtMs: Number.POSITIVE_INFINITY };
  }
}

export interface AgeSummary {
  readonly kind: Kind;
  readonly lifetimeS: number;
  readonly maxS: number;
  readonly p99S: number;
  readonly meanS: number;
}

/** Ages in whole seconds (the Age header), counted per kind: a day's 432,000 answers in a few hundred counters. */
class AgeTally {
  readonly #counts = new Map<Kind, Map<number, number>>();

  add(kind: Kind, ageS: number): void {
    let counts = this.#counts.get(kind);
    if (counts === undefined) this.#counts.set(kind, (counts = new Map()));
    counts.set(ageS, (counts.get(ageS) ?? 0) + 1);
  }

  summary(): AgeSummary[] {
    return [...this.#counts].map(([kind, counts]) => {
      let total = 0;
      let sum = 0;
      for (const [age, n] of counts) {
        total += n;
        sum += age * n;
      }
      return { kind, lifetimeS: TABLE_MS[kind] / 1000, maxS: Math.max(...counts.keys()), p99S: percentileOf(counts, 99), meanS: sum / total };
    });
  }
}

export interface DayReport {
  readonly polls: number;
  /** Upstream calls for the dashboards' polls, exploring excluded. */
  readonly calls: number;
  readonly minimumCalls: number;
  readonly refreshCalls: number;
  readonly waits: number;
  readonly firstPolls: number;
  /** Distinct queries the dashboards show: only the very first poll of each need wait on Deskie. */
  readonly queriesShown: number;
  /** New windows whose first poll came within REFRESH_MARGIN_MS of the change, before their first answer was due. */
  readonly firstPollsInMargin: number;
  readonly staleAnswers: number;
  /** Answers from an expired entry while its refresh was under way (stale-while-revalidate). */
  readonly revalidating: number;
  /** The Age of the answers served, in s, per kind of period, with Deskie's lifetime for it. */
  readonly ages: readonly AgeSummary[];
  /** Calls Deskie answered with numbers it had already given (its cache had not expired). */
  readonly wastedCalls: number;
  readonly plainCalls: number;
  readonly plainWrongWindow: number;
  readonly exploringQueries: number;
  readonly exploringMinutes: number;
  /** Exploring answers that were not a 200 from a call to Deskie. */
  readonly exploringFailures: number;
  /** The store once exploring is done: full, and evicting. */
  readonly entries: number;
  readonly storeBytes: number;
  /** The proxy's peak RSS (VmHWM) once it listens, and at the end of the day, in bytes. */
  readonly startRss: number;
  readonly peakRss: number;
}

interface Health {
  readonly entries: number;
  readonly bytes: number;
  readonly upstream: { readonly inFlight: number; readonly queued: number; readonly callsLeftThisMinute: number };
}

/**
 * day-proxy.ts as JavaScript beside the compiled proxy (dist/bench/, its
 * imports of src/ pointed at dist/), so that its process runs Node as
 * `npm start` does: under tsx, the loader's own thread would add some 35 MiB
 * to the RSS measured.
 */
function compileDayProxy(): string {
  const { outputText } = ts.transpileModule(readFileSync('bench/day-proxy.ts', 'utf8'), {
    compilerOptions: { module: ts.ModuleKind.ESNext, target: ts.ScriptTarget.ES2023 },
  });
  mkdirSync('dist/bench', { recursive: true });
  writeFileSync('dist/bench/day-proxy.js', outputText.replaceAll("from '../src/", "from '../"));
  return 'dist/bench/day-proxy.js';
}

/**
 * day-proxy.ts as its own process, started as `npm start` starts the server
 * (its Node flags, and `extraFlags`), pinned to the servers' core and ready when this returns.
 */
export async function startDayProxy(
  deskieUrl: string, cacheMaxBytes: number, env: Record<string, string> = {}, core = SERVER_CORE, extraFlags: readonly string[] = [],
): Promise<{ proxy: Child; url: string }> {
  const port = await freePort();
  const { nodeFlags } = startCommand();
  const proxy = await startChild(
    ...pinned(core, process.execPath, [...nodeFlags, ...extraFlags, compileDayProxy()]),
    {
      PORT: String(port),
      HOST: '127.0.0.1',
      NODE_ENV: 'production',
      NODE_OPTIONS: '',
      DESKIE_URL: deskieUrl,
      DESKIE_TIMEZONE: ZONE,
      CACHE_KEY_SECRET: 'bench-secret-of-16-bytes',
      CACHE_MAX_BYTES: String(cacheMaxBytes),
      ...env,
    },
    answers(`http://127.0.0.1:${port}/healthz`),
  );
  return { proxy, url: `http://127.0.0.1:${port}` };
}

export interface DayOptions {
  /** The day's first hours only (a smoke run: the exploring needs half an hour at 64 MiB). */
  readonly hours?: number;
  /** Whether people explore distinct queries besides the dashboards (the entries-per-MiB measure); default true. */
  readonly explore?: boolean;
  /** The proxy's environment besides the day's (BENCH_REFRESH_MARGIN_MS replays refresh-ahead). */
  readonly proxyEnv?: Record<string, string>;
  /** Another client of the account warms Deskie's cache at random moments (the simulator's foreignClient knob). */
  readonly foreignClient?: boolean;
  /** Dashboards of three panels each over the 40 queries (default 50: each query on three or four). */
  readonly dashboards?: number;
  /** The proxy's core: a day that reports only counts may run beside the load, off the measured servers' core. */
  readonly core?: number;
}

/** The day at `cacheMaxBytes`. */
export async function dashboardDay(
  cacheMaxBytes: number,
  { hours = 24, explore: exploring = true, proxyEnv = {}, foreignClient = false, dashboards = DASHBOARDS, core = SERVER_CORE }: DayOptions = {},
): Promise<DayReport> {
  let nowMs = START.toMillis();
  // Deskie's own rate limit (1,500 a minute) on the day's clock; the proxy keeps its default budget below it.
  const simulator = await startSimulator({ clock: () => nowMs, timezone: ZONE, knobs: { foreignClient } });
  const { proxy, url } = await startDayProxy(simulator.url, cacheMaxBytes, { BENCH_START_MS: String(nowMs), ...proxyEnv }, core);
  // Dashboards start their polls spread over the interval, as real ones do.
  const spacingMs = POLL_INTERVAL_MS / dashboards;
  const startRss = peakRss(proxy.pid);

  /** A request at the day's current time, or at `atMs`. */
  const get = (path: string, atMs = nowMs) => request(`${url}${path}`, { headers: { authorization: DEMO_AUTHORIZATION, [CLOCK_HEADER]: String(atMs) } });
  const health = async (): Promise<Health> => (await (await get('/healthz')).body.json()) as Health;
  /** Waits, request by request (never by the clock), until no call to Deskie is in flight or queued. */
  const settle = async (): Promise<void> => {
    for (;;) {
      const { upstream } = await health();
      if (upstream.inFlight === 0 && upstream.queued === 0) return;
    }
  };

  const exploringQueries = exploring ? Math.round((EXPLORING_QUERIES_PER_MIB * cacheMaxBytes) / 1024 / 1024) : 0;
  let explored = 0;
  let exploringCalls = 0;
  let exploringFailures = 0;
  let exploringEndMs = nowMs;
  let store = { entries: 0, bytes: 0 };
  /** Asks distinct exploring queries while the budget has calls left this minute beyond the dashboards' margin. */
  const explore = async (): Promise<void> => {
    const { upstream } = await health();
    const end = Math.min(exploringQueries, explored + Math.max(0, upstream.callsLeftThisMinute - DASHBOARD_CALLS_MARGIN));
    while (explored < end) {
      const batch = Array.from({ length: Math.min(EXPLORING_CONCURRENCY, end - explored) }, () => exploringQuery(explored++));
      await Promise.all(
        batch.map(async (path) => {
          const answer = await get(path);
          await answer.body.dump();
          if (answer.statusCode === 200 && String(answer.headers['cache-status']).includes('fwd=miss')) exploringCalls += 1;
          else exploringFailures += 1;
        }),
      );
    }
    if (explored === exploringQueries) {
      exploringEndMs = nowMs;
      const { entries, bytes } = await health();
      store = { entries, bytes };
    }
  };

  const all = queries();
  const panels = Array.from({ length: dashboards }, (_, dashboard) =>
    Array.from({ length: PANELS }, (_, panel) => all[(dashboard * PANELS + panel) % all.length] as DayQuery),
  );
  // The bench's own accounts: the fewest calls (a call only when the query's
  // window or freshness has run out), each window's first poll, and a plain
  // TTL cache keyed by URL.
  const ideal = new Map<string, { key: string; freshUntilMs: number }>();
  const firstSeen = new Set<string>();
  const pollsInMargin = new Set<string>();
  const plain = new Map<string, { key: string; fetchedAtMs: number }>();
  let minimumCalls = 0;
  let plainCalls = 0;
  let plainWrongWindow = 0;
  let polls = 0;
  let waits = 0;
  let fetchedByClients = 0;
  let staleAnswers = 0;
  let revalidating = 0;
  const ages = new AgeTally();
  /**
   * Seconds since Deskie computed the numbers of an answer the proxy got `ageS` whole seconds ago (its Age): the
   * query's last compute at or before that call. Age alone counts from the call, which a call inside Deskie's cache
   * period makes younger than its numbers. The simulator forgets a query beyond its 10,000 most recently asked (the
   * exploring asks 19,200), so the computes of the dashboards' queries are kept here as each poll sees them.
   */
  const computedAt = new Map<string, number[]>();
  /**
   * A refresh is timed from when it was due, and on the day's clock it runs at the next poll (0.6 s later at most with 50
   * dashboards, 2.1 s with 14), while
   * Deskie computes when the call arrives: the compute may follow the time the Age counts from by that much. A query's
   * computes are a lifetime (5 minutes or more) apart, so a few seconds' slack cannot pick a later one.
   */
  const CALL_TIME_SLACK_MS = 5_000;
  /**
   * When each query's computes were last looked up: every compute up to then is known (the day is sequential, so the
   * calls an answer came from have ended), and a lookup is needed only for an answer from a later call.
   */
  const lookedUpAtMs = new Map<string, number>();
  const computeAgeS = (path: string, atMs: number, calledBy: number): number => {
    const known = computedAt.get(path) ?? [];
    computedAt.set(path, known);
    if ((lookedUpAtMs.get(path) ?? -Infinity) < calledBy + CALL_TIME_SLACK_MS) {
      lookedUpAtMs.set(path, Math.max(atMs, lookedUpAtMs.get(path) ?? -Infinity));
      for (const { computedAtMs } of simulator.computes(path).computes) if (computedAtMs > (known.at(-1) ?? -Infinity)) known.push(computedAtMs);
    }
    for (let i = known.length - 1; i >= 0; i--) {
      const computedAtMs = known[i] as number;
      if (computedAtMs <= calledBy + CALL_TIME_SLACK_MS) return Math.floor((atMs - computedAtMs) / 1000);
    }
    throw new Error(`${path} at ${new Date(atMs).toISOString()}: no compute of Deskie's before the proxy's call at ${new Date(calledBy).toISOString()}`);
  };
  /**
   * The earliest refresh the proxy had scheduled when it answered (+Infinity for none). A group of polls only adds
   * refreshes, a lifetime ahead, so the least of its answers' is the proxy's after it.
   */
  let nextDueMs = Number.POSITIVE_INFINITY;
  /** A dashboard's polls at `atMs`: it asks for its panels at once, as a browser does. */
  const poll = (shown: readonly DayQuery[], atMs: number) =>
    Promise.all(
      shown.map(async (query) => {
        const answer = await get(query.url, atMs);
        const body = await answer.body.text();
        if (answer.statusCode !== 200) throw new Error(`${query.url} at ${new Date(atMs).toISOString()}: ${answer.statusCode} ${body}`);
        // Last-Modified is when the proxy got the answer, whatever the clock when this request was handled.
        ages.add(query.kind, computeAgeS(query.url, atMs, Date.parse(String(answer.headers['last-modified']))));
        nextDueMs = Math.min(nextDueMs, Number(answer.headers[NEXT_DUE_HEADER]));
        return String(answer.headers['cache-status']);
      }),
    );
  /** Counts a group of polls by how they were answered; whether any waited on Deskie. */
  const count = (cacheStatuses: readonly string[]): boolean => {
    polls += cacheStatuses.length;
    let waited = false;
    for (const cacheStatus of cacheStatuses) {
      if (/detail=/.test(cacheStatus)) staleAnswers += 1;
      else if (/; revalidating/.test(cacheStatus)) revalidating += 1;
      else if (!/; hit;/.test(cacheStatus)) {
        waits += 1;
        waited = true;
        if (/; stored/.test(cacheStatus) || !/collapsed/.test(cacheStatus)) fetchedByClients += 1;
      }
    }
    return waited;
  };
  /**
   * Quiet polls (none of their panels due a call by Deskie's table, none at or past the proxy's next scheduled refresh
   * less REFRESH_MARGIN_MS) can only be hits, at any instant of their span: they are sent together, each with its own
   * time, up to QUIET_BATCH dashboards at once. Any other poll goes alone, once those before it are answered.
   */
  let quiet: Array<{ shown: readonly DayQuery[]; atMs: number }> = [];
  let quietUntilMs = Number.NEGATIVE_INFINITY;
  const flush = async (): Promise<void> => {
    if (quiet.length === 0) return;
    const batch = quiet;
    quiet = [];
    // Deskie's clock at the batch's first poll: a call none expects would be recorded no later than the proxy made it.
    nowMs = (batch[0] as { atMs: number }).atMs;
    nextDueMs = Number.POSITIVE_INFINITY;
    if (count((await Promise.all(batch.map(({ shown, atMs }) => poll(shown, atMs)))).flat())) await settle();
    quietUntilMs = nextDueMs - REFRESH_MARGIN_MS;
  };
  let wastedCalls: number | undefined;
  let peak: number;

  try {
    for (let tick = 0; tick * POLL_INTERVAL_MS < hours * HOUR; tick++) {
      for (let dashboard = 0; dashboard < dashboards; dashboard++) {
        const atMs = START.toMillis() + tick * POLL_INTERVAL_MS + dashboard * spacingMs;
        const shown = panels[dashboard] ?? [];
        let due = atMs >= quietUntilMs;
        for (const query of shown) {
          const window = windowAt(query.kind, atMs);
          const held = ideal.get(query.url);
          if (held === undefined || held.key !== window.key || atMs >= held.freshUntilMs) {
            due = true;
            minimumCalls += 1;
            ideal.set(query.url, { key: window.key, freshUntilMs: Math.min(atMs + TABLE_MS[query.kind], window.endsAtMs) });
          }
          const seen = `${query.url}@${window.key}`;
          // Not the query's very first poll, but within the margin after its window changed: its first answer is not yet due.
          if (firstSeen.size > 0 && !firstSeen.has(seen) && atMs - window.startsAtMs < REFRESH_MARGIN_MS) pollsInMargin.add(seen);
          firstSeen.add(seen);
          const cached = plain.get(query.url);
          if (cached !== undefined && atMs < cached.fetchedAtMs + PLAIN_TTL_MS) {
            if (cached.key !== window.key) plainWrongWindow += 1;
          } else {
            plainCalls += 1;
            plain.set(query.url, { key: window.key, fetchedAtMs: atMs });
          }
        }
        if (!due) {
          quiet.push({ shown, atMs });
          if (quiet.length >= QUIET_BATCH) await flush();
          continue;
        }
        await flush();
        nowMs = atMs;
        // Deskie answers in well under the time between two polls: a fetch or refresh a poll started lands before the
        // clock moves on.
        nextDueMs = Number.POSITIVE_INFINITY;
        if (count(await poll(shown, atMs))) await settle();
        quietUntilMs = nextDueMs - REFRESH_MARGIN_MS;
      }
      if (explored < exploringQueries) {
        await flush();
        // At the tick's last poll, as the dashboards left it.
        nowMs = START.toMillis() + tick * POLL_INTERVAL_MS + (dashboards - 1) * spacingMs;
        await explore();
      }
    }
    await flush();
    wastedCalls = simulator.cacheReport().wastedCalls;
  } finally {
    peak = peakRss(proxy.pid);
    await proxy.stop();
    await simulator.close();
  }
  const calls = simulator.calls - exploringCalls;
  return {
    polls,
    calls,
    minimumCalls,
    refreshCalls: calls - fetchedByClients,
    waits,
    firstPolls: firstSeen.size,
    queriesShown: new Set(panels.flat().map((query) => query.url)).size,
    firstPollsInMargin: pollsInMargin.size,
    staleAnswers,
    revalidating,
    ages: ages.summary(),
    wastedCalls: wastedCalls ?? Number.NaN,
    plainCalls,
    plainWrongWindow,
    exploringQueries,
    exploringMinutes: (exploringEndMs - START.toMillis()) / MINUTE,
    exploringFailures,
    entries: store.entries,
    storeBytes: store.bytes,
    startRss,
    peakRss: peak,
  };
}
