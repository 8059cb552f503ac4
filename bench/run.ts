/**
 * `npm run bench`: measures the proxy against baselines measured in the same
 * run, so the figures are ratios that survive a noisy machine. The proxy and
 * the baselines run as their own processes; this process generates the load
 * (autocannon) and hosts the Deskie simulator, which counts upstream calls.
 *
 *   npm run bench                        every scenario, results to BENCHMARKS.md
 *   npm run bench -- --only hit,stampede some of them (hit, stampede, mix, memory, peer, day)
 *   npm run bench -- --duration 5        seconds per hit-path measurement (default 10)
 *   npm run bench -- --only memory --cache-mib 32 --queries 50000   the memory scenario at another size
 */
import { execFileSync } from 'node:child_process';
import { chmodSync, existsSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { cpus, tmpdir, totalmem } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { startSimulator, type Simulator } from '../src/simulator/index.js';
import { dashboardDay } from './day.js';
import { answers, DEMO_AUTHORIZATION, freePort, load, startFlags, type LoadResult, mib, peakRss, startChild, type Child } from './lib.js';

const SCENARIOS = ['hit', 'stampede', 'mix', 'memory', 'peer', 'day'] as const;
type Scenario = (typeof SCENARIOS)[number];

const HIT_CONNECTIONS = 100;
const HIT_QUERY = '/api/stats_leaderboard.json?period=this_month';
const HIT_ROUNDS = 5;
const STAMPEDE_REQUESTS = 1_000;
const STAMPEDE_UPSTREAM_LATENCY_MS = 200;
const MIX_REQUESTS = 10_000;
const MIX_QUERIES = 1_000;
const MIX_UPSTREAM_LATENCY_MS = 20;

const BENCHMARKS_FILE = 'BENCHMARKS.md';
const RESULTS_START = '<!-- results: written by npm run bench -->';
const RESULTS_END = '<!-- /results -->';

const TARGET_HIT_RATIO = 0.85;
const TARGET_HIT_P99_MS = 5;

interface Row {
  readonly scenario: string;
  readonly measure: string;
  readonly result: string;
  readonly target: string;
  readonly met: boolean | null;
  readonly command: string;
}

const { values: args } = parseArgs({
  options: {
    only: { type: 'string' },
    duration: { type: 'string', default: '10' },
    'cache-mib': { type: 'string', default: '64' },
    queries: { type: 'string', default: '100000' },
    write: { type: 'boolean', default: true },
  },
});
const only = new Set((args.only?.split(',') ?? SCENARIOS) as Scenario[]);
const durationSeconds = Number(args.duration);
const MEMORY_QUERIES = Number(args.queries);
const MEMORY_CACHE_BYTES = Number(args['cache-mib']) * 1024 * 1024;
const command = (scenario: Scenario) => `npm run bench -- --only ${scenario}`;

/** The compiled proxy, pointed at the simulator, as its own process. */
async function startProxy(simulator: Simulator, env: Record<string, string> = {}): Promise<{ child: Child; url: string }> {
  const port = await freePort();
  const url = `http://127.0.0.1:${port}`;
  const child = await startChild(
    process.execPath,
    [...startFlags(), 'dist/server.js'],
    { PORT: String(port), HOST: '127.0.0.1', DESKIE_URL: simulator.url, LOG_LEVEL: 'warn', NODE_ENV: 'production', NODE_OPTIONS: process.env.BENCH_PROXY_NODE_OPTIONS ?? '', ...env },
    answers(`${url}/healthz`),
  );
  return { child, url };
}

async function get(url: string): Promise<Response> {
  return fetch(url, { headers: { authorization: DEMO_AUTHORIZATION } });
}

async function hitPath(simulator: Simulator): Promise<Row[]> {
  const proxy = await startProxy(simulator);
  try {
    const first = await get(`${proxy.url}${HIT_QUERY}`);
    const body = Buffer.from(await first.arrayBuffer());
    const headers: Record<string, string> = {};
    for (const name of ['content-type', 'cache-status', 'cache-control', 'age', 'etag', 'last-modified', 'vary']) {
      headers[name] = first.headers.get(name) ?? '';
    }
    const answerFile = join(mkdtempSync(join(tmpdir(), 'bench-')), 'answer.json');
    writeFileSync(answerFile, JSON.stringify({ headers, body: body.toString('base64') }));
    const port = await freePort();
    const baseline = await startChild(
      process.execPath,
      ['--import', 'tsx', 'bench/baseline-server.ts', String(port), answerFile],
      {},
      answers(`http://127.0.0.1:${port}${HIT_QUERY}`),
    );
    try {
    const options = { connections: HIT_CONNECTIONS, headers: { authorization: DEMO_AUTHORIZATION } };
    const run = (url: string, duration: number) => load({ ...options, url: `${url}${HIT_QUERY}`, duration });
    await run(`http://127.0.0.1:${port}`, 2); // warm-up
    await run(proxy.url, 2);
    // Interleaved rounds, so that drift on a shared machine hits both sides alike.
    const bare: LoadResult[] = [];
    const proxied: LoadResult[] = [];
    const roundSeconds = Math.max(1, Math.round(durationSeconds / HIT_ROUNDS));
    for (let round = 0; round < HIT_ROUNDS; round++) {
      bare.push(await run(`http://127.0.0.1:${port}`, roundSeconds));
      proxied.push(await run(proxy.url, roundSeconds));
    }
    const ratio = median(proxied.map((p, i) => p.rps / (bare[i]?.rps ?? Number.NaN)));
    const summary = (results: LoadResult[]) =>
      `${fmt(median(results.map((r) => r.rps)))} req/s, p50 ${median(results.map((r) => r.p50))} ms, p99 ${median(results.map((r) => r.p99))} ms`;
    const proxiedP99 = median(proxied.map((r) => r.p99));
    const failures = proxied.reduce((sum, r) => sum + r.errors + r.non2xx, 0);
    const calls = simulator.calls;
    return [
      row('hit path', `bare Fastify, same bytes and headers (median of ${HIT_ROUNDS} rounds)`, summary(bare), 'baseline', null, 'hit'),
      row('hit path', `proxy, cached leaderboard (median of ${HIT_ROUNDS} rounds)`, summary(proxied), `p99 <= ${TARGET_HIT_P99_MS} ms`, proxiedP99 <= TARGET_HIT_P99_MS, 'hit'),
      row('hit path', 'proxy / bare Fastify (median of per-round ratios)', `${ratio.toFixed(2)}x (rounds: ${proxied.map((p, i) => (p.rps / (bare[i]?.rps ?? Number.NaN)).toFixed(2)).join(', ')})`, `>= ${TARGET_HIT_RATIO}x`, ratio >= TARGET_HIT_RATIO, 'hit'),
      row('hit path', 'upstream calls, errors', `${calls}, ${failures}`, '1, 0', calls === 1 && failures === 0, 'hit'),
    ];
    } finally {
      await baseline.stop();
    }
  } finally {
    await proxy.child.stop();
  }
}

async function stampede(simulator: Simulator): Promise<Row[]> {
  const proxy = await startProxy(simulator);
  simulator.set({ latencyMs: STAMPEDE_UPSTREAM_LATENCY_MS });
  try {
    const result = await load({
      url: `${proxy.url}/api/stats_leaderboard.json?period=last_month&group_id=4242`,
      connections: STAMPEDE_REQUESTS,
      amount: STAMPEDE_REQUESTS,
      headers: { authorization: DEMO_AUTHORIZATION },
    });
    return [
      row('stampede', `${STAMPEDE_REQUESTS} concurrent identical requests, cold key, ${STAMPEDE_UPSTREAM_LATENCY_MS} ms upstream`, `${simulator.calls} upstream call(s), p99 ${result.p99} ms, ${result.errors + result.non2xx} errors`, '1 upstream call', simulator.calls === 1, 'stampede'),
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
  let next = 0;
  try {
    const result = await load({
      url: proxy.url,
      connections: 50,
      amount: MIX_REQUESTS,
      headers: { authorization: DEMO_AUTHORIZATION },
      requests: [{ setupRequest: (request) => ({ ...request, path: order[next++ % order.length] }) }],
    });
    const hitRatio = 1 - simulator.calls / result.requests;
    return [
      row('miss mix', `${MIX_REQUESTS} requests over ${MIX_QUERIES} queries, ${MIX_UPSTREAM_LATENCY_MS} ms upstream`, `${simulator.calls} upstream calls, hit ratio ${(hitRatio * 100).toFixed(1)}%, p99 ${result.p99} ms, ${result.errors + result.non2xx} errors`, `<= ${MIX_QUERIES} upstream calls`, simulator.calls <= MIX_QUERIES, 'mix'),
    ];
  } finally {
    simulator.set({ latencyMs: 0 });
    await proxy.child.stop();
  }
}

interface MemoryRun {
  readonly entries: number;
  readonly countedBytes: number;
  readonly errors: number;
  readonly startRss: number;
  /** Peak RSS after each quarter of the queries. */
  readonly rssAfterQuarter: number[];
}

/** Distinct custom-range queries, each a miss, against a proxy bounded to `cacheBytes`. */
async function fillCache(simulator: Simulator, cacheBytes: number, queries: number): Promise<MemoryRun> {
  const proxy = await startProxy(simulator, { CACHE_MAX_BYTES: String(cacheBytes) });
  const startRss = peakRss(proxy.child.pid);
  const base = Date.parse('2026-01-01T00:00:00Z') / 1000;
  let next = 0;
  let errors = 0;
  // The cache is full after a few thousand entries; RSS after each quarter
  // shows whether memory keeps growing with the number of queries.
  const rssAfterQuarter: number[] = [];
  try {
    for (let quarter = 0; quarter < 4; quarter++) {
      const result = await load({
        url: proxy.url,
        connections: 50,
        amount: queries / 4,
        headers: { authorization: DEMO_AUTHORIZATION },
        requests: [
          {
            setupRequest: (request) => {
              const from = base + 60 * next++;
              return { ...request, path: `/api/stats_leaderboard.json?from_time=${from}&to_time=${from + 7200}` };
            },
          },
        ],
      });
      errors += result.errors + result.non2xx;
      rssAfterQuarter.push(peakRss(proxy.child.pid));
    }
    const health = (await (await fetch(`${proxy.url}/healthz`)).json()) as { entries: number; bytes: number };
    return { entries: health.entries, countedBytes: health.bytes, errors, startRss, rssAfterQuarter };
  } finally {
    await proxy.child.stop();
  }
}

async function memory(simulator: Simulator): Promise<Row[]> {
  const run = await fillCache(simulator, MEMORY_CACHE_BYTES, MEMORY_QUERIES);
  const [, atHalf = Number.NaN, , atEnd = Number.NaN] = run.rssAfterQuarter;
  return [
    row('memory', `${fmt(MEMORY_QUERIES)} distinct queries, CACHE_MAX_BYTES=${args['cache-mib']}MiB`, `${fmt(run.entries)} entries kept, ${mib(run.countedBytes)} counted by the store, ${run.errors} errors`, 'the store holds to its bound', run.countedBytes <= MEMORY_CACHE_BYTES, 'memory'),
    row('memory', 'peak RSS after each quarter of the queries', run.rssAfterQuarter.map(mib).join(', '), 'flat once the cache is full: last <= second + 10%', atEnd <= atHalf * 1.1, 'memory'),
    row('memory', 'peak RSS beyond start RSS and the bound', `${mib(atEnd - run.startRss - MEMORY_CACHE_BYTES)} (start ${mib(run.startRss)})`, 'fixed: see the notes', null, 'memory'),
  ];
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
  const child = await startChild(nginx, ['-p', dir, '-c', join(dir, 'nginx.conf')], {}, answers(`http://127.0.0.1:${port}/ready`, 204));
  try {
    const url = `http://127.0.0.1:${port}${HIT_QUERY}`;
    await load({ url, connections: HIT_CONNECTIONS, headers: { authorization: DEMO_AUTHORIZATION }, duration: 2 });
    const result = await load({ url, connections: HIT_CONNECTIONS, headers: { authorization: DEMO_AUTHORIZATION }, duration: durationSeconds });
    return [
      row('peer', 'nginx proxy_cache, 1 worker, same query', `${fmt(result.rps)} req/s, p50 ${result.p50} ms, p99 ${result.p99} ms`, 'reference', null, 'peer'),
    ];
  } finally {
    await child.stop();
  }
}

/** The dashboard day runs the proxy in this process on the injected clock, with a simulator of its own. */
async function day(): Promise<Row[]> {
  const report = await dashboardDay();
  const ratio = report.calls / report.minimumCalls;
  return [
    row('dashboard day', `upstream calls for ${fmt(report.polls)} polls (50 dashboards, 40 queries, every 30 s, 24 h across a midnight and a week end in Berlin), against the fewest Deskie's table allows`, `${fmt(report.calls)} vs ${fmt(report.minimumCalls)} (${ratio.toFixed(2)}x), of which ${fmt(report.refreshCalls)} refreshes ahead`, '<= 1.1x the minimum', ratio <= 1.1, 'day'),
    row('dashboard day', 'polls that waited on Deskie', `${fmt(report.waits)}; first polls of a window: ${fmt(report.firstPolls)}`, 'only first polls', report.waits <= report.firstPolls, 'day'),
    row('dashboard day', 'stale answers served', fmt(report.staleAnswers), '0 (Deskie healthy)', report.staleAnswers === 0, 'day'),
    row('dashboard day', 'a plain cache: 5-minute TTL, keyed by URL', `${fmt(report.plainCalls)} calls, ${fmt(report.plainWrongWindow)} answers from the wrong window`, 'reference (this proxy keys by window: none)', null, 'day'),
  ];
}

function row(scenario: string, measure: string, result: string, target: string, met: boolean | null, name: Scenario): Row {
  return { scenario, measure, result, target, met, command: command(name) };
}

const fmt = (n: number): string => Math.round(n).toLocaleString('en-US');

function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  const middle = Math.floor(sorted.length / 2);
  return sorted.length % 2 === 1 ? (sorted[middle] ?? Number.NaN) : ((sorted[middle - 1] ?? 0) + (sorted[middle] ?? 0)) / 2;
}

async function main(): Promise<void> {
  const started = Date.now();
  const rows: Row[] = [];
  const runners: Record<Scenario, (simulator: Simulator) => Promise<Row[]>> = { hit: hitPath, stampede, mix: missMix, memory, peer, day };
  for (const scenario of SCENARIOS) {
    if (!only.has(scenario)) continue;
    // A fresh simulator per scenario: its call counter is the scenario's upstream count.
    const simulator = await startSimulator({ rateLimitPerMinute: 10_000_000 });
    try {
      process.stdout.write(`running ${scenario}...\n`);
      rows.push(...(await runners[scenario](simulator)));
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
  process.stdout.write(`\n${table}\n\n${machine}; ${((Date.now() - started) / 1000).toFixed(0)} s\n`);
  const defaults = args.queries === '100000' && args['cache-mib'] === '64' && args.duration === '10';
  if (args.write && defaults && only.size === SCENARIOS.length) {
    const results =
      `${RESULTS_START}\nRun with \`npm run bench\` on ${new Date().toISOString().slice(0, 10)}: ${machine}. ` +
      `The load generator and the simulator share one process; the proxy and each baseline run in their own.\n\n${table}\n${RESULTS_END}`;
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
