import { readFileSync } from 'node:fs';
import t from 'tap';
import { startStack } from './helpers/stack.js';

const DASHBOARD = new URL('../deploy/grafana/deskie-stats-proxy.json', import.meta.url);

interface Target {
  readonly refId?: string;
  readonly expr?: string;
  readonly datasource?: { readonly type?: string; readonly uid?: string };
}
interface Panel {
  readonly id: number;
  readonly type: string;
  readonly title: string;
  readonly gridPos: { readonly x: number; readonly y: number; readonly w: number; readonly h: number };
  readonly datasource?: { readonly type?: string; readonly uid?: string };
  readonly targets?: readonly Target[];
  /** A collapsed row holds its panels. */
  readonly panels?: readonly Panel[];
}
interface Variable {
  readonly name: string;
  readonly type: string;
  readonly query?: string | { readonly query?: string };
}
interface Dashboard {
  readonly uid: string;
  readonly title: string;
  readonly schemaVersion: number;
  readonly panels: readonly Panel[];
  readonly templating: { readonly list: readonly Variable[] };
}

/**
 * Words of PromQL that are not metric names: aggregation operators, set and
 * comparison keywords, modifiers. Functions are recognised by the `(` after
 * them, so none needs listing.
 */
const KEYWORDS = new Set(['by', 'without', 'on', 'ignoring', 'group_left', 'group_right', 'bool', 'and', 'or', 'unless', 'offset', 'atan2', 'inf', 'nan']);

/**
 * The metric names a PromQL expression reads. Label matchers (`{...}`),
 * label lists (`by (...)`, `on (...)`...), ranges (`[5m]`), strings,
 * Grafana variables and numbers are removed first; of the words left, one
 * followed by `(` is a function or aggregation, anything else a metric.
 */
function metricNames(expr: string): string[] {
  const stripped = expr
    .replace(/"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*'|`[^`]*`/g, ' ')
    .replace(/\{[^{}]*\}/g, ' ')
    .replace(/\[[^\]]*\]/g, ' ')
    .replace(/\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)/g, ' ')
    .replace(/\$\{?\w+\}?/g, ' ');
  const names = new Set<string>();
  for (const match of stripped.matchAll(/[A-Za-z_:][\w:]*/g)) {
    const word = match[0];
    const at = match.index ?? 0;
    // The tail of a number or duration ("1e3", "1d").
    if (/[\d.]/.test(stripped[at - 1] ?? '')) continue;
    if (/^\s*\(/.test(stripped.slice(at + word.length)) || KEYWORDS.has(word.toLowerCase())) continue;
    names.add(word);
  }
  return [...names];
}

/** Every panel, those inside collapsed rows included. */
function panelsOf(dashboard: Dashboard): Panel[] {
  return dashboard.panels.flatMap((panel) => [panel, ...(panel.panels ?? [])]);
}

/** The names of the metrics the dashboard queries: every target's expr, and the variables' label_values() queries. */
function queriedMetrics(dashboard: Dashboard): Map<string, string> {
  const where = new Map<string, string>();
  for (const panel of panelsOf(dashboard)) {
    for (const target of panel.targets ?? []) {
      for (const name of metricNames(target.expr ?? '')) where.set(name, `panel "${panel.title}"`);
    }
  }
  for (const variable of dashboard.templating.list) {
    const query = typeof variable.query === 'string' ? variable.query : variable.query?.query;
    const metric = /^label_values\(\s*([A-Za-z_:][\w:]*)/.exec(query ?? '')?.[1];
    if (variable.type === 'query' && metric !== undefined) where.set(metric, `variable $${variable.name}`);
  }
  return where;
}

/** Sample names in a Prometheus text exposition, and each family's type from its `# TYPE` line. */
function exposition(text: string): { samples: Set<string>; types: Map<string, string> } {
  const samples = new Set<string>();
  const types = new Map<string, string>();
  for (const line of text.split('\n')) {
    const type = /^# TYPE (\S+) (\S+)$/.exec(line);
    if (type) types.set(type[1] as string, type[2] as string);
    const sample = /^([A-Za-z_:][\w:]*)(?:\{| )/.exec(line);
    if (sample) samples.add(sample[1] as string);
  }
  return { samples, types };
}

const HISTOGRAM_SERIES = /^(.*)_(bucket|sum|count)$/;

t.test('metricNames reads the metric names of a PromQL expression and nothing else', async (t) => {
  t.same(
    metricNames('histogram_quantile(0.95, sum by (le, route) (rate(deskie_proxy_upstream_duration_seconds_bucket{job=~"$job", route=~"a|b"}[$__rate_interval])))'),
    ['deskie_proxy_upstream_duration_seconds_bucket'],
  );
  t.same(
    metricNames('sum(rate(a_total{outcome="hit"}[5m])) / on (instance) group_left sum(rate(b_total[1h] offset 1d)) > bool 0.5 and c'),
    ['a_total', 'b_total', 'c'],
  );
  t.same(metricNames('max without (instance) (up) or vector(0) * 1e3'), ['up']);
  t.same(metricNames('count_values("value", build_info{version=~"1.*"})'), ['build_info']);
});

t.test('the dashboard is an importable Grafana dashboard on a Prometheus datasource variable', async (t) => {
  const dashboard = JSON.parse(readFileSync(DASHBOARD, 'utf8')) as Dashboard;
  t.ok(dashboard.schemaVersion >= 36 && dashboard.schemaVersion <= 41, `schemaVersion ${dashboard.schemaVersion}`);
  t.equal(dashboard.uid, 'deskie-stats-proxy', 'a stable uid, so a re-import replaces it');
  t.ok(dashboard.title);
  t.match(dashboard.templating.list.find((variable) => variable.name === 'datasource'), { type: 'datasource', query: 'prometheus' });
  const panels = panelsOf(dashboard);
  const ids = panels.map((panel) => panel.id);
  t.equal(new Set(ids).size, ids.length, 'panel ids are unique');
  for (const panel of panels.filter((panel) => panel.type !== 'row')) {
    t.ok(panel.gridPos.x + panel.gridPos.w <= 24, `"${panel.title}" fits the 24-column grid`);
    t.same(panel.datasource, { type: 'prometheus', uid: '${datasource}' }, `"${panel.title}" reads the chosen datasource`);
    const targets = panel.targets ?? [];
    t.ok(targets.length > 0 && targets.every((target) => target.expr && target.refId), `"${panel.title}" has queries`);
    t.equal(new Set(targets.map((target) => target.refId)).size, targets.length, 'with distinct refIds');
  }
  const expressions = panels.flatMap((panel) => (panel.targets ?? []).map((target) => target.expr ?? ''));
  for (const wanted of [
    /deskie_proxy_requests_total\{[^}]*outcome="hit"[^}]*\}.*\/\s*sum\(rate\(deskie_proxy_requests_total/,
    /rate\(deskie_proxy_upstream_calls_saved_total/,
    /sum by \(status\) \(rate\(deskie_proxy_upstream_calls_total/,
    /histogram_quantile\(0\.5, sum by \(le, route\) \(rate\(deskie_proxy_upstream_duration_seconds_bucket/,
    /histogram_quantile\(0\.95, /,
    /deskie_proxy_budget_calls_left/,
    /deskie_proxy_budget_limit_per_minute/,
    /deskie_proxy_deskie_calls_left/,
    /deskie_proxy_budget_circuit_open/,
    /deskie_proxy_budget_queue_length/,
    /rate\(deskie_proxy_stale_answers_total/,
    /deskie_proxy_store_bytes/,
    /deskie_proxy_store_max_bytes/,
    /deskie_proxy_store_entries/,
    /rate\(deskie_proxy_store_evictions_total/,
    /process_resident_memory_bytes/,
    /nodejs_eventloop_lag/,
  ]) {
    t.ok(expressions.some((expr) => wanted.test(expr)), `a panel queries ${wanted.source}`);
  }
});

t.test('every metric the dashboard queries is served at /metrics', async (t) => {
  const dashboard = JSON.parse(readFileSync(DASHBOARD, 'utf8')) as Dashboard;
  const queried = queriedMetrics(dashboard);
  t.ok(queried.size >= 15, `${queried.size} metrics queried`);

  const stack = await startStack(t);
  // One miss and one hit on each route, so that every per-route series exists.
  for (const path of ['/api/stats_leaderboard.json', '/api/stats_staff_statuses.json', '/api/stats_satisfaction.json']) {
    t.equal((await stack.get(`${path}?period=today`)).status, 200);
    t.equal((await stack.get(`${path}?period=today`)).status, 200);
  }
  const scraped = await stack.get('/metrics', { authorization: null });
  t.equal(scraped.status, 200, 'GET /metrics');
  const { samples, types } = exposition(scraped.text);
  for (const [name, where] of queried) {
    const histogram = HISTOGRAM_SERIES.exec(name);
    if (histogram !== null && types.has(histogram[1] as string)) {
      const family = histogram[1] as string;
      t.ok(types.get(family) === 'histogram' || (types.get(family) === 'summary' && histogram[2] !== 'bucket'), `${name} (${where}): ${family} is a ${types.get(family)}`);
    }
    t.ok(samples.has(name), `${name} (${where}) has a series at /metrics`);
  }
});
