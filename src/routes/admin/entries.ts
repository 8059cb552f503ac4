import type { FastifyBaseLogger, FastifyInstance } from 'fastify';
import Type, { type Static } from 'typebox';
import { type AnswerStore, answerBytes, type CachedAnswer, type EntryFilter, entryLabel, entryMatches, PARTITION_ID_LENGTH } from '../../cache/store.js';
import { ENDPOINTS, type EndpointName, routeLabel } from '../../deskie/endpoints.js';
import { CUSTOM_RANGE_CLASSES, FRESHNESS_CLASSES, type FreshnessClass, PERIODS } from '../../deskie/periods.js';
import { describeVariant, type Variant } from '../../formats/representations.js';
import { badRequest, storeUnreachable } from '../../http/errors.js';
import type { Services } from '../../services.js';
import { errorResponse, responseHeaders } from '../stats-schema.js';
import { mustBe, queryRefusal } from './validation.js';

export interface EntriesOptions extends Pick<Services, 'store' | 'clock'> {
  readonly log: FastifyBaseLogger;
}

/** Entries one GET /admin/entries answers when it names no `limit`, and the most it names. */
export const DEFAULT_ENTRIES_PAGE = 100;
export const MAX_ENTRIES_PAGE = 1000;

const ENTRIES = '/admin/entries';

/** Deskie's route names (`stats_leaderboard`), as the access log and metrics name them, to the endpoint. */
const ENDPOINT_BY_ROUTE: ReadonlyMap<string, EndpointName> = new Map(
  Object.values(ENDPOINTS).map((endpoint) => [routeLabel(endpoint.path), endpoint.name]),
);
/** An instant of a custom window as the entries list writes it (luxon's toISO), or in UTC. */
const ISO_INSTANT = '\\d{4}-\\d{2}-\\d{2}T\\d{2}:\\d{2}(:\\d{2}(\\.\\d{1,9})?)?(Z|[+-]\\d{2}:\\d{2})';

/** What each parameter takes, as its description and its 400 say it. */
const ACCEPTS = {
  endpoint: `one of ${[...ENDPOINT_BY_ROUTE.keys()].join(', ')}`,
  period:
    `a period (${PERIODS.join(', ')}), ${CUSTOM_RANGE_CLASSES.join(' or ')} for every custom range of that class, ` +
    `or a custom window as ${ENTRIES} lists it (<from>/<to>, ISO 8601 instants with an offset; write + as %2B)`,
  partition: `the ${PARTITION_ID_LENGTH}-character id ${ENTRIES} lists`,
  limit: `an integer from 1 to ${MAX_ENTRIES_PAGE}`,
  offset: 'a whole number (0 or more)',
  all: 'true',
};

/** Which entries a request is about: every filter given must hold. */
const FILTERS = {
  endpoint: Type.Optional(Type.Enum([...ENDPOINT_BY_ROUTE.keys()], { description: `Entries of one endpoint: ${ACCEPTS.endpoint}.` })),
  period: Type.Optional(
    Type.Union([Type.Enum([...FRESHNESS_CLASSES]), Type.String({ pattern: `^${ISO_INSTANT}/${ISO_INSTANT}$` })], { description: `Entries of ${ACCEPTS.period}.` }),
  ),
  partition: Type.Optional(Type.String({ pattern: `^[A-Za-z0-9_-]{${PARTITION_ID_LENGTH}}$`, description: `One credential's entries: ${ACCEPTS.partition}.` })),
};
const FILTER_NAMES = Object.keys(FILTERS) as Array<keyof typeof FILTERS>;

const ListQuery = Type.Object(
  {
    ...FILTERS,
    limit: Type.Optional(Type.String({ pattern: `^(?:[1-9]\\d{0,2}|${MAX_ENTRIES_PAGE})$`, description: `Entries a page: ${ACCEPTS.limit}; ${DEFAULT_ENTRIES_PAGE} when absent.` })),
    offset: Type.Optional(Type.String({ pattern: '^(?:0|[1-9]\\d{0,8})$', description: `Entries to skip: ${ACCEPTS.offset}; 0 when absent.` })),
  },
  { additionalProperties: false },
);
const PurgeQuery = Type.Object(
  { ...FILTERS, all: Type.Optional(Type.Literal('true', { description: 'Every entry: given alone, never with a filter.' })) },
  { additionalProperties: false },
);

const Entry = Type.Object({
  endpoint: Type.String({ examples: ['stats_leaderboard'] }),
  period: Type.String({ description: 'The period, or a custom window as <from>/<to>.' }),
  freshness: Type.String({ description: 'The period, or the class of a custom range, that sets its lifetime.' }),
  formats: Type.Array(Type.String(), { description: 'The formats rendered so far, as `csv+bom` or `rows (gzip)`.' }),
  partition: Type.String({ description: "The credential's partition id: never the credential." }),
  bytes: Type.Integer(),
  fetchedAt: Type.String({ format: 'date-time' }),
  ageSeconds: Type.Integer(),
  ttlSeconds: Type.Integer({ description: 'Negative once it is stale and only kept for stale-if-error.' }),
  hits: Type.Integer(),
});

const OWN_HEADERS = responseHeaders('X-Request-Id', 'Cache-Control');
const REFUSED_FILTER = errorResponse('A parameter or value that is refused, named in `error` with what is accepted; nothing is done.', OWN_HEADERS);
const STORE_UNREACHABLE = errorResponse(
  'With REDIS_URL, Redis cannot be reached: the entries are the replicas’, so this replica alone does not answer for them.',
  responseHeaders('X-Request-Id', 'Cache-Control', 'Retry-After'),
);

const LIST_SCHEMA = {
  summary: 'List cached entries (filter with endpoint=, period= and partition=; paginated)',
  description: 'Never the key, which holds the query’s filter values. Ordered by endpoint, period, partition and key, so pages do not shift while a client walks them.',
  querystring: ListQuery,
  response: {
    200: Type.Object(
      { total: Type.Integer({ description: 'Entries that match.' }), offset: Type.Integer(), limit: Type.Integer(), entries: Type.Array(Entry) },
      { description: 'A page of the matching entries.', headers: OWN_HEADERS },
    ),
    400: REFUSED_FILTER,
    503: STORE_UNREACHABLE,
  },
};
const PURGE_SCHEMA = {
  summary: 'Purge entries (endpoint=, period=, partition= or all=true; no filter is a 400)',
  querystring: PurgeQuery,
  response: {
    200: Type.Object({ removed: Type.Integer() }, { description: 'How many entries were removed.', headers: OWN_HEADERS }),
    400: REFUSED_FILTER,
    503: STORE_UNREACHABLE,
  },
};

/** GET and DELETE /admin/entries: the cache's entries, listed or purged. */
export function entriesRoutes(admin: FastifyInstance, { store, clock, log }: EntriesOptions): void {
  admin.get<{ Querystring: Static<typeof ListQuery> }>(
    ENTRIES,
    // Only what is declared: no HEAD made for this GET.
    { schema: LIST_SCHEMA, schemaErrorFormatter: queryRefusal(`GET ${ENTRIES}`, accepts([...FILTER_NAMES, 'limit', 'offset'])), exposeHeadRoute: false },
    async (request) => {
      needsSharedStore(store, 'listed');
      const { limit: pageSize, offset: skipped, ...filter } = request.query;
      const matching = (await store.list()).filter(entryMatches(entryFilter(filter))).sort(byListOrder);
      const limit = Number(pageSize ?? DEFAULT_ENTRIES_PAGE);
      const offset = Number(skipped ?? 0);
      const nowMs = clock();
      const entries = matching.slice(offset, offset + limit).map((answer) => describeEntry(answer, nowMs));
      log.info({ admin: 'list', filter, total: matching.length, listed: entries.length }, 'admin: entries listed');
      return { total: matching.length, offset, limit, entries };
    },
  );

  admin.delete<{ Querystring: Static<typeof PurgeQuery> }>(
    ENTRIES,
    { schema: PURGE_SCHEMA, schemaErrorFormatter: queryRefusal(`DELETE ${ENTRIES}`, accepts([...FILTER_NAMES, 'all'])) },
    async (request) => {
      const { all, ...filter } = request.query;
      const named = FILTER_NAMES.filter((name) => filter[name] !== undefined);
      if (all !== undefined && named.length > 0) throw badRequest(`all=true purges every entry: give it alone, or filter with ${FILTER_NAMES.join(', ')} without it`);
      if (all === undefined && named.length === 0) {
        throw badRequest(`give a filter (${FILTER_NAMES.map((name) => `${name}=`).join(', ')}) or all=true: an empty filter never purges everything`);
      }
      const selected = entryFilter(filter);
      needsSharedStore(store, 'purged');
      // Loads under way are purged too: what they bring is answered, not stored (see AnswerStore.purge).
      const removed = await store.purge(selected);
      log.info({ admin: 'purge', filter: request.query, removed }, 'admin: entries purged');
      return { removed };
    },
  );
}

const accepts = (names: ReadonlyArray<keyof typeof ACCEPTS>): Record<string, string> => Object.fromEntries(names.map((name) => [name, ACCEPTS[name]]));

/** Without Redis, a list would show this replica's copies only and a purge miss the others: both are refused instead. */
function needsSharedStore(store: AnswerStore, action: string): void {
  const { shared } = store;
  if (shared !== undefined && shared.redis !== 'up') throw storeUnreachable(action);
}

function readWindow(text: string): { fromMs: number; toMs: number } | undefined {
  const [fromMs, toMs] = text.split('/').map((instant) => Date.parse(instant)) as [number, number];
  return Number.isNaN(fromMs) || Number.isNaN(toMs) ? undefined : { fromMs, toMs };
}

/** The entries a request's filters select; a custom window whose instants do not parse is refused (the schema checked its form). */
function entryFilter({ endpoint, period, partition }: Static<typeof PurgeQuery>): EntryFilter {
  const periodClass = period !== undefined && (FRESHNESS_CLASSES as readonly string[]).includes(period) ? (period as FreshnessClass) : undefined;
  // A custom window is matched by its instants, however its offsets are written.
  const window = period === undefined || periodClass !== undefined ? undefined : readWindow(period);
  if (period !== undefined && periodClass === undefined && window === undefined) throw mustBe('period', ACCEPTS.period, period);
  return {
    ...(endpoint === undefined ? {} : { endpoint: ENDPOINT_BY_ROUTE.get(endpoint) }),
    ...(period === undefined ? {} : { period: periodClass ?? window }),
    ...(partition === undefined ? {} : { partition }),
  };
}

/** Endpoint, period, partition, then key: an order hits do not change, so pages do not shift under a client walking them. */
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
function describeEntry(answer: CachedAnswer, nowMs: number): Static<typeof Entry> {
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
    ttlSeconds: Math.floor((answer.expiresAtMs - nowMs) / 1000),
    hits: answer.hits,
  };
}

/** `normalized`, `csv+bom`, `rows (gzip)`: a rendered variant as an operator reads it. */
function formatName(variant: Variant): string {
  const { rendering, coding } = describeVariant(variant);
  return coding === 'identity' ? rendering : `${rendering} (${coding})`;
}
