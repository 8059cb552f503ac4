import type { FastifyBaseLogger, FastifyError, FastifyInstance, FastifyRequest } from 'fastify';
import { routeLabel } from '../../observability/access-log.js';
import { bearerMatcher } from '../../auth/bearer.js';
import { MAX_AUTHORIZATION_BYTES } from '../../auth/header.js';
import type { CachedStats } from '../../cache/cached-stats.js';
import { type AnswerStore, answerBytes, type CachedAnswer, type CacheOutcome, entryLabel, PARTITION_ID_LENGTH, renderedVariant } from '../../cache/store.js';
import { ENDPOINTS, type EndpointName, type EndpointSpec } from '../../deskie/endpoints.js';
import { CUSTOM_RANGE_CLASSES, FRESHNESS_CLASSES, PERIODS } from '../../deskie/periods.js';
import { type ParsedQuery, parseQueryString, QUERY_STRING_REFUSAL } from '../../deskie/query-string.js';
import { parseStatsQuery, type QueryContext } from '../../deskie/query.js';
import { badRequest, ProxyError, storeUnreachable, UpstreamAnswer } from '../../http/errors.js';
import { BOM_PARAMETER, chooseFormat, describeVariant, FORMAT_PARAMETER, type Variant, variantOf, wantsBom } from '../../formats/representations.js';

export interface AdminRouteOptions {
  /** ADMIN_TOKEN: every admin request must carry it as a bearer token. */
  readonly token: string;
  readonly store: AnswerStore;
  readonly stats: CachedStats;
  /** What the stats routes check queries with, for prewarm's queries. */
  readonly queryContext: Omit<QueryContext, 'nowMs'>;
  readonly clock: () => number;
  readonly log: FastifyBaseLogger;
  /** In service mode, the proxy's own credential: prewarm fetches with it and takes none in its body. */
  readonly serviceAuthorization: string | undefined;
}

/** Entries one GET /admin/entries answers when it names no `limit`, and the most it names. */
export const DEFAULT_ENTRIES_PAGE = 100;
export const MAX_ENTRIES_PAGE = 1000;
/** Queries one prewarm takes: the morning's queries of a dashboard fleet, and a bound on the calls one request can start. */
export const MAX_PREWARM_QUERIES = 1000;
/**
 * Prewarm's queries fetched at the same time. Each goes through the upstream
 * budget like a client's; a few at once finish a list sooner without
 * filling the budget's queue, so dashboards' own misses still get their turn.
 */
export const PREWARM_CONCURRENCY = 4;
/** Largest prewarm body read: 1,000 queries of about a kilobyte each. */
export const PREWARM_BODY_LIMIT_BYTES = 1024 * 1024;

const ENTRIES = '/admin/entries';
const PREWARM = '/admin/prewarm';
const CHALLENGE = 'Bearer realm="admin"';

/** Deskie's route names (`stats_leaderboard`), as the access log and metrics name them, to the endpoint. */
const ENDPOINT_BY_ROUTE: ReadonlyMap<string, EndpointName> = new Map(
  Object.values(ENDPOINTS).map((endpoint) => [routeLabel(endpoint.path), endpoint.name]),
);
const ROUTE_NAMES = [...ENDPOINT_BY_ROUTE.keys()];
const ENDPOINT_BY_PATH: ReadonlyMap<string, EndpointSpec> = new Map(Object.values(ENDPOINTS).map((endpoint) => [endpoint.path, endpoint]));
const ROUTE_PATHS = [...ENDPOINT_BY_PATH.keys()];

/** Period names a filter takes: each period, and the two classes of custom ranges. */
const PERIOD_CLASSES: ReadonlySet<string> = new Set(FRESHNESS_CLASSES);
/** An instant of a custom window as the entries list writes it (luxon's toISO), or in UTC. */
const ISO_INSTANT = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}(:\d{2}(\.\d{1,9})?)?(Z|[+-]\d{2}:\d{2})$/;
const PARTITION_ID = new RegExp(`^[A-Za-z0-9_-]{${PARTITION_ID_LENGTH}}$`);
const PAGE_SIZE = /^[1-9]\d{0,3}$/;
const OFFSET = /^(0|[1-9]\d{0,8})$/;
/**
 * HTTP Basic credentials (RFC 7617): what the stats routes accept
 * (routes/stats.ts), and base64 of `user:password` besides, so a typo is a
 * 400 here rather than a Deskie 401 for each query.
 */
const BASIC_CREDENTIALS = /^basic\s+([A-Za-z0-9+/]+={0,2})\s*$/i;

const FILTERS = ['endpoint', 'period', 'partition'] as const;
const LIST_PARAMETERS = [...FILTERS, 'limit', 'offset'];
const PURGE_PARAMETERS = [...FILTERS, 'all'];
const PREWARM_FIELDS = ['authorization', 'queries'];
const PREWARM_SHAPE = '{"authorization": "Basic ...", "queries": ["/api/stats_leaderboard.json?period=today", ...]}';
const PREWARM_SERVICE_SHAPE = '{"queries": ["/api/stats_leaderboard.json?period=today", ...]}';

/** Which entries an admin request is about; every condition given must hold. */
interface EntryFilter {
  readonly endpoint?: EndpointName;
  /** A period name or a custom range class, matched against the entry's freshness class. */
  readonly periodClass?: string;
  /** A custom window, matched by its instants however its offsets are written. */
  readonly window?: { readonly fromMs: number; readonly toMs: number };
  readonly partition?: string;
}

/** One prewarm query, checked. */
interface PrewarmQuery {
  /** As the request gave it, for the answer. */
  readonly query: string;
  readonly endpoint: EndpointSpec;
  readonly queryString: string;
  /** The format its own `format=` (and `bom=`) ask for, uncompressed: what a plain client gets. */
  readonly variant: Variant;
}

type PrewarmResult =
  | { readonly query: string; readonly outcome: CacheOutcome; readonly status: 200 }
  | { readonly query: string; readonly outcome: 'error'; readonly status: number; readonly error: string };

/** An error the app's error handler answers with its status and message (4xx). */
function clientError(statusCode: number, message: string): Error & { statusCode: number } {
  return Object.assign(new Error(message), { statusCode });
}

/**
 * The admin API under /admin/ (registered only when ADMIN_TOKEN is set): list,
 * purge and prewarm cache entries. Never cached (the operations context
 * sends `Cache-Control: no-store`), never forwarded, and every request must
 * carry the token, whatever else is wrong with it.
 */
export function adminRoutes(app: FastifyInstance, options: AdminRouteOptions): void {
  const { store, log } = options;
  const allowed = bearerMatcher(options.token);

  app.register(async (admin) => {
    // onRequest: before any body is read. One message whatever was wrong (none,
    // another scheme, a wrong token), so a caller learns nothing from it.
    admin.addHook('onRequest', async (request) => {
      if (!allowed(request.headers.authorization)) {
        throw new ProxyError('UNAUTHORIZED', 'a valid admin token is required: Authorization: Bearer <ADMIN_TOKEN>', 401, {
          'www-authenticate': CHALLENGE,
        });
      }
    });

    admin.get(ENTRIES, async (request) => {
      const parameters = readParameters(request, LIST_PARAMETERS, `GET ${ENTRIES}`);
      needsSharedStore(store, 'listed');
      const filter = readFilter(parameters);
      const limit = readInteger(parameters, 'limit', PAGE_SIZE, `an integer from 1 to ${MAX_ENTRIES_PAGE}`, DEFAULT_ENTRIES_PAGE, MAX_ENTRIES_PAGE);
      const offset = readInteger(parameters, 'offset', OFFSET, 'a whole number (0 or more)', 0);
      const nowMs = options.clock();
      const matching = (await selectEntries(store, filter)).sort(byListOrder);
      const entries = matching.slice(offset, offset + limit).map((answer) => describeEntry(answer, nowMs));
      log.info({ admin: 'list', filter: filterText(parameters), total: matching.length, listed: entries.length }, 'admin: entries listed');
      return { total: matching.length, offset, limit, entries };
    });

    admin.delete(ENTRIES, async (request) => {
      const parameters = readParameters(request, PURGE_PARAMETERS, `DELETE ${ENTRIES}`);
      const named = FILTERS.filter((name) => parameters[name] !== undefined);
      if (parameters['all'] !== undefined) {
        if (parameters['all'] !== 'true') throw badRequest(`all must be true; got ${JSON.stringify(parameters['all'])}`);
        if (named.length > 0) throw badRequest(`all=true purges every entry: give it alone, or filter with ${FILTERS.join(', ')} without it`);
      } else if (named.length === 0) {
        throw badRequest(`give a filter (${FILTERS.map((name) => `${name}=`).join(', ')}) or all=true: an empty filter never purges everything`);
      }
      const filter = readFilter(parameters);
      needsSharedStore(store, 'purged');
      // Keys first, then deletes: the store is not changed while it is walked.
      const keys = (await selectEntries(store, filter)).map((answer) => answer.key);
      const deleted = await Promise.all(keys.map((key) => store.delete(key)));
      const removed = deleted.filter(Boolean).length;
      log.info({ admin: 'purge', filter: filterText(parameters), removed }, 'admin: entries purged');
      return { removed };
    });

    // Its own context: the only admin route that reads a body, and only JSON.
    admin.register(async (prewarm) => {
      prewarm.removeAllContentTypeParsers();
      const parseJson = prewarm.getDefaultJsonParser('error', 'error');
      prewarm.addContentTypeParser('application/json', { parseAs: 'string', bodyLimit: PREWARM_BODY_LIMIT_BYTES }, (request, body, done) => {
        // Never the parser's own message: V8 quotes the text around a syntax error, which can be the credential.
        parseJson(request, body as string /* parseAs: 'string' */, (error, parsed) => done(error ? badRequest(`the body is not valid JSON; send ${PREWARM_SHAPE}`) : null, parsed));
      });
      // Fastify's own refusals of a body, said the way the rest of the API says things; the app's handler answers.
      prewarm.setErrorHandler((error: FastifyError) => {
        if (error.code === 'FST_ERR_CTP_INVALID_MEDIA_TYPE') {
          throw clientError(415, `POST ${PREWARM} takes a JSON body (Content-Type: application/json): ${PREWARM_SHAPE}`);
        }
        if (error.code === 'FST_ERR_CTP_BODY_TOO_LARGE') {
          throw clientError(413, `the body is larger than ${PREWARM_BODY_LIMIT_BYTES} bytes; send at most ${MAX_PREWARM_QUERIES} queries`);
        }
        throw error;
      });
      prewarm.post(PREWARM, { bodyLimit: PREWARM_BODY_LIMIT_BYTES }, async (request) => {
        const { authorization, queries } = readPrewarm(request.body, options.queryContext, options.clock(), options.serviceAuthorization);
        const startedAt = performance.now();
        // A thousand queries may wait on the budget for many minutes with nothing sent: past
        // CONNECTION_TIMEOUT_MS, which bounds one client's miss. Only this request's; Node resets it for the next.
        request.raw.socket.setTimeout(0);
        const results = await prewarmAll(options, authorization, queries);
        const outcomes: Record<string, number> = {};
        for (const { outcome } of results) outcomes[outcome] = (outcomes[outcome] ?? 0) + 1;
        log.info({ admin: 'prewarm', queries: queries.length, outcomes, ms: Math.round(performance.now() - startedAt) }, 'admin: prewarm done');
        return { results };
      });
    });
  });
}

/** The query string's parameters, each given once, all among `accepted`. */
function readParameters(request: FastifyRequest, accepted: readonly string[], route: string): Readonly<Record<string, string>> {
  const query = request.query as ParsedQuery;
  const refused = query[QUERY_STRING_REFUSAL];
  if (refused !== undefined) throw refused;
  const parameters: Record<string, string> = {};
  for (const [name, value] of Object.entries(query)) {
    if (value === undefined) continue;
    if (!accepted.includes(name)) throw badRequest(`unknown parameter ${name}; ${route} accepts ${accepted.join(', ')}`);
    if (typeof value !== 'string') throw badRequest(`parameter ${name} is given ${value.length} times; give it once`);
    parameters[name] = value;
  }
  return parameters;
}

function readInteger(
  parameters: Readonly<Record<string, string>>,
  name: string,
  pattern: RegExp,
  accepted: string,
  absent: number,
  maximum = Number.MAX_SAFE_INTEGER,
): number {
  const value = parameters[name];
  if (value === undefined) return absent;
  if (!pattern.test(value) || Number(value) > maximum) throw badRequest(`${name} must be ${accepted}; got ${JSON.stringify(value)}`);
  return Number(value);
}

function readFilter(parameters: Readonly<Record<string, string>>): EntryFilter {
  const { endpoint, period, partition } = parameters;
  const filter: { -readonly [K in keyof EntryFilter]: EntryFilter[K] } = {};
  if (endpoint !== undefined) {
    filter.endpoint = ENDPOINT_BY_ROUTE.get(endpoint);
    if (filter.endpoint === undefined) throw badRequest(`endpoint must be one of ${ROUTE_NAMES.join(', ')}; got ${JSON.stringify(endpoint)}`);
  }
  if (period !== undefined) {
    if (PERIOD_CLASSES.has(period)) filter.periodClass = period;
    else {
      filter.window = readWindow(period);
      if (filter.window === undefined) {
        throw badRequest(
          `period must be a period (${PERIODS.join(', ')}), ${CUSTOM_RANGE_CLASSES.join(' or ')} for every custom range of that class, ` +
            `or a custom window as ${ENTRIES} lists it (<from>/<to>, ISO 8601 instants with an offset; write + as %2B); got ${JSON.stringify(period)}`,
        );
      }
    }
  }
  if (partition !== undefined) {
    if (!PARTITION_ID.test(partition)) throw badRequest(`partition must be the ${PARTITION_ID_LENGTH}-character id ${ENTRIES} lists; got ${JSON.stringify(partition)}`);
    filter.partition = partition;
  }
  return filter;
}

/** A custom window `<from>/<to>` as instants, or undefined when it is not one. */
function readWindow(text: string): { fromMs: number; toMs: number } | undefined {
  const [from, to, ...rest] = text.split('/');
  if (from === undefined || to === undefined || rest.length > 0 || !ISO_INSTANT.test(from) || !ISO_INSTANT.test(to)) return undefined;
  const fromMs = Date.parse(from);
  const toMs = Date.parse(to);
  return Number.isNaN(fromMs) || Number.isNaN(toMs) ? undefined : { fromMs, toMs };
}

/**
 * With a shared store, the entries are the cluster's: while Redis cannot be
 * reached, a list would show this replica's copies only, and a purge would
 * leave Redis and the other replicas as they are. Both are refused instead.
 */
function needsSharedStore(store: AnswerStore, action: string): void {
  const { shared } = store;
  if (shared !== undefined && shared.redis !== 'up') throw storeUnreachable(action);
}

/** The filter as the request wrote it, for the log line (no credential can be in it). */
function filterText(parameters: Readonly<Record<string, string>>): Record<string, string> {
  const text: Record<string, string> = {};
  for (const name of [...FILTERS, 'all']) if (parameters[name] !== undefined) text[name] = parameters[name];
  return text;
}

async function selectEntries(store: AnswerStore, filter: EntryFilter): Promise<CachedAnswer[]> {
  const selected: CachedAnswer[] = [];
  for (const answer of await store.list()) if (matches(answer, filter)) selected.push(answer);
  return selected;
}

function matches(answer: CachedAnswer, filter: EntryFilter): boolean {
  const label = entryLabel(answer);
  if (filter.endpoint !== undefined && label.endpoint !== filter.endpoint) return false;
  if (filter.partition !== undefined && label.partition !== filter.partition) return false;
  if (filter.periodClass !== undefined && label.freshness !== filter.periodClass) return false;
  if (filter.window !== undefined) {
    const window = readWindow(label.period);
    if (window?.fromMs !== filter.window.fromMs || window.toMs !== filter.window.toMs) return false;
  }
  return true;
}

/**
 * Endpoint, period, partition, then key: an order that does not change when
 * entries are asked for, so pages do not shift under a client walking them.
 */
function byListOrder(a: CachedAnswer, b: CachedAnswer): number {
  const [first, second] = [entryLabel(a), entryLabel(b)];
  return (
    compareText(first.endpoint, second.endpoint) ||
    compareText(first.period, second.period) ||
    compareText(first.partition, second.partition) ||
    compareText(a.key, b.key)
  );
}

const compareText = (a: string, b: string): number => (a < b ? -1 : a > b ? 1 : 0);

/** What the entries list says of one entry: never its key, which holds the query's filter values. */
function describeEntry(answer: CachedAnswer, nowMs: number) {
  const label = entryLabel(answer);
  return {
    endpoint: routeLabel(ENDPOINTS[label.endpoint].path),
    period: label.period,
    freshness: label.freshness,
    formats: answer.variants.map(({ variant }) => formatName(variant)),
    partition: label.partition,
    bytes: answerBytes(answer),
    fetchedAt: new Date(answer.fetchedAtMs).toISOString(),
    ageSeconds: Math.floor((nowMs - answer.fetchedAtMs) / 1000),
    // Negative once it is stale and only kept for stale-if-error.
    ttlSeconds: Math.floor((answer.expiresAtMs - nowMs) / 1000),
    hits: answer.hits,
  };
}

/** `normalized`, `csv+bom`, `rows (gzip)`: a rendered variant as an operator reads it. */
function formatName(variant: Variant): string {
  const { rendering, coding } = describeVariant(variant);
  return coding === 'identity' ? rendering : `${rendering} (${coding})`;
}

/** Checks a whole prewarm body before anything is fetched; the first thing wrong is the 400. */
function readPrewarm(
  body: unknown,
  context: Omit<QueryContext, 'nowMs'>,
  nowMs: number,
  serviceAuthorization: string | undefined,
): { authorization: string; queries: PrewarmQuery[] } {
  if (typeof body !== 'object' || body === null || Array.isArray(body)) throw badRequest(`POST ${PREWARM} takes a JSON object: ${PREWARM_SHAPE}`);
  const fields = body as Record<string, unknown>;
  const unknown = Object.keys(fields).find((name) => !PREWARM_FIELDS.includes(name));
  if (unknown !== undefined) throw badRequest(`unknown field ${JSON.stringify(unknown)}; the body takes ${PREWARM_FIELDS.join(' and ')}: ${PREWARM_SHAPE}`);

  // Never quoted back, never logged: it is the credential.
  const { authorization, queries } = fields;
  const basic = typeof authorization === 'string' ? BASIC_CREDENTIALS.exec(authorization) : null;
  if (serviceAuthorization !== undefined) {
    if (authorization !== undefined) {
      throw badRequest(`in service mode prewarm fetches with the proxy's own Deskie credential: leave authorization out: ${PREWARM_SERVICE_SHAPE}`);
    }
  } else if (
    typeof authorization !== 'string' ||
    // What a dashboard's request may carry (auth/header.ts): longer would make entries no dashboard could reach.
    authorization.length > MAX_AUTHORIZATION_BYTES ||
    basic === null ||
    !Buffer.from(basic[1] as string, 'base64').toString('utf8').includes(':')
  ) {
    throw badRequest(
      `authorization must be HTTP Basic credentials ("Basic " and the base64 of e-mail:API key, at most ${MAX_AUTHORIZATION_BYTES} characters), exactly as the dashboards send them: ` +
        'entries are kept per credential',
    );
  }
  if (!Array.isArray(queries)) throw badRequest(`queries must be an array of paths with their query strings: ${PREWARM_SHAPE}`);
  if (queries.length === 0) throw badRequest(`queries is empty; give 1 to ${MAX_PREWARM_QUERIES}`);
  if (queries.length > MAX_PREWARM_QUERIES) {
    throw badRequest(`queries has ${queries.length} items; at most ${MAX_PREWARM_QUERIES} are accepted in one prewarm (queries[${MAX_PREWARM_QUERIES}] is the first past it)`);
  }
  const checked = queries.map((query: unknown, index) => {
    try {
      return readPrewarmQuery(query, context, nowMs);
    } catch (error) {
      // Every refusal is a ProxyError (a 400, or the 414 of an overlong query string): here the prewarm's 400.
      throw badRequest(`queries[${index}]: ${(error as Error).message}; nothing was fetched`);
    }
  });
  return { authorization: serviceAuthorization ?? (authorization as string), queries: checked };
}

/** One query as a dashboard would request it, checked as the stats routes check theirs. */
function readPrewarmQuery(query: unknown, context: Omit<QueryContext, 'nowMs'>, nowMs: number): PrewarmQuery {
  if (typeof query !== 'string') throw badRequest(`each query must be a string such as "/api/stats_leaderboard.json?period=today"`);
  const mark = query.indexOf('?');
  const path = mark === -1 ? query : query.slice(0, mark);
  const queryString = mark === -1 ? '' : query.slice(mark + 1);
  const endpoint = ENDPOINT_BY_PATH.get(path);
  if (endpoint === undefined) throw badRequest(`the path must be one of ${ROUTE_PATHS.join(', ')}, followed by the query string`);
  const parsed = parseStatsQuery(endpoint, parseQueryString(queryString), { ...context, nowMs });
  const format = chooseFormat(parsed.proxy[FORMAT_PARAMETER], undefined);
  const bom = format === 'csv' && wantsBom(parsed.proxy[BOM_PARAMETER]);
  return { query, endpoint, queryString, variant: variantOf(format, bom, 'identity') };
}

/** Fetches the queries a few at a time; each result in the place of its query. */
async function prewarmAll(options: AdminRouteOptions, authorization: string, queries: readonly PrewarmQuery[]): Promise<PrewarmResult[]> {
  const results: PrewarmResult[] = [];
  let next = 0;
  const worker = async (): Promise<void> => {
    while (next < queries.length) {
      const index = next++;
      results[index] = await prewarmOne(options, authorization, queries[index] as PrewarmQuery);
    }
  };
  await Promise.all(Array.from({ length: Math.min(PREWARM_CONCURRENCY, queries.length) }, worker));
  return results;
}

/**
 * One query through the cache, as a client's request goes: a fresh entry is
 * a hit and costs nothing, a miss waits its turn in the upstream budget and
 * joins a fetch already under way. Checked again now, so a period is the
 * window it means when it is fetched, not when the list was read.
 */
async function prewarmOne({ stats, clock, queryContext, log }: AdminRouteOptions, authorization: string, item: PrewarmQuery): Promise<PrewarmResult> {
  try {
    const nowMs = clock();
    const query = parseStatsQuery(item.endpoint, parseQueryString(item.queryString), { ...queryContext, nowMs });
    // A refresh's turn in the budget: dashboards waiting on a miss go first.
    const { answer, outcome } = await stats.answer(query, authorization, nowMs, item.variant, 'refresh');
    // A hit or a collapsed fetch may hold other formats only: render this one now, not on a dashboard's request.
    if (renderedVariant(answer, item.variant) === undefined) stats.representation(answer, item.variant);
    return { query: item.query, outcome, status: 200 };
  } catch (error) {
    if (error instanceof ProxyError || error instanceof UpstreamAnswer) {
      return { query: item.query, outcome: 'error', status: error.statusCode, error: error.message };
    }
    log.error({ err: error }, 'admin: a prewarm query failed unexpectedly');
    return { query: item.query, outcome: 'error', status: 500, error: 'internal error' };
  }
}
