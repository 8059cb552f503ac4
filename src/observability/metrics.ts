import { collectDefaultMetrics, Counter, Gauge, Histogram, Registry } from 'prom-client';
import { routeLabel } from './access-log.js';
import type { AnswerStore } from '../cache/store.js';
import { ENDPOINTS, type EndpointName } from '../deskie/endpoints.js';
import { FRESHNESS_CLASSES, type FreshnessClass } from '../deskie/periods.js';
import type { UpstreamBudget } from '../upstream/budget/budget.js';

/** Metric names start with this. */
export const METRIC_PREFIX = 'deskie_proxy_';

const ENDPOINT_NAMES = Object.keys(ENDPOINTS) as EndpointName[];
/** The route label: Deskie's name for each path. */
const ROUTE_LABELS = ENDPOINT_NAMES.map((name) => routeLabel(ENDPOINTS[name].path));
/** The period_class label: Deskie's cache table's rows, and `none` for a request refused before its period was known. */
const PERIOD_CLASSES: readonly string[] = [...FRESHNESS_CLASSES, 'none'];
const NO_PERIOD = PERIOD_CLASSES.length - 1;

/** How a request was answered, as the metrics and the access log name it. */
export const REQUEST_OUTCOMES = ['hit', 'miss', 'stale', 'collapsed', 'refreshed', 'error'] as const;
export type RequestOutcome = (typeof REQUEST_OUTCOMES)[number];
const OUTCOME_INDEX = Object.fromEntries(REQUEST_OUTCOMES.map((outcome, index) => [outcome, index])) as Record<RequestOutcome, number>;
/** Outcomes whose answer took no call of its own. */
const SAVING_OUTCOMES: ReadonlySet<number> = new Set([OUTCOME_INDEX.hit, OUTCOME_INDEX.collapsed]);

/** Statuses are 100-599: a key's last three digits. */
const STATUS_SPAN = 1000;

/** Upstream latency buckets in seconds: Deskie answers in tens of ms to seconds; a `page=all` merge may take a minute. */
const UPSTREAM_BUCKETS = [0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60];

/**
 * Default process metrics, one set per process: prom-client's event-loop
 * monitor and GC observer are process-wide, and tests build many apps.
 */
let processRegistry: Registry | undefined;
function processMetrics(): Registry {
  if (processRegistry === undefined) {
    processRegistry = new Registry();
    collectDefaultMetrics({ register: processRegistry });
  }
  return processRegistry;
}

/**
 * The proxy's Prometheus metrics. A request only adds one to a number in a
 * map, keyed by a small integer its route already knows; labels, sums and
 * the budget's and store's state are made when Prometheus scrapes. prom-client's
 * own `inc(labels)` hashes the label object on every call, which a cache hit
 * should not pay for. Every label value comes from a fixed list (route,
 * period class, outcome) or is an HTTP status, never from a client's query.
 */
export class ProxyMetrics {
  readonly #registry = new Registry();
  /** Answered requests by requestKey(); read at scrape. */
  readonly #requests = new Map<number, number>();
  /** Refusals answered from memory, by route index: they took no call either. */
  readonly #remembered: number[] = ENDPOINT_NAMES.map(() => 0);
  /** Requests by client token name, in service mode (names are the operator's, not a client's). */
  readonly #clients = new Map<string, number>();
  readonly #upstreamCalls: Counter<'route' | 'status'>;
  readonly #upstreamSeconds: Histogram<'route'>;

  constructor({ store, budget, maxBytes, clientTokens }: { store: AnswerStore; budget: UpstreamBudget; maxBytes: number; clientTokens?: () => number }) {
    const registers = [this.#registry];
    const requests = this.#requests;
    const clients = this.#clients;
    const remembered = this.#remembered;
    const byRoute = (pick: (outcome: number, status: number) => boolean): number[] => {
      const totals = ENDPOINT_NAMES.map(() => 0);
      for (const [key, count] of requests) {
        const { route, outcome, status } = decodeKey(key);
        if (pick(outcome, status)) totals[route] = (totals[route] ?? 0) + count;
      }
      return totals;
    };

    new Counter({
      name: `${METRIC_PREFIX}requests_total`,
      help: 'Requests to the statistics routes, by route, period class, how the cache answered, and status',
      labelNames: ['route', 'period_class', 'outcome', 'status'],
      registers,
      collect() {
        this.reset();
        for (const [key, count] of requests) {
          const { route, periodClass, outcome, status } = decodeKey(key);
          this.inc(
            {
              route: ROUTE_LABELS[route] as string,
              period_class: PERIOD_CLASSES[periodClass] as string,
              outcome: REQUEST_OUTCOMES[outcome] as string,
              status: String(status),
            },
            count,
          );
        }
      },
    });
    new Counter({
      name: `${METRIC_PREFIX}client_requests_total`,
      help: 'Requests to the statistics routes that showed a valid client token (service mode), by the token\'s name',
      labelNames: ['client'],
      registers,
      collect() {
        this.reset();
        for (const [client, count] of clients) this.inc({ client }, count);
      },
    });
    this.#upstreamCalls = new Counter({
      name: `${METRIC_PREFIX}upstream_calls_total`,
      help: 'Calls to Deskie, by route and Deskie status (`failed`: no answer: timeout, refused connection, bad body)',
      labelNames: ['route', 'status'],
      registers,
    });
    this.#upstreamSeconds = new Histogram({
      name: `${METRIC_PREFIX}upstream_duration_seconds`,
      help: "Time Deskie took to answer one call, by route",
      labelNames: ['route'],
      buckets: UPSTREAM_BUCKETS,
      registers,
    });
    new Counter({
      name: `${METRIC_PREFIX}upstream_calls_saved_total`,
      help: 'Answers given without a call of their own to Deskie: cache hits, requests that waited for another call, refusals answered from memory',
      labelNames: ['route'],
      registers,
      collect() {
        this.reset();
        byRoute((outcome) => SAVING_OUTCOMES.has(outcome)).forEach((count, route) =>
          this.inc({ route: ROUTE_LABELS[route] as string }, count + (remembered[route] ?? 0)),
        );
      },
    });
    new Counter({
      name: `${METRIC_PREFIX}stale_answers_total`,
      help: 'Expired answers served because Deskie failed (stale-if-error), by route',
      labelNames: ['route'],
      registers,
      collect() {
        this.reset();
        byRoute((outcome) => outcome === OUTCOME_INDEX.stale).forEach((count, route) => this.inc({ route: ROUTE_LABELS[route] as string }, count));
      },
    });

    const gauge = (name: string, help: string, read: () => number): void => {
      new Gauge({
        name: `${METRIC_PREFIX}${name}`,
        help,
        registers,
        collect() {
          this.set(read());
        },
      });
    };
    // Each gauge reads the budget itself: a scrape of one metric must not see another's snapshot.
    gauge('budget_calls_left', 'Calls to Deskie the budget still allows in the current minute', () => budget.snapshot().callsLeftThisMinute);
    gauge('budget_limit_per_minute', 'Calls to Deskie allowed a minute: the account limit less the reserve, or UPSTREAM_RATE_PER_MIN', () => budget.limitPerMinute);
    gauge('deskie_calls_left', "Deskie's api_calls_left as last seen (NaN until Deskie has said)", () => budget.snapshot().deskieCallsLeft ?? Number.NaN);
    gauge('budget_circuit_open', '1 while a 429 from Deskie keeps every call back', () => (budget.snapshot().state === 'circuit-open' ? 1 : 0));
    gauge('budget_paused', "1 while calls are paused because the account's calls are down to the reserve", () => (budget.snapshot().state === 'paused' ? 1 : 0));
    gauge(
      'budget_replica_share',
      "1 while Redis is unreachable and this replica counts its calls alone, within its share of the account's limit (REDIS_URL)",
      () => (budget.sharing.mode === 'replica-share' ? 1 : 0),
    );
    gauge('budget_queue_length', 'Calls waiting for their turn', () => budget.snapshot().queued);
    gauge('upstream_in_flight', 'Calls to Deskie under way', () => budget.snapshot().inFlight);
    if (clientTokens !== undefined) gauge('client_tokens', 'Client tokens accepted (service mode): PROXY_TOKENS, or PROXY_TOKENS_FILE as last read', clientTokens);
    gauge('store_entries', 'Answers held in this process (with REDIS_URL: its fresh copies, L1)', () => store.entries);
    gauge('store_bytes', 'Bytes held in this process, as counted against CACHE_MAX_BYTES (with REDIS_URL: L1_MAX_BYTES)', () => store.bytes);
    gauge('store_max_bytes', 'CACHE_MAX_BYTES (with REDIS_URL: L1_MAX_BYTES)', () => maxBytes);
    const { shared } = store;
    if (shared !== undefined) {
      gauge('redis_up', '1 while this replica reaches Redis and it answers in time (REDIS_URL)', () => (store.shared?.redis === 'up' ? 1 : 0));
      new Counter({
        name: `${METRIC_PREFIX}redis_errors_total`,
        help: 'Redis commands that failed or timed out, and failed attempts to connect',
        registers,
        collect() {
          this.reset();
          this.inc(store.shared?.errors ?? 0);
        },
      });
    }
    new Counter({
      name: `${METRIC_PREFIX}store_evictions_total`,
      help: 'Answers dropped before their time to stay within CACHE_MAX_BYTES',
      registers,
      collect() {
        this.reset();
        this.inc(store.evictions);
      },
    });
  }

  /**
   * The key a request's count is kept under: its route and period class,
   * known once per checked query, with its outcome and status added by
   * count(). `periodClass` undefined: refused before the period was known.
   */
  static requestBase(endpoint: EndpointName, periodClass: FreshnessClass | undefined): number {
    const classIndex = periodClass === undefined ? NO_PERIOD : PERIOD_CLASSES.indexOf(periodClass);
    return (ENDPOINT_NAMES.indexOf(endpoint) * PERIOD_CLASSES.length + classIndex) * REQUEST_OUTCOMES.length;
  }

  /** One answered request. */
  count(base: number, outcome: RequestOutcome, status: number): void {
    const key = (base + OUTCOME_INDEX[outcome]) * STATUS_SPAN + status;
    this.#requests.set(key, (this.#requests.get(key) ?? 0) + 1);
  }

  /** A request that showed the client token named `client`. */
  countClient(client: string): void {
    this.#clients.set(client, (this.#clients.get(client) ?? 0) + 1);
  }

  /** A refusal of Deskie's answered from memory, without a call. */
  countRemembered(endpoint: EndpointName): void {
    const route = ENDPOINT_NAMES.indexOf(endpoint);
    this.#remembered[route] = (this.#remembered[route] ?? 0) + 1;
  }

  /** One call to Deskie: its status (undefined when it gave none) and how long it took. */
  countUpstreamCall(endpoint: EndpointName, status: number | undefined, seconds: number): void {
    const route = ROUTE_LABELS[ENDPOINT_NAMES.indexOf(endpoint)] as string;
    this.#upstreamCalls.inc({ route, status: status === undefined ? 'failed' : String(status) });
    this.#upstreamSeconds.observe({ route }, seconds);
  }

  get contentType(): string {
    return this.#registry.contentType;
  }

  /** The exposition text: this app's metrics and the process's. */
  async text(): Promise<string> {
    const [own, process] = await Promise.all([this.#registry.metrics(), processMetrics().metrics()]);
    return `${own}\n${process}`;
  }
}

function decodeKey(key: number): { route: number; periodClass: number; outcome: number; status: number } {
  const status = key % STATUS_SPAN;
  let rest = (key - status) / STATUS_SPAN;
  const outcome = rest % REQUEST_OUTCOMES.length;
  rest = (rest - outcome) / REQUEST_OUTCOMES.length;
  const periodClass = rest % PERIOD_CLASSES.length;
  const route = (rest - periodClass) / PERIOD_CLASSES.length;
  return { route, periodClass, outcome, status };
}
