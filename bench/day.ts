/**
 * A simulated dashboard day (`npm run bench -- --only day`): 50 dashboards
 * poll 40 queries every 30 s for 24 hours of the injected clock, crossing a
 * midnight and a week end in Europe/Berlin, with no real waiting. The proxy
 * runs in this process (its clock must be the bench's), against a simulator
 * on the same clock.
 *
 * What it reports is measured against numbers the bench computes on its own
 * from Deskie's period table, not with the proxy's code: the fewest upstream
 * calls a cache can make (one per query per freshness window), the polls that
 * are the first of their window, and what a plain TTL cache keyed by URL would
 * have answered from the wrong window.
 */
import { DateTime } from 'luxon';
import { buildApp } from '../src/app.js';
import { loadConfig } from '../src/config/config.js';
import { startSimulator } from '../src/simulator/index.js';
import { DEMO_AUTHORIZATION } from './lib.js';

const ZONE = 'Europe/Berlin';
/** Sunday morning in Berlin (at no round minute, as dashboards start): the day crosses midnight into Monday, a new week. */
const START = DateTime.fromISO('2026-11-29T06:03:17', { zone: ZONE });
const DAY_MS = 24 * 60 * 60 * 1000;
const POLL_INTERVAL_MS = 30_000;
const DASHBOARDS = 50;
/** Panels a dashboard shows; each is one of the 40 queries. */
const PANELS = 3;
/** Dashboards start their polls spread over the interval, as real ones do. */
const DASHBOARD_SPACING_MS = POLL_INTERVAL_MS / DASHBOARDS;
const PLAIN_TTL_MS = 5 * 60 * 1000;
/** The proxy's default REFRESH_AHEAD. */
const REFRESH_AHEAD = 0.1;

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

/** The 40 queries: the three endpoints, the everyday periods and some custom ranges. */
function queries(): DayQuery[] {
  const periods = ['today', 'yesterday', 'this_week', 'this_month', 'last_24_hours'] as const;
  const list: DayQuery[] = [];
  for (const group of [1, 2, 3]) {
    for (const period of periods) list.push({ url: `/api/stats_leaderboard.json?period=${period}&group_id=${group}`, kind: period });
  }
  list.push({ url: '/api/stats_leaderboard.json?from_time=2026-11-28%2009:00&to_time=2026-11-28%2018:00', kind: 'custom_short' });
  list.push({ url: '/api/stats_leaderboard.json?from_time=2026-11-01&to_time=2026-11-15', kind: 'custom_long' });
  for (const filter of ['', '&rating=low']) {
    for (const period of periods) list.push({ url: `/api/stats_satisfaction.json?period=${period}${filter}`, kind: period });
  }
  list.push({ url: '/api/stats_satisfaction.json?from_time=2026-11-01&to_time=2026-11-20', kind: 'custom_long' });
  for (const filter of ['', '&staff_id=42047']) {
    for (const period of periods) list.push({ url: `/api/stats_staff_statuses.json?period=${period}${filter}`, kind: period });
  }
  list.push({ url: '/api/stats_staff_statuses.json?from_time=2026-11-27%2008:00&to_time=2026-11-27%2020:00', kind: 'custom_short' });
  list.push({ url: '/api/stats_staff_statuses.json?from_time=2026-11-10&to_time=2026-11-25', kind: 'custom_long' });
  return list;
}

/** Which window a query means at `atMs`, and when that changes; computed here, independently of the proxy. */
function windowAt(kind: Kind, atMs: number): { readonly key: string; readonly endsAtMs: number } {
  const at = DateTime.fromMillis(atMs, { zone: ZONE });
  const day = (offset: number) => at.plus({ days: offset }).startOf('day');
  switch (kind) {
    case 'today':
      return { key: day(0).toISODate() ?? '', endsAtMs: day(1).toMillis() };
    case 'yesterday':
      return { key: day(-1).toISODate() ?? '', endsAtMs: day(1).toMillis() };
    case 'this_week':
      return { key: at.startOf('week').toISODate() ?? '', endsAtMs: at.plus({ weeks: 1 }).startOf('week').toMillis() };
    case 'this_month':
      return { key: at.startOf('month').toISODate() ?? '', endsAtMs: at.plus({ months: 1 }).startOf('month').toMillis() };
    default:
      // Rolling or fixed: the window never changes its meaning.
      return { key: kind, endsAtMs: Number.POSITIVE_INFINITY };
  }
}

export interface DayReport {
  readonly polls: number;
  readonly calls: number;
  readonly minimumCalls: number;
  readonly refreshCalls: number;
  readonly waits: number;
  readonly firstPolls: number;
  readonly staleAnswers: number;
  readonly plainCalls: number;
  readonly plainWrongWindow: number;
  readonly seconds: number;
}

export async function dashboardDay(): Promise<DayReport> {
  const startedAt = performance.now();
  let nowMs = START.toMillis();
  const clock = () => nowMs;
  const simulator = await startSimulator({ clock, timezone: ZONE });
  const config = loadConfig({ DESKIE_URL: simulator.url, DESKIE_TIMEZONE: ZONE, CACHE_KEY_SECRET: 'bench-secret-of-16-bytes' });
  const app = buildApp({ ...config, deskieUrl: simulator.url }, { clock });
  await app.ready();

  /** Waits, turn by turn of the event loop (never by the clock), until no call to Deskie is in flight or queued. */
  const settle = async (): Promise<void> => {
    for (;;) {
      const { upstream } = (await app.inject({ url: '/healthz' })).json() as { upstream: { inFlight: number; queued: number } };
      if (upstream.inFlight === 0 && upstream.queued === 0) return;
      await new Promise((resolve) => setImmediate(resolve));
    }
  };

  const all = queries();
  const panels = Array.from({ length: DASHBOARDS }, (_, dashboard) =>
    Array.from({ length: PANELS }, (_, panel) => all[(dashboard * PANELS + panel) % all.length] as DayQuery),
  );
  // The bench's own accounts: the fewest calls (a call only when the query's
  // window or freshness has run out), each window's first poll, and a plain
  // TTL cache keyed by URL.
  const ideal = new Map<string, { key: string; freshUntilMs: number }>();
  const firstSeen = new Set<string>();
  const plain = new Map<string, { key: string; fetchedAtMs: number }>();
  let minimumCalls = 0;
  let plainCalls = 0;
  let plainWrongWindow = 0;
  let polls = 0;
  let waits = 0;
  let fetchedByClients = 0;
  let staleAnswers = 0;

  try {
    for (let tick = 0; tick * POLL_INTERVAL_MS < DAY_MS; tick++) {
      for (let dashboard = 0; dashboard < DASHBOARDS; dashboard++) {
        nowMs = START.toMillis() + tick * POLL_INTERVAL_MS + dashboard * DASHBOARD_SPACING_MS;
        let waited = false;
        for (const query of panels[dashboard] ?? []) {
          const window = windowAt(query.kind, nowMs);
          const held = ideal.get(query.url);
          if (held === undefined || held.key !== window.key || nowMs >= held.freshUntilMs) {
            minimumCalls += 1;
            ideal.set(query.url, { key: window.key, freshUntilMs: Math.min(nowMs + TABLE_MS[query.kind], window.endsAtMs) });
          }
          firstSeen.add(`${query.url}@${window.key}`);
          const cached = plain.get(query.url);
          if (cached !== undefined && nowMs < cached.fetchedAtMs + PLAIN_TTL_MS) {
            if (cached.key !== window.key) plainWrongWindow += 1;
          } else {
            plainCalls += 1;
            plain.set(query.url, { key: window.key, fetchedAtMs: nowMs });
          }

          const answer = await app.inject({ url: query.url, headers: { authorization: DEMO_AUTHORIZATION } });
          polls += 1;
          const status = String(answer.headers['cache-status']);
          if (answer.statusCode !== 200) throw new Error(`${query.url} at ${new Date(nowMs).toISOString()}: ${answer.statusCode} ${answer.body}`);
          if (/detail=/.test(status)) staleAnswers += 1;
          else if (/; hit;/.test(status)) {
            // A hit in the last tenth of its lifetime started a refresh.
            const ttl = Number(/ttl=(\d+)/.exec(status)?.[1]);
            const maxAge = Number(/max-age=(\d+)/.exec(String(answer.headers['cache-control']))?.[1]);
            if (ttl <= maxAge * REFRESH_AHEAD) waited = true;
          } else {
            waits += 1;
            waited = true;
            if (/; stored/.test(status) || !/collapsed/.test(status)) fetchedByClients += 1;
          }
        }
        // Deskie answers in well under the time between two polls: a fetch
        // or refresh a poll started lands before the clock moves on.
        if (waited) await settle();
      }
    }
  } finally {
    await app.close();
    await simulator.close();
  }
  return {
    polls,
    calls: simulator.calls,
    minimumCalls,
    refreshCalls: simulator.calls - fetchedByClients,
    waits,
    firstPolls: firstSeen.size,
    staleAnswers,
    plainCalls,
    plainWrongWindow,
    seconds: (performance.now() - startedAt) / 1000,
  };
}
