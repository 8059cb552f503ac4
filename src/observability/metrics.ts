import { collectDefaultMetrics, Counter, Gauge, Histogram, Registry } from 'prom-client';
import type { AnswerStore } from '../cache/store.js';
import { ENDPOINTS, type EndpointName, routeLabel } from '../deskie/endpoints.js';
import type { FreshnessClass } from '../deskie/periods.js';
import type { UpstreamBudget } from '../upstream/budget/budget.js';

export const METRIC_PREFIX = 'deskie_proxy_';

const ROUTE_LABELS = Object.fromEntries(Object.values(ENDPOINTS).map((endpoint) => [endpoint.name, routeLabel(endpoint.path)])) as Readonly<Record<EndpointName, string>>;
/** The period_class label: Deskie's cache table's rows, and `none` for a request refused before its period was known. */
const NO_PERIOD = 'none';

/** How a request was answered, as the metrics and the access log name it. */
export const REQUEST_OUTCOMES = ['hit', 'miss', 'stale', 'revalidating', 'collapsed', 'refreshed', 'error'] as const;
export const STREAM_DROP_REASONS = ['slow-consumer', 'credential-refused'] as const;
export type StreamDropReason = (typeof STREAM_DROP_REASONS)[number];
export type RequestOutcome = (typeof REQUEST_OUTCOMES)[number];
/** Outcomes whose answer took no call of its own. */
// A revalidating answer (the expired one while its scheduled refresh runs) takes no call of its own; a stale one is Deskie's failure.
const SAVING_OUTCOMES: ReadonlySet<RequestOutcome> = new Set(['hit', 'collapsed', 'revalidating']);

/** Upstream latency buckets in seconds: Deskie answers in tens of ms to seconds; a `page=all` merge may take a minute. */
const UPSTREAM_BUCKETS = [0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60];

/** Default process metrics, once per process: prom-client's event-loop monitor and GC observer are process-wide, and tests build many apps. */
let processRegistry: Registry | undefined;
function processMetrics(): Registry {
  if (processRegistry === undefined) {
    processRegistry = new Registry();
    collectDefaultMetrics({ register: processRegistry });
  }
  return processRegistry;
}

/** The proxy's Prometheus metrics: no label value comes from a client's query. */
export class ProxyMetrics {
  readonly #registry = new Registry();
  readonly #requests: Counter<'route' | 'period_class' | 'outcome' | 'status'>;
  readonly #clients: Counter<'client'>;
  readonly #saved: Counter<'route'>;
  readonly #stale: Counter<'route'>;
  readonly #upstreamCalls: Counter<'route' | 'status'>;
  readonly #upstreamSeconds: Histogram<'route'>;
  readonly #streamsOpen: Gauge;
  readonly #streamEvents: Counter;
  readonly #streamsDropped: Counter<'reason'>;

  constructor(sources: { store: AnswerStore; budget: UpstreamBudget; maxBytes: number; clientTokens?: () => number }) {
    const registers = [this.#registry];
    const counter = <L extends string>(name: string, help: string, labelNames: readonly L[]): Counter<L> =>
      new Counter({ name: `${METRIC_PREFIX}${name}`, help, labelNames, registers });
    this.#requests = counter(
      'requests_total',
      'Requests to the statistics routes, by route, period class, how the cache answered, and status',
      ['route', 'period_class', 'outcome', 'status'],
    );
    this.#clients = counter(
      'client_requests_total',
      "Requests to the statistics routes that showed a valid client token (service mode), by the token's name",
      ['client'],
    );
    this.#upstreamCalls = counter(
      'upstream_calls_total',
      'Calls to Deskie, by route and Deskie status (`failed`: no answer: timeout, refused connection, bad body)',
      ['route', 'status'],
    );
    this.#upstreamSeconds = new Histogram({
      name: `${METRIC_PREFIX}upstream_duration_seconds`,
      help: "Time Deskie took to answer one call, by route",
      labelNames: ['route'],
      buckets: UPSTREAM_BUCKETS,
      registers,
    });
    this.#saved = counter(
      'upstream_calls_saved_total',
      'Answers given without a call of their own to Deskie: cache hits, requests that waited for another call, refusals answered from memory',
      ['route'],
    );
    this.#stale = counter(
      'stale_answers_total',
      'Expired answers served because Deskie failed (stale-if-error), by route',
      ['route'],
    );
    for (const endpoint of Object.values(ENDPOINTS)) {
      // Zero from the start, so a rate over them is defined before the first answer.
      this.#saved.inc({ route: routeLabel(endpoint.path) }, 0);
      this.#stale.inc({ route: routeLabel(endpoint.path) }, 0);
    }

    this.#streamsOpen = new Gauge({ name: `${METRIC_PREFIX}event_streams_open`, help: 'Event streams (Accept: text/event-stream) open now', registers });
    this.#streamEvents = new Counter({ name: `${METRIC_PREFIX}stream_events_total`, help: 'Answers sent as events on event streams (heartbeats not counted)', registers });
    this.#streamsDropped = counter(
      'event_streams_dropped_total',
      "Event streams the proxy ended: its client did not read what it was sent (slow-consumer), or Deskie refused its credential (credential-refused)",
      ['reason'],
    );
    for (const reason of STREAM_DROP_REASONS) this.#streamsDropped.inc({ reason }, 0);

    registerStateMetrics(registers, sources);
  }

  streamOpened(): void {
    this.#streamsOpen.inc();
  }

  streamClosed(): void {
    this.#streamsOpen.dec();
  }

  /** Requests, answers without a call of their own, stale answers and calls to Deskie since start, and streams open now: each metric summed over its labels. */
  async totals() {
    const sum = async (metric: Counter<string> | Gauge): Promise<number> => (await metric.get()).values.reduce((total, { value }) => total + value, 0);
    const [requests = 0, saved = 0, stale = 0, upstreamCalls = 0, streamsOpen = 0] = await Promise.all(
      [this.#requests, this.#saved, this.#stale, this.#upstreamCalls, this.#streamsOpen].map(sum),
    );
    return { requests, saved, stale, upstreamCalls, streamsOpen };
  }

  streamEventSent(): void {
    this.#streamEvents.inc();
  }

  streamDropped(reason: StreamDropReason): void {
    this.#streamsDropped.inc({ reason });
  }

  /** One answered request; `periodClass` undefined: refused before the period was known. */
  count(endpoint: EndpointName, periodClass: FreshnessClass | undefined, outcome: RequestOutcome, status: number): void {
    const route = ROUTE_LABELS[endpoint];
    this.#requests.inc({ route, period_class: periodClass ?? NO_PERIOD, outcome, status: String(status) });
    if (SAVING_OUTCOMES.has(outcome)) this.#saved.inc({ route });
    else if (outcome === 'stale') this.#stale.inc({ route });
  }

  countClient(client: string): void {
    this.#clients.inc({ client });
  }

  /** A refusal of Deskie's answered from memory, without a call. */
  countRemembered(endpoint: EndpointName): void {
    this.#saved.inc({ route: ROUTE_LABELS[endpoint] });
  }

  /** One call to Deskie: its status (undefined when it gave none) and how long it took. */
  countUpstreamCall(endpoint: EndpointName, status: number | undefined, seconds: number): void {
    const route = ROUTE_LABELS[endpoint];
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

/** The state of the budget and the store, read when Prometheus scrapes. */
function registerStateMetrics(
  registers: Registry[],
  { store, budget, maxBytes, clientTokens }: ConstructorParameters<typeof ProxyMetrics>[0],
): void {
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
