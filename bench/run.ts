/**
 * `npm run bench`: measures the proxy against baselines measured in the same
 * run, so the figures are ratios that survive a noisy machine. The proxy and
 * the baselines run as their own processes, pinned to core 0 with taskset
 * where there is one and two cores. The load of the hit path and the peer
 * comes from a generator process on core 1 (wrk when installed, else
 * autocannon's CLI; BENCH_GENERATOR=autocannon forces it), the stampede's from
 * bench/stampede-client.ts there. This process hosts the Deskie simulator,
 * which counts upstream calls, and loads the miss mix (autocannon) and the
 * dashboard day (day.ts) itself, from core 1 too.
 *
 *   npm run bench                        every scenario, results to docs/benchmarks.md
 *   npm run bench -- --only hit,stampede some of them (hit, stampede, mix, peer, day)
 *   npm run bench -- --duration 5        seconds per side and format of the hit path, in 10 rounds (default 10)
 *   npm run bench -- --only hit --profile    also one profiled round per side and format: self time per function
 *   npm run bench -- --only day --cache-mib 128   the dashboard day's memory at another CACHE_MAX_BYTES (default 64)
 *   npm run bench -- --only day --hours 1         the day's first hour only (default 24)
 *   npm run bench -- --only memory --memory-mib 64   memory at the budget's pace at another CACHE_MAX_BYTES (default 2; 25 s a MiB)
 *   npm run bench -- --only push         10,000 event streams on one query, one change pushed to all (push.ts, push-client.ts)
 */
import { execFileSync } from 'node:child_process';
import { chmodSync, existsSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { cpus, tmpdir, totalmem } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { request } from 'undici';
import { startSimulator, type Simulator } from '../src/simulator/index.js';
import { type AgeSummary, dashboardDay, DASHBOARDS, type DayReport, POLL_INTERVAL_MS } from './day.js';
import { memoryAtBudgetPace } from './memory.js';
import { COLD_STREAMS, PUSH_QUERY, PUSH_STREAMS, pushToStreams } from './push.js';
import { generate, GENERATOR, stampedeLoad } from './generator.js';
import {
  answers, cpuSeconds, DEMO_AUTHORIZATION, freePort, GENERATOR_CORE, loadPaths, type LoadResult, mib, pin, pinned, PINNING, pooledPercentile,
  SERVER_CORE, startChild, startCommand, type Child,
} from './lib.js';
import { formatSelfTimes, monotonicMicros, profiling, selfTimes } from './profile.js';

const SCENARIOS = ['hit', 'stampede', 'mix', 'peer', 'day', 'memory', 'push'] as const;
type Scenario = (typeof SCENARIOS)[number];

/** Enough to keep the server's core busy (docs/benchmarks.md says why not 100). */
const HIT_CONNECTIONS = 50;
const HIT_QUERY = '/api/stats_leaderboard.json?period=this_month';
/** The default format and Deskie's own body, each against a baseline that serves what the proxy served for it. */
const HIT_FORMATS = [
  { name: 'normalized', format: 'normalized', query: HIT_QUERY },
  { name: 'format=raw', format: 'raw', query: `${HIT_QUERY}&format=raw` },
] as const;
type HitFormat = (typeof HIT_FORMATS)[number];
const HIT_ROUNDS = 10;
/** Load before a side's first round, so the rounds measure a warmed-up server rather than V8 still compiling it (docs/benchmarks.md). */
const WARM_UP_SECONDS = 5;
const STAMPEDE_REQUESTS = 1_000;
const STAMPEDE_UPSTREAM_LATENCY_MS = 200;
const STAMPEDE_TARGET_P99_MS = STAMPEDE_UPSTREAM_LATENCY_MS + 100;
const MIX_REQUESTS = 10_000;
const MIX_QUERIES = 1_000;
const MIX_UPSTREAM_LATENCY_MS = 20;
/** Peak RSS may exceed CACHE_MAX_BYTES by this much: Node, the proxy's code and its working memory. */
const RSS_ALLOWANCE_BYTES = 150 * 1024 * 1024;
/** One-format leaderboard answers a MiB of cache must hold: 15,000 in 64 MiB. */
const TARGET_ENTRIES_PER_MIB = 15_000 / 64;

const BENCHMARKS_FILE = 'docs/benchmarks.md';
const RESULTS_START = '<!-- results: written by npm run bench -->';
const RESULTS_END = '<!-- /results -->';

const TARGET_HIT_RPS_RATIO = 0.8;
const TARGET_HIT_CPU_RATIO = 1.25;
const TARGET_HIT_P99_RATIO = 1.25;

interface Row {
  readonly scenario: string;
  readonly measure: string;
  readonly result: string;
  readonly target: string;
  readonly met: boolean | null;
  readonly command: string;
}

const DEFAULTS = { duration: '10', 'cache-mib': '64', hours: '24', 'memory-mib': '2' };
const { values: args } = parseArgs({
  options: {
    only: { type: 'string' },
    duration: { type: 'string', default: DEFAULTS.duration },
    'cache-mib': { type: 'string', default: DEFAULTS['cache-mib'] },
    'memory-mib': { type: 'string', default: DEFAULTS['memory-mib'] },
    hours: { type: 'string', default: DEFAULTS.hours },
    profile: { type: 'boolean', default: false },
  },
});
const only = new Set((args.only?.split(',') ?? SCENARIOS) as Scenario[]);
const durationSeconds = Number(args.duration);
const roundSeconds = Math.max(1, Math.round(durationSeconds / HIT_ROUNDS));
const DAY_CACHE_BYTES = Number(args['cache-mib']) * 1024 * 1024;
const MEMORY_CACHE_BYTES = Number(args['memory-mib']) * 1024 * 1024;
const command = (scenario: Scenario) => `npm run bench -- --only ${scenario}`;

/** A server under test: its process (whose CPU time is read) and where it listens. */
interface Server {
  readonly child: Child;
  readonly url: string;
}

/**
 * The compiled proxy, pointed at the simulator, on the server core, started
 * as `npm start` starts it; NODE_OPTIONS is emptied so that no other flag
 * reaches it. It logs as in production: one access line per request at info.
 */
async function startProxy(simulator: Simulator, env: Record<string, string> = {}, profileFlags: string[] = []): Promise<Server> {
  const port = await freePort();
  const url = `http://127.0.0.1:${port}`;
  const { nodeFlags, script } = startCommand();
  const child = await startChild(
    ...pinned(SERVER_CORE, process.execPath, [...nodeFlags, ...profileFlags, script]),
    // No drain delay on SIGTERM: stop() would wait it out for nothing.
    { PORT: String(port), HOST: '127.0.0.1', DESKIE_URL: simulator.url, NODE_ENV: 'production', SHUTDOWN_DRAIN_SECONDS: '0', NODE_OPTIONS: '', ...env },
    answers(`${url}/healthz`),
  );
  return { child, url };
}

/** The baseline route answering with a saved answer, on the server core, with the proxy's Node flags. */
async function startBaseline(answerFile: string, format: HitFormat, profileFlags: string[] = []): Promise<Server> {
  const port = await freePort();
  const url = `http://127.0.0.1:${port}`;
  const args = [...startCommand().nodeFlags, ...profileFlags, '--import', 'tsx', 'bench/baseline-server.ts', String(port), answerFile, format.format];
  const child = await startChild(...pinned(SERVER_CORE, process.execPath, args), { NODE_OPTIONS: '' }, answers(`${url}${format.query}`));
  return { child, url };
}

/** Headers the baseline's own HTTP stack writes, so they are not copied. */
const TRANSPORT_HEADERS = new Set(['date', 'connection', 'keep-alive', 'transfer-encoding', 'content-length']);

/**
 * Saves the proxy's answer as the generator will get it (the same request:
 * only an Authorization header, no Accept-Encoding), for the baseline to send.
 */
async function saveAnswer(url: string): Promise<string> {
  const answer = await request(url, { headers: { authorization: DEMO_AUTHORIZATION } });
  const body = Buffer.from(await answer.body.arrayBuffer());
  if (answer.statusCode !== 200) throw new Error(`${url} answered ${answer.statusCode}: ${body.toString()}`);
  const headers = Object.fromEntries(Object.entries(answer.headers).filter(([name]) => !TRANSPORT_HEADERS.has(name)));
  const file = join(mkdtempSync(join(tmpdir(), 'bench-')), 'answer.json');
  writeFileSync(file, JSON.stringify({ headers, body: body.toString('base64') }));
  return file;
}

/** One round of the generator against a server, with the server's CPU time per request and the round's span. */
interface Round extends LoadResult {
  readonly cpuMicros: number;
  readonly from: number;
  readonly to: number;
}

async function measure(server: Server, query: string, seconds: number): Promise<Round> {
  const cpuBefore = cpuSeconds(server.child.pid);
  const from = monotonicMicros();
  const result = await generate(`${server.url}${query}`, HIT_CONNECTIONS, seconds);
  const to = monotonicMicros();
  return { ...result, cpuMicros: ((cpuSeconds(server.child.pid) - cpuBefore) * 1e6) / result.requests, from, to };
}

async function hitPath(simulator: Simulator): Promise<Row[]> {
  const proxy = await startProxy(simulator);
  const rows: Row[] = [];
  const answerFiles = new Map<HitFormat, string>();
  let failures = 0;
  try {
    for (const format of HIT_FORMATS) {
      const answerFile = await saveAnswer(`${proxy.url}${format.query}`);
      answerFiles.set(format, answerFile);
      const baseline = await startBaseline(answerFile, format);
      try {
        for (const server of [baseline, proxy]) await measure(server, format.query, WARM_UP_SECONDS);
        // Interleaved rounds, so that drift on a shared machine hits both sides alike, each side first every other round.
        const base: Round[] = [];
        const proxied: Round[] = [];
        for (let round = 0; round < HIT_ROUNDS; round++) {
          const sides: [Server, Round[]][] = [[baseline, base], [proxy, proxied]];
          for (const [server, rounds] of round % 2 === 0 ? sides : sides.reverse()) rounds.push(await measure(server, format.query, roundSeconds));
        }
        rows.push(...hitRows(format, base, proxied));
        failures += proxied.reduce((sum, r) => sum + r.errors + r.non2xx, 0);
      } finally {
        await baseline.child.stop();
      }
    }
  } finally {
    await proxy.child.stop();
  }
  const calls = simulator.calls;
  rows.push(row('hit path', 'upstream calls, errors (both formats)', `${calls}, ${failures}`, '1, 0', calls === 1 && failures === 0, 'hit'));
  // After the count: a profiled proxy starts cold and asks upstream again.
  if (args.profile) {
    for (const [format, answerFile] of answerFiles) await profileHitPath(simulator, format, answerFile);
  }
  return rows;
}

function hitRows(format: HitFormat, base: Round[], proxied: Round[]): Row[] {
  const scenario = `hit path, ${format.name}`;
  const summary = (rounds: Round[]) =>
    `${fmt(median(rounds.map((r) => r.rps)))} req/s, p50 ${ms(median(rounds.map((r) => r.p50)))}, ` +
    `p99 ${ms(median(rounds.map((r) => r.p99)))}, CPU ${median(rounds.map((r) => r.cpuMicros)).toFixed(1)} µs/request`;
  /** The median of the per-round ratios proxy / baseline of one measure, and the rounds'. */
  const ratio = (of: (round: Round) => number) => {
    const ratios = proxied.map((p, i) => of(p) / of(base[i] ?? p));
    return { median: median(ratios), text: `${median(ratios).toFixed(2)}x (rounds: ${ratios.map((r) => r.toFixed(2)).join(', ')})` };
  };
  const rps = ratio((r) => r.rps);
  const cpu = ratio((r) => r.cpuMicros);
  const perRound = 'median of per-round ratios';
  // Each side's rounds pooled (wrk's histograms): a 2-s round's p99 is the slowest 1 % of some 20,000 requests, which
  // one pause of the machine decides; the pooled p99 reads every request of the interleaved rounds.
  const pooled = { proxy: pooledPercentile(proxied, 99), base: pooledPercentile(base, 99) };
  const perRoundP99 = ratio((r) => r.p99);
  const p99 = Number.isNaN(pooled.proxy / pooled.base)
    ? { ...perRoundP99, label: perRound }
    : {
        median: pooled.proxy / pooled.base,
        text: `${(pooled.proxy / pooled.base).toFixed(2)}x (${ms(pooled.proxy)} / ${ms(pooled.base)}; per round: ${perRoundP99.text})`,
        label: 'p99 of all the rounds pooled, each side',
      };
  const rounds = `median of ${HIT_ROUNDS} interleaved rounds, ${HIT_CONNECTIONS} connections`;
  return [
    row(scenario, `baseline: a Fastify route logging as the proxy does, with its server limits, same bytes and headers (${rounds})`, summary(base), 'baseline', null, 'hit'),
    row(scenario, `proxy, cached leaderboard (${rounds})`, summary(proxied), '', null, 'hit'),
    row(scenario, `req/s, proxy / baseline (${perRound})`, rps.text, `>= ${TARGET_HIT_RPS_RATIO}x`, rps.median >= TARGET_HIT_RPS_RATIO, 'hit'),
    row(scenario, `server CPU per request, proxy / baseline (${perRound})`, cpu.text, `<= ${TARGET_HIT_CPU_RATIO}x`, cpu.median <= TARGET_HIT_CPU_RATIO, 'hit'),
    row(scenario, `p99 latency, proxy / baseline (${p99.label})`, p99.text, `<= ${TARGET_HIT_P99_RATIO}x`, p99.median <= TARGET_HIT_P99_RATIO, 'hit'),
  ];
}

/** Fresh servers run with --cpu-prof for one round each; prints the functions with the most self time. */
async function profileHitPath(simulator: Simulator, format: HitFormat, answerFile: string): Promise<void> {
  const sides = [
    { name: 'baseline', profile: profiling(), start: (flags: string[]) => startBaseline(answerFile, format, flags) },
    { name: 'proxy', profile: profiling(), start: (flags: string[]) => startProxy(simulator, {}, flags) },
  ];
  for (const side of sides) {
    const server = await side.start(side.profile.flags);
    let round: Round;
    try {
      await measure(server, format.query, WARM_UP_SECONDS);
      round = await measure(server, format.query, roundSeconds);
    } finally {
      await server.child.stop(); // SIGTERM: Node writes the profile as it exits
    }
    const times = selfTimes(side.profile.dir, round.from, round.to);
    process.stdout.write(formatSelfTimes(`profile, ${side.name}, ${format.name}`, times, round.requests));
  }
}
async function stampede(simulator: Simulator): Promise<Row[]> {
  const proxy = await startProxy(simulator);
  // A fresh simulator's first answer takes some 40 ms more than the latency
  // it is set to (its data and code warming up): that is upstream time, so it
  // is spent before the stampede, on another key, and not counted as the proxy's.
  await (await request(`${simulator.url}/api/stats_leaderboard.json?period=last_month&group_id=1`, { headers: { authorization: DEMO_AUTHORIZATION } })).body.dump();
  simulator.set({ latencyMs: STAMPEDE_UPSTREAM_LATENCY_MS });
  try {
    // The same stampede on another cold key first: a process's very first
    // requests also pay for compiling its request path (about 100 ms more at
    // p99 here), which a server that has been up for a minute has done.
    await stampedeLoad(`${proxy.url}/api/stats_leaderboard.json?period=last_month&group_id=4241`, STAMPEDE_REQUESTS);
    const warmUpCalls = simulator.calls;
    const result = await stampedeLoad(`${proxy.url}/api/stats_leaderboard.json?period=last_month&group_id=4242`, STAMPEDE_REQUESTS);
    const errors = result.errors + result.non2xx;
    return [
      row(
        'stampede',
        `${STAMPEDE_REQUESTS} concurrent identical requests, cold key, ${STAMPEDE_UPSTREAM_LATENCY_MS} ms upstream`,
        `${simulator.calls - warmUpCalls} upstream call(s), p50 ${ms(result.p50)}, p99 ${ms(result.p99)}, ${errors} errors`,
        `1 upstream call, p99 <= ${STAMPEDE_TARGET_P99_MS} ms, 0 errors`,
        simulator.calls - warmUpCalls === 1 && result.p99 <= STAMPEDE_TARGET_P99_MS && errors === 0,
        'stampede',
      ),
    ];
  } finally {
    simulator.set({ latencyMs: 0 });
    await proxy.child.stop();
  }
}

/** 1,000 dashboard queries with a realistic mix of routes and periods. */
function mixQueries(): string[] {
  const periods = [
    ...Array(25).fill('period=today'),
    ...Array(10).fill('period=yesterday'),
    ...Array(10).fill('period=this_week'),
    ...Array(10).fill('period=last_7_days'),
    ...Array(15).fill('period=this_month'),
    ...Array(10).fill('period=last_month'),
    ...Array(5).fill('period=last_30_days'),
    ...Array(15).fill('from_time=2026-11-01&to_time=2026-11-15'),
  ] as string[];
  const routes = [
    ...Array(6).fill('/api/stats_leaderboard.json?group_id='),
    ...Array(3).fill('/api/stats_satisfaction.json?group_id='),
    '/api/stats_staff_statuses.json?staff_id=',
  ] as string[];
  return Array.from({ length: MIX_QUERIES }, (_, i) => `${routes[i % routes.length]}${i}&${periods[(i * 7) % periods.length]}`);
}

async function missMix(simulator: Simulator): Promise<Row[]> {
  const proxy = await startProxy(simulator);
  simulator.set({ latencyMs: MIX_UPSTREAM_LATENCY_MS });
  const queries = mixQueries();
  // Dashboards poll: every query is asked ten times, in a shuffled order each round.
  const order: string[] = [];
  let seed = 42;
  const random = () => ((seed = (seed * 1_103_515_245 + 12_345) % 2 ** 31) / 2 ** 31);
  for (let round = 0; round < MIX_REQUESTS / MIX_QUERIES; round++) {
    const shuffled = [...queries].sort(() => random() - 0.5);
    order.push(...shuffled);
  }
  try {
    const result = await loadPaths(proxy.url, MIX_REQUESTS, (i) => order[i % order.length] ?? '/');
    const hitRatio = 1 - simulator.calls / result.requests;
    return [
      row('miss mix', `${MIX_REQUESTS} requests over ${MIX_QUERIES} queries, ${MIX_UPSTREAM_LATENCY_MS} ms upstream`, `${simulator.calls} upstream calls, hit ratio ${(hitRatio * 100).toFixed(1)}%, p99 ${ms(result.p99)}, ${result.errors + result.non2xx} errors`, `<= ${MIX_QUERIES} upstream calls`, simulator.calls <= MIX_QUERIES, 'mix'),
    ];
  } finally {
    simulator.set({ latencyMs: 0 });
    await proxy.child.stop();
  }
}

/** The same hit scenario through nginx proxy_cache, the tool an operator would otherwise reach for. */
async function peer(simulator: Simulator): Promise<Row[]> {
  const nginx = ['/usr/sbin/nginx', '/usr/bin/nginx'].find((path) => {
    try {
      execFileSync(path, ['-v'], { stdio: 'ignore' });
      return true;
    } catch {
      return false;
    }
  });
  if (!nginx) return [row('peer', 'nginx proxy_cache', 'skipped: nginx is not installed (apt-get install nginx-light)', '', null, 'peer')];
  const dir = mkdtempSync(join(tmpdir(), 'bench-nginx-'));
  chmodSync(dir, 0o777);
  const port = await freePort();
  const upstream = new URL(simulator.url);
  writeFileSync(
    join(dir, 'nginx.conf'),
    `worker_processes 1;
daemon off;
pid ${dir}/nginx.pid;
error_log stderr crit;
events { worker_connections 4096; }
http {
  access_log off;
  proxy_cache_path ${dir}/cache levels=1:2 keys_zone=deskie:10m max_size=64m inactive=10m use_temp_path=off;
  proxy_temp_path ${dir}/temp;
  client_body_temp_path ${dir}/body;
  upstream deskie { server ${upstream.host}; keepalive 16; }
  server {
    listen 127.0.0.1:${port};
    location = /ready { return 204; }
    location /api/ {
      proxy_pass http://deskie;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_cache deskie;
      proxy_cache_key "$request_uri $http_authorization";
      proxy_cache_valid 200 5m;
      proxy_cache_lock on;
      proxy_ignore_headers Cache-Control Expires Set-Cookie;
      add_header Cache-Status $upstream_cache_status;
    }
  }
}
`,
  );
  const server = { child: await startChild(...pinned(SERVER_CORE, nginx, ['-p', dir, '-c', join(dir, 'nginx.conf')]), {}, answers(`http://127.0.0.1:${port}/ready`, 204)), url: `http://127.0.0.1:${port}` };
  try {
    await measure(server, HIT_QUERY, WARM_UP_SECONDS);
    // One round as long as a side's rounds of the hit path; nginx's CPU is its worker's, not read here.
    const result = await measure(server, HIT_QUERY, durationSeconds);
    return [
      row('peer', 'nginx proxy_cache, 1 worker, same query as the hit path', `${fmt(result.rps)} req/s, p50 ${ms(result.p50)}, p99 ${ms(result.p99)}`, 'reference', null, 'peer'),
    ];
  } finally {
    await server.child.stop();
  }
}

const agesText = (ages: readonly AgeSummary[]): string => ages.map((a) => `${a.kind} ${a.maxS} / ${a.p99S} / ${a.meanS.toFixed(0)} s (${a.lifetimeS} s)`).join('; ');

/** Dashboards of the contrast days: 42 panels, so each of the 40 queries is shown. */
const CONTRAST_DASHBOARDS = 14;
/** Hours of the contrast days: from Sunday 06:03, before any window changes; 36 lifetimes of `today`. */
const CONTRAST_HOURS = 3;

/** Rows for another run of the day's dashboards (no exploring), beside the day's own. */
function contrast(what: string, other: DayReport, target: string): Row[] {
  const ratio = other.calls / other.minimumCalls;
  return [
    row('dashboard day', `${what}, ${CONTRAST_DASHBOARDS} dashboards, the first ${Math.min(Number(args.hours), CONTRAST_HOURS)} h: upstream calls against the fewest, wasted calls, polls that waited`, `${fmt(other.calls)} vs ${fmt(other.minimumCalls)} (${ratio.toFixed(2)}x); ${fmt(other.wastedCalls)} wasted; ${fmt(other.waits)} waited`, target, null, 'day'),
    row('dashboard day', `${what}, ${CONTRAST_DASHBOARDS} dashboards, the first ${Math.min(Number(args.hours), CONTRAST_HOURS)} h: age since Deskie computed the numbers, max / p99 / mean`, agesText(other.ages), target, null, 'day'),
  ];
}

async function day(): Promise<Row[]> {
  const hours = Number(args.hours);
  // Side by side: each day has its own proxy and simulator. The contrast days report counts only: their proxies run on
  // the load's core, each of the 40 queries is on one of their 14 dashboards rather than on three or four of 50, and
  // they run the day's first hours, where the 5-minute lifetimes show what refresh-ahead and another client cost.
  const contrastDay = { hours: Math.min(hours, CONTRAST_HOURS), explore: false, dashboards: CONTRAST_DASHBOARDS, core: GENERATOR_CORE };
  const [report, aheadDay, foreignDay] = await Promise.all([
    dashboardDay(DAY_CACHE_BYTES, { hours }),
    dashboardDay(DAY_CACHE_BYTES, { ...contrastDay, proxyEnv: { BENCH_REFRESH_MARGIN_MS: String(-POLL_INTERVAL_MS) } }),
    dashboardDay(DAY_CACHE_BYTES, { ...contrastDay, foreignClient: true }),
  ]);
  const ratio = report.calls / report.minimumCalls;
  const cacheMib = DAY_CACHE_BYTES / 1024 / 1024;
  const entriesPerMib = report.entries / cacheMib;
  // Fewer entries than queries means the store evicted, so it was full and the count is what the bound holds.
  const full = report.entries < report.exploringQueries ? '' : ' (not full: more queries are needed)';
  return [
    row('dashboard day', `upstream calls for ${fmt(report.polls)} polls (${DASHBOARDS} dashboards, 40 queries, every 30 s, ${args.hours} h from a Sunday morning in Berlin${Number(args.hours) >= 18 ? ', across a midnight and a week end' : ''}), against the fewest Deskie's table allows`, `${fmt(report.calls)} vs ${fmt(report.minimumCalls)} (${ratio.toFixed(2)}x), of which ${fmt(report.refreshCalls)} scheduled refreshes`, '<= 1.05x the minimum', ratio <= 1.05, 'day'),
    row(
      'dashboard day',
      "polls that waited on Deskie, against the queries shown (their very first poll) and the new windows polled within REFRESH_MARGIN_MS after the change, before the window's first answer is due",
      `${fmt(report.waits)}; queries: ${fmt(report.queriesShown)}; new windows polled within the margin: ${fmt(report.firstPollsInMargin)}; first polls of a window: ${fmt(report.firstPolls)}`,
      "only a query's very first poll, or a window's within the margin",
      report.waits <= report.queriesShown + report.firstPollsInMargin,
      'day',
    ),
    row('dashboard day', 'stale answers served (stale-if-error); answers while a refresh was under way (fwd=stale; revalidating)', `${fmt(report.staleAnswers)}; ${fmt(report.revalidating)}`, '0 (Deskie healthy); reference', report.staleAnswers === 0, 'day'),
    row(
      'dashboard day',
      "age of the answers served, counted from when Deskie computed their numbers, per period: max / p99 / mean, against Deskie's lifetime",
      agesText(report.ages),
      'max <= the lifetime + 5 s',
      report.ages.every((a) => a.maxS <= a.lifetimeS + 5),
      'day',
    ),
    row('dashboard day', "wasted calls: calls Deskie answered from its own cache, with numbers it had already given", fmt(report.wastedCalls), '0', report.wastedCalls === 0, 'day'),
    row('dashboard day', 'a plain cache: 5-minute TTL, keyed by URL', `${fmt(report.plainCalls)} calls, ${fmt(report.plainWrongWindow)} answers from the wrong window`, 'reference (this proxy keys by window: none)', null, 'day'),
    row('entries per MiB', `entries kept at CACHE_MAX_BYTES=${cacheMib}MiB after ${fmt(report.exploringQueries)} distinct one-format leaderboard queries, paced by the default budget over the day's first ${report.exploringMinutes.toFixed(0)} minutes`, `${fmt(report.entries)} entries${full}, ${mib(report.storeBytes)} counted by the store, ${entriesPerMib.toFixed(0)} per MiB, ${fmt(report.exploringFailures)} failed`, `>= ${fmt(TARGET_ENTRIES_PER_MIB * cacheMib)} (${TARGET_ENTRIES_PER_MIB.toFixed(0)} per MiB), within the bound, 0 failed`, entriesPerMib >= TARGET_ENTRIES_PER_MIB && report.storeBytes <= DAY_CACHE_BYTES && report.exploringFailures === 0, 'day'),
    ...contrast('refresh-ahead, for contrast: each refresh one poll (30 s) before expiry, as before refreshes went in phase', aheadDay, 'reference'),
    ...contrast("in phase, with another client of the account warming Deskie's cache at random moments (each query once a minute)", foreignDay, 'reference: a call inside a period another client began gets numbers up to a lifetime old, kept a lifetime more'),
    row('dashboard day', `the proxy's peak RSS (VmHWM, start-up included), its misses on the day's clock, about ${fmt(report.exploringQueries / (report.exploringMinutes * 60) * 60)} a minute of that clock but far more a real second`, `${mib(report.peakRss)} (${mib(report.startRss)} once ready)`, 'reference: V8 grows its heap with the garbage of misses no budget lets through in real time; see the next row', null, 'day'),
  ];
}

/** The opt-in of docs/deploying.md: V8 compiles WebAssembly (undici's HTTP parser) with its baseline compiler only. */
const MEMORY_OPT_IN_FLAGS = ['--liftoff-only'];

async function memory(): Promise<Row[]> {
  // At the same time, each with a simulator of its own: both are paced in real time, far from a core's worth of work.
  const [report, optIn] = await Promise.all([memoryAtBudgetPace(MEMORY_CACHE_BYTES), memoryAtBudgetPace(MEMORY_CACHE_BYTES, MEMORY_OPT_IN_FLAGS)]);
  const rssBound = MEMORY_CACHE_BYTES + RSS_ALLOWANCE_BYTES;
  const full = report.entries < report.exploringQueries ? '' : ', not full: more queries are needed';
  return [
    row(
      'memory',
      `the proxy's peak RSS (VmHWM, start-up included) in real time, Node flags: ${startCommand().nodeFlags.join(' ') || 'none, as npm start'}; ${fmt(report.exploringQueries)} distinct leaderboard queries at the default budget's pace (${report.missesPerSecond.toFixed(1)} a second) while the day's dashboards poll, CACHE_MAX_BYTES=${mib(MEMORY_CACHE_BYTES)}`,
      `${mib(report.peakRss)} (${mib(report.startRss)} once ready); ${fmt(report.entries)} entries${full}, ${mib(report.storeBytes)} counted; ${fmt(report.failures)} failed of ${fmt(report.exploringQueries + report.polls)} in ${report.seconds.toFixed(0)} s`,
      `<= ${mib(rssBound)} (the bound + ${mib(RSS_ALLOWANCE_BYTES)}), 0 failed`,
      report.peakRss <= rssBound && report.failures === 0,
      'memory',
    ),
    row(
      'memory',
      `the same, run at the same time, with ${MEMORY_OPT_IN_FLAGS.join(' ')} added (an opt-in: docs/deploying.md)`,
      `${mib(optIn.peakRss)} (${mib(optIn.startRss)} once ready); ${fmt(optIn.failures)} failed`,
      'reference',
      null,
      'memory',
    ),
  ];
}

/** A screen is to show a change within a second of the refresh that brings it. */
const PUSH_TARGET_P99_MS = 1_000;

async function push(): Promise<Row[]> {
  const r = await pushToStreams();
  return [
    row('push', `${fmt(PUSH_STREAMS)} event streams on ${PUSH_QUERY}, one credential, one process (${COLD_STREAMS} on the cold key at once, then the rest)`, `${fmt(r.open)} open, ${fmt(r.failed)} failed, in ${r.openSeconds.toFixed(1)} s`, `${fmt(PUSH_STREAMS)} open, 0 failed`, r.open === PUSH_STREAMS && r.failed === 0, 'push'),
    row('push', 'one change of the numbers, to every stream: from the request that makes its refresh due to each stream\'s event, p50 / p99 / max', `${fmt(r.delivered)} delivered (${fmt(r.early)} early); ${ms(r.p50)} / ${ms(r.p99)} / ${ms(r.max)}`, `all, p99 <= ${fmt(PUSH_TARGET_P99_MS)} ms`, r.delivered === PUSH_STREAMS && r.early === 0 && r.p99 <= PUSH_TARGET_P99_MS, 'push'),
    row('push', `memory per stream: the proxy's RSS with all open less with the first ${COLD_STREAMS}, over the streams between`, `${(r.bytesPerStream / 1024).toFixed(1)} KiB (${mib(r.rssBefore)} → ${mib(r.rssAfter)})`, 'reference', null, 'push'),
    row('push', 'upstream calls: opening the streams, then the change', `${r.openCalls} + ${r.changeCalls}`, '1 + 1 (no extra call)', r.openCalls === 1 && r.changeCalls === 1, 'push'),
  ];
}

function row(scenario: string, measure: string, result: string, target: string, met: boolean | null, name: Scenario): Row {
  return { scenario, measure, result, target, met, command: command(name) };
}

const fmt = (n: number): string => Math.round(n).toLocaleString('en-US');
const seconds = (since: number): string => `${((Date.now() - since) / 1000).toFixed(0)} s`;
const ms = (value: number): string => `${value < 10 ? value.toFixed(2) : value.toFixed(0)} ms`;

function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  const middle = Math.floor(sorted.length / 2);
  return sorted.length % 2 === 1 ? (sorted[middle] ?? Number.NaN) : ((sorted[middle - 1] ?? 0) + (sorted[middle] ?? 0)) / 2;
}

async function main(): Promise<void> {
  const started = Date.now();
  // This process loads the miss mix and the dashboard day itself: off the servers' core.
  pin(process.pid, GENERATOR_CORE);
  const rows: Row[] = [];
  const runners: Record<Scenario, (simulator: Simulator) => Promise<Row[]>> = { hit: hitPath, stampede, mix: missMix, peer, day, memory, push };
  for (const scenario of SCENARIOS) {
    if (!only.has(scenario)) continue;
    // A fresh simulator per scenario: its call counter is the scenario's upstream count (the day starts its own, on the day's clock).
    const simulator = await startSimulator({ rateLimitPerMinute: 10_000_000 });
    try {
      process.stdout.write(`running ${scenario}...\n`);
      const scenarioStarted = Date.now();
      rows.push(...(await runners[scenario](simulator)));
      process.stdout.write(`${scenario}: ${seconds(scenarioStarted)}\n`);
    } finally {
      await simulator.close();
    }
  }
  const table = [
    '| scenario | measure | result | target | met | reproduce |',
    '|---|---|---|---|---|---|',
    ...rows.map((r) => `| ${r.scenario} | ${r.measure} | ${r.result} | ${r.target} | ${r.met === null ? '' : r.met ? 'yes' : 'NO'} | \`${r.command}\` |`),
  ].join('\n');
  const machine = `${cpus().length} × ${cpus()[0]?.model.trim() ?? 'unknown CPU'}, ${mib(totalmem())} memory, Node ${process.version}, ${process.platform}`;
  const method =
    `Load: ${GENERATOR} for the hit path and the peer, bench/stampede-client.ts for the stampede, each in its own process; ` +
    `the miss mix and the dashboard day are loaded by the bench's process, which hosts the simulator. ` +
    `Every server's stdout is a pipe that a cat of its own, on the load's core, drains into /dev/null. ` +
    (PINNING
      ? `Servers pinned to core ${SERVER_CORE}, the load to core ${GENERATOR_CORE} (taskset).`
      : 'Unpinned: taskset is missing or cannot use two cores, so servers and load share the cores.');
  process.stdout.write(`\n${table}\n\n${machine}.\n${method}\nTotal ${seconds(started)}\n`);
  const defaults = (Object.keys(DEFAULTS) as (keyof typeof DEFAULTS)[]).every((name) => args[name] === DEFAULTS[name]);
  if (defaults && only.size === SCENARIOS.length) {
    const results =
      `${RESULTS_START}\nRun with \`npm run bench\` on ${new Date().toISOString().slice(0, 10)}: ${machine}. ${method}\n\n${table}\n${RESULTS_END}`;
    // Only the results between the markers are replaced; the notes around them are kept.
    const previous = existsSync(BENCHMARKS_FILE) ? readFileSync(BENCHMARKS_FILE, 'utf8') : `# Benchmarks\n\n${RESULTS_START}\n${RESULTS_END}\n`;
    const start = previous.indexOf(RESULTS_START);
    const end = previous.indexOf(RESULTS_END);
    writeFileSync(
      BENCHMARKS_FILE,
      start === -1 || end === -1 ? `${previous}\n${results}\n` : previous.slice(0, start) + results + previous.slice(end + RESULTS_END.length),
    );
  }
}

await main();
