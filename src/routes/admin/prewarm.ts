import type { FastifyBaseLogger, FastifyError, FastifyInstance, FastifySchemaValidationError } from 'fastify';
import Type, { type Static } from 'typebox';
import { MAX_AUTHORIZATION_BYTES } from '../../auth/header.js';
import { type CacheOutcome, renderedVariant } from '../../cache/store.js';
import { ENDPOINTS, type EndpointSpec } from '../../deskie/endpoints.js';
import { parseQueryString } from '../../deskie/query-string.js';
import { parseStatsQuery, type QueryContext } from '../../deskie/query.js';
import { BOM_PARAMETER, chooseFormat, FORMAT_PARAMETER, type Variant, variantOf, wantsBom } from '../../formats/representations.js';
import { badRequest, ProxyError, UpstreamAnswer } from '../../http/errors.js';
import type { Services } from '../../services.js';
import { errorResponse, responseHeaders } from '../stats-schema.js';
import type { Refusal } from './validation.js';

export interface PrewarmOptions extends Pick<Services, 'stats' | 'clock'> {
  readonly queryContext: Omit<QueryContext, 'nowMs'>;
  readonly log: FastifyBaseLogger;
  /** In service mode, the proxy's own credential: prewarm fetches with it and takes none in its body. */
  readonly serviceAuthorization: string | undefined;
}

/** Queries one prewarm takes: the morning's queries of a dashboard fleet, and a bound on the calls one request can start. */
export const MAX_PREWARM_QUERIES = 1000;
/** Prewarm's queries fetched at once: a few finish a list sooner without filling the budget's queue, so dashboards still get their turn. */
export const PREWARM_CONCURRENCY = 4;
/** Largest prewarm body read: 1,000 queries of about a kilobyte each. */
export const PREWARM_BODY_LIMIT_BYTES = 1024 * 1024;

const PREWARM = '/admin/prewarm';
const EXAMPLE_QUERY = '/api/stats_leaderboard.json?period=today';
const ENDPOINT_BY_PATH: ReadonlyMap<string, EndpointSpec> = new Map(Object.values(ENDPOINTS).map((endpoint) => [endpoint.path, endpoint]));
/** HTTP Basic credentials (RFC 7617; the scheme is case-insensitive), and `user:password` inside (checked in code): a typo is one 400, not a 401 per query. */
const BASIC_CREDENTIALS = '^[Bb][Aa][Ss][Ii][Cc]\\s+([A-Za-z0-9+/]+={0,2})\\s*$';
const AUTHORIZATION_ACCEPTED =
  `authorization must be HTTP Basic credentials ("Basic " and the base64 of e-mail:API key, at most ${MAX_AUTHORIZATION_BYTES} characters), exactly as the dashboards send them: ` +
  'entries are kept per credential';

const Queries = Type.Array(Type.String({ examples: [EXAMPLE_QUERY] }), {
  minItems: 1,
  maxItems: MAX_PREWARM_QUERIES,
  description: 'Paths with their query strings, as a dashboard requests them; each is checked as the statistics routes check theirs.',
});
// What a dashboard's request may carry (auth/header.ts): longer would make entries no dashboard could reach.
const Authorization = Type.String({ pattern: BASIC_CREDENTIALS, maxLength: MAX_AUTHORIZATION_BYTES, description: 'The Deskie credential to fetch with, never echoed or logged.' });
/** The body: the credential and the queries, or in service mode the queries alone. */
const bodySchema = (serviceMode: boolean) =>
  serviceMode
    ? Type.Object({ queries: Queries }, { additionalProperties: false })
    : Type.Object({ authorization: Authorization, queries: Queries }, { additionalProperties: false });
interface PrewarmBody {
  readonly authorization?: string;
  readonly queries: readonly string[];
}

const PrewarmResult = Type.Object({
  query: Type.String(),
  outcome: Type.Enum(['hit', 'miss', 'refreshed', 'collapsed', 'stale', 'error'] satisfies Array<CacheOutcome | 'error'>, { description: 'How the cache answered it (as Cache-Status says it), or error.' }),
  status: Type.Integer({ description: 'The status a client asking the same would have had.' }),
  error: Type.Optional(Type.String({ description: 'With an error: what it was, as a client would have read it.' })),
});
type PrewarmResult = Static<typeof PrewarmResult>;

interface PrewarmQuery {
  /** As the request gave it, for the answer. */
  readonly query: string;
  readonly endpoint: EndpointSpec;
  readonly queryString: string;
  /** The format its own `format=` (and `bom=`) ask for, uncompressed: what a plain client gets. */
  readonly variant: Variant;
}

function clientError(statusCode: number, message: string): Error & { statusCode: number } {
  return Object.assign(new Error(message), { statusCode });
}

/** POST /admin/prewarm in its own context: the only admin route that reads a body, and only JSON. */
export async function prewarmRoutes(prewarm: FastifyInstance, options: PrewarmOptions): Promise<void> {
  const serviceMode = options.serviceAuthorization !== undefined;
  const shape = serviceMode ? `{"queries": ["${EXAMPLE_QUERY}", ...]}` : `{"authorization": "Basic ...", "queries": ["${EXAMPLE_QUERY}", ...]}`;
  prewarm.removeAllContentTypeParsers();
  const parseJson = prewarm.getDefaultJsonParser('error', 'error');
  prewarm.addContentTypeParser('application/json', { parseAs: 'string', bodyLimit: PREWARM_BODY_LIMIT_BYTES }, (request, body, done) => {
    // Never the parser's own message: V8 quotes the text around a syntax error, which can be the credential.
    parseJson(request, body as string /* parseAs: 'string' */, (error, parsed) => done(error ? badRequest(`the body is not valid JSON; send ${shape}`) : null, parsed));
  });
  // Fastify's own refusals of a body, said the way the rest of the API says things; the app's handler answers.
  prewarm.setErrorHandler((error: FastifyError) => {
    if (error.code === 'FST_ERR_CTP_INVALID_MEDIA_TYPE') throw clientError(415, `POST ${PREWARM} takes a JSON body (Content-Type: application/json): ${shape}`);
    if (error.code === 'FST_ERR_CTP_BODY_TOO_LARGE') {
      throw clientError(413, `the body is larger than ${PREWARM_BODY_LIMIT_BYTES} bytes; send at most ${MAX_PREWARM_QUERIES} queries`);
    }
    throw error;
  });
  const schema = {
    summary: 'Fetch queries into the cache within the upstream budget',
    description: `Each query once, ${PREWARM_CONCURRENCY} at a time, each taking its turn in the upstream budget after the dashboards' own misses; a fresh entry is a hit and costs nothing.`,
    body: bodySchema(serviceMode),
    response: {
      200: Type.Object({ results: Type.Array(PrewarmResult, { description: 'One result per query, in its place.' }) }, { description: 'Done; every query has its result.', headers: OWN_HEADERS }),
      400: errorResponse('A body or a query that is refused, named in `error`; nothing is fetched.', OWN_HEADERS),
      413: errorResponse(`A body over ${PREWARM_BODY_LIMIT_BYTES} bytes.`, OWN_HEADERS),
      415: errorResponse('A body that is not application/json.', OWN_HEADERS),
    },
  };
  prewarm.post<{ Body: PrewarmBody }>(PREWARM, { bodyLimit: PREWARM_BODY_LIMIT_BYTES, schema, schemaErrorFormatter: bodyRefusal(shape, serviceMode) }, async (request) => {
    const authorization = options.serviceAuthorization ?? basicCredentials(request.body.authorization as string);
    const queries = request.body.queries.map((query, index) => {
      try {
        return readPrewarmQuery(query, options.queryContext, options.clock());
      } catch (error) {
        // Every refusal is a ProxyError (a 400, or the 414 of an overlong query string): here the prewarm's 400.
        throw badRequest(`queries[${index}]: ${(error as Error).message}; nothing was fetched`);
      }
    });
    const startedAt = performance.now();
    // A thousand queries may wait minutes with nothing sent, past CONNECTION_TIMEOUT_MS; Node resets it for the next request.
    request.raw.socket.setTimeout(0);
    const results = await prewarmAll(options, authorization, queries);
    const outcomes: Record<string, number> = {};
    for (const { outcome } of results) outcomes[outcome] = (outcomes[outcome] ?? 0) + 1;
    options.log.info({ admin: 'prewarm', queries: queries.length, outcomes, ms: Math.round(performance.now() - startedAt) }, 'admin: prewarm done');
    return { results };
  });
}

const OWN_HEADERS = responseHeaders('X-Request-Id', 'Cache-Control');

/** The 400 for a body the schema refuses: the first thing wrong, in the body's order; the credential is never quoted back. */
function bodyRefusal(shape: string, serviceMode: boolean): (errors: FastifySchemaValidationError[]) => ProxyError {
  /** A refusal's rank (the lowest is said: the body's order) and its message. */
  const judge = ({ keyword, instancePath, params, data }: Refusal): [number, string] => {
    if (keyword === 'additionalProperties') {
      const [field] = params['additionalProperties'] as string[];
      if (serviceMode && field === 'authorization') return [1, `in service mode prewarm fetches with the proxy's own Deskie credential: leave authorization out: ${shape}`];
      return [1, `unknown field ${JSON.stringify(field)}; the body takes ${serviceMode ? 'queries' : 'authorization and queries'}: ${shape}`];
    }
    const field = keyword === 'required' ? (params['requiredProperties'] as string[])[0] : instancePath.split('/')[1];
    if (field === undefined) return [0, `POST ${PREWARM} takes a JSON object: ${shape}`];
    if (field === 'authorization') return [2, AUTHORIZATION_ACCEPTED];
    if (instancePath.startsWith('/queries/')) return [4, `${instancePath.slice(1).replace('/', '[')}]: each query must be a string such as "${EXAMPLE_QUERY}"; nothing was fetched`];
    if (keyword === 'minItems') return [3, `queries is empty; give 1 to ${MAX_PREWARM_QUERIES}`];
    if (keyword === 'maxItems') {
      const count = (data as unknown[]).length;
      return [3, `queries has ${count} items; at most ${MAX_PREWARM_QUERIES} are accepted in one prewarm (queries[${MAX_PREWARM_QUERIES}] is the first past it)`];
    }
    return [3, `queries must be an array of paths with their query strings: ${shape}`];
  };
  return (errors) => {
    const judged = (errors as Refusal[]).filter((refusal) => refusal.keyword !== 'boolean').map(judge);
    return badRequest(judged.reduce((best, next) => (next[0] < best[0] ? next : best))[1]);
  };
}

/** The credential, once its base64 is seen to hold `user:password`: the schema checked its form. */
function basicCredentials(authorization: string): string {
  const encoded = new RegExp(BASIC_CREDENTIALS).exec(authorization)?.[1] ?? '';
  if (!Buffer.from(encoded, 'base64').toString('utf8').includes(':')) throw badRequest(AUTHORIZATION_ACCEPTED);
  return authorization;
}

/** One query as a dashboard would request it, checked as the stats routes check theirs. */
function readPrewarmQuery(query: string, context: Omit<QueryContext, 'nowMs'>, nowMs: number): PrewarmQuery {
  const mark = query.indexOf('?');
  const path = mark === -1 ? query : query.slice(0, mark);
  const queryString = mark === -1 ? '' : query.slice(mark + 1);
  const endpoint = ENDPOINT_BY_PATH.get(path);
  if (endpoint === undefined) throw badRequest(`the path must be one of ${[...ENDPOINT_BY_PATH.keys()].join(', ')}, followed by the query string`);
  const parsed = parseStatsQuery(endpoint, parseQueryString(queryString), { ...context, nowMs });
  const format = chooseFormat(parsed.proxy[FORMAT_PARAMETER], undefined);
  const bom = format === 'csv' && wantsBom(parsed.proxy[BOM_PARAMETER]);
  return { query, endpoint, queryString, variant: variantOf(format, bom, 'identity') };
}

/** Fetches the queries a few at a time; each result in the place of its query. */
async function prewarmAll(options: PrewarmOptions, authorization: string, queries: readonly PrewarmQuery[]): Promise<PrewarmResult[]> {
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

/** One query through the cache as a client's goes, checked again now: a period is the window it means when fetched, not when read. */
async function prewarmOne({ stats, clock, queryContext, log }: PrewarmOptions, authorization: string, item: PrewarmQuery): Promise<PrewarmResult> {
  try {
    const nowMs = clock();
    const query = parseStatsQuery(item.endpoint, parseQueryString(item.queryString), { ...queryContext, nowMs });
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
