import { routeLabel } from '../observability/access-log.js';
import { readFileSync } from 'node:fs';
import swagger, { formatParamUrl, type SwaggerTransformObject } from '@fastify/swagger';
import swaggerUi from '@fastify/swagger-ui';
import type { FastifyInstance, HTTPMethods, RouteOptions } from 'fastify';
import { CACHE_NAME } from '../cache/cache-status.js';
import { ALL_PAGES, CUSTOM_FIELD_KEY, CUSTOM_FIELDS_PARAMETER, ENDPOINTS, type EndpointName, type EndpointSpec, nonEmptyText, type ValueRule } from '../deskie/endpoints.js';
import { type FieldKind, RECORD_SCHEMAS } from '../deskie/fields.js';
import { PERIODS } from '../deskie/periods.js';
import { EARLIEST_YEAR, LATEST_YEAR, MAX_VALUES_PER_FILTER } from '../deskie/query.js';
import { ACCEPTED_TIME_FORMS } from '../deskie/time.js';
import { BOM_PARAMETER, BOM_VALUES, CODINGS, CSV_TYPE, DEFAULT_FORMAT, FORMAT_PARAMETER, FORMATS, PROXY_PARAMETERS } from '../formats/representations.js';

/**
 * The API description: an OpenAPI 3.1 document at /docs/json and Swagger UI at /docs.
 *
 * The statistics routes carry no Fastify `schema`: a schema would make
 * Fastify validate and serialize on every request, and their queries are
 * checked by deskie/query.ts, on a hit path measured in microseconds. Their
 * description is built here, once, when the document is first asked for,
 * from the same tables the validator reads (deskie/endpoints.ts, PERIODS,
 * FORMATS, PROXY_PARAMETERS), so a value added there is documented with no
 * edit here, and a rule that cannot be described fails the document's test.
 *
 * They are declared at the root of buildApp before this plugin has loaded,
 * so @fastify/swagger's own route collection (and so its `transform`) never
 * sees them: a hook added synchronously here sees every route as it is
 * declared, and `transformObject` adds what swagger missed.
 */

/** Where the page, its assets and the document (`/docs/json`, `/docs/yaml`) are served. */
export const DOCS_PREFIX = '/docs';

export interface OpenApiOptions {
  /** Names the operator allows besides Deskie's (config `extraParameters`): the validator accepts them, so they are documented. */
  readonly extraParameters?: ReadonlySet<string>;
  /** How the statistics routes let clients in (auth/clients.ts): Deskie's own credentials, a client token, or nothing. */
  readonly clients?: 'deskie' | 'clientToken' | 'none';
}

// The few shapes of OpenAPI 3.1 built here (openapi-types mixes 3.0 into its 3.1 operations and lacks JSON Schema 2020-12 keywords).
/** A JSON Schema (2020-12, the dialect of OpenAPI 3.1). */
type Schema = { readonly [keyword: string]: unknown };
interface Parameter {
  readonly name: string;
  readonly in: 'query' | 'header';
  readonly description: string;
  readonly schema: Schema;
  readonly style?: 'form' | 'deepObject';
  readonly explode?: boolean;
  readonly example?: unknown;
}
interface Header {
  readonly description: string;
  readonly schema: Schema;
  readonly example?: string;
}
/** A reference to a component (`#/components/<kind>/<name>`). */
interface Reference {
  readonly $ref: string;
}
interface Response {
  readonly description: string;
  readonly headers?: Readonly<Record<string, Header | Reference>>;
  readonly content?: Readonly<Record<string, { readonly schema: Schema }>>;
}
type Security = ReadonlyArray<Readonly<Record<string, readonly string[]>>>;
interface Operation {
  tags?: readonly string[];
  operationId?: string;
  summary?: string;
  description?: string;
  security?: Security;
  parameters?: readonly unknown[];
  responses?: Readonly<Record<string, Response | Reference>>;
  readonly [field: string]: unknown;
}
/** A path's operations by method, and the parameters they share. */
interface PathItem {
  parameters?: readonly Parameter[];
  [method: string]: Operation | readonly Parameter[] | undefined;
}
interface Document {
  readonly paths?: Readonly<Record<string, PathItem>>;
  readonly components?: Readonly<Record<string, Readonly<Record<string, unknown>> | undefined>>;
  readonly [field: string]: unknown;
}

const OPENAPI_VERSION = '3.1.0';
const STATISTICS = 'statistics';
const OPERATIONS = 'operations';
const ADMIN = 'admin';

const SECURITY_SCHEMES: Readonly<Record<string, Schema>> = {
  deskie: {
    type: 'http',
    scheme: 'basic',
    description:
      'Your Deskie e-mail as user and Deskie API key as password, exactly as Deskie takes them. ' +
      'Checked by Deskie (a wrong key gets its 401); cached answers are kept apart per credential.',
  },
  clientToken: {
    type: 'http',
    scheme: 'bearer',
    description:
      'Service mode: a client token from PROXY_TOKENS or PROXY_TOKENS_FILE. The proxy calls Deskie with its own credential, ' +
      'and every client shares its cached answers.',
  },
  metricsToken: { type: 'http', scheme: 'bearer', description: 'METRICS_TOKEN, when the server is started with one' },
  adminToken: { type: 'http', scheme: 'bearer', description: 'ADMIN_TOKEN; without it the admin API does not exist' },
};

const ref = (name: string): Schema => ({ $ref: `#/components/schemas/${name}` });
const JSON_MEDIA = 'application/json';
const CSV_MEDIA = CSV_TYPE.split(';')[0] as string;

/** Registers the OpenAPI document at the root, before any route, so that every route is seen. */
export function registerOpenApi(app: FastifyInstance, options: OpenApiOptions = {}): void {
  const extraParameters = options.extraParameters ?? new Set<string>();
  /** Every route, as it is declared: kept for the document, never read per request. */
  const routes: RouteOptions[] = [];
  app.addHook('onRoute', (route) => {
    routes.push(route);
  });
  app.register(swagger, {
    openapi: { openapi: OPENAPI_VERSION, info: { title: 'deskie-stats-proxy', version: '0.0.0' } },
    transformObject: (documentObject) => {
      if (!('openapiObject' in documentObject)) throw new Error('the API description is an OpenAPI document');
      // openapi-types' shapes are not the ones built here (see the types above); both are the same JSON.
      return describe(documentObject.openapiObject as Document, routes, extraParameters, options.clients ?? 'deskie') as ReturnType<SwaggerTransformObject>;
    },
  });
}

/** The document at /docs/json (and /docs/yaml) and the browsable page at /docs. */
export function docsRoutes(app: FastifyInstance): void {
  app.register(swaggerUi, {
    routePrefix: DOCS_PREFIX,
    uiConfig: { docExpansion: 'list', deepLinking: true, defaultModelsExpandDepth: 0, displayRequestDuration: true },
  });
}

/** Completes the document swagger generated: the statistics routes, descriptions of the others, and anything it missed. */
function describe(
  document: Document,
  routes: readonly RouteOptions[],
  extraParameters: ReadonlySet<string>,
  clients: NonNullable<OpenApiOptions['clients']>,
): Document {
  const paths: Record<string, PathItem> = { ...document.paths };
  for (const route of routes) {
    if (isHidden(route)) continue;
    const url = formatParamUrl(route.url);
    const methods = (Array.isArray(route.method) ? route.method : [route.method]) as HTTPMethods[];
    const endpoint = route.config?.endpoint as EndpointName | undefined;
    const item: PathItem = { ...paths[url] };
    if (endpoint !== undefined) {
      // GET and HEAD take the same query: said once, for the path.
      item.parameters = [...queryParameters(ENDPOINTS[endpoint], extraParameters), ...REQUEST_HEADERS];
    }
    for (const method of methods) {
      const field = method.toLowerCase();
      if (endpoint !== undefined) {
        item[field] = statsOperation(ENDPOINTS[endpoint], method, clients);
      } else {
        // Swagger's own operation, when it saw the route; a copy per method, as GET and HEAD share one.
        const generated = item[field] as Operation | undefined;
        item[field] = opsOperation(url, method, generated === undefined ? undefined : { ...generated });
      }
    }
    paths[url] = item;
  }
  const used = new Set(
    Object.values(paths).flatMap((item) =>
      Object.entries(item).flatMap(([field, operation]) => (field === 'parameters' ? [] : ((operation as Operation).tags ?? []))),
    ),
  );
  return {
    ...document,
    openapi: OPENAPI_VERSION,
    info: info(),
    tags: TAGS.filter((tag) => used.has(tag.name)),
    paths: Object.fromEntries(Object.entries(paths).sort(([a], [b]) => (a < b ? -1 : 1))),
    components: {
      ...document.components,
      schemas: { ...document.components?.['schemas'], ...componentSchemas() },
      responses: { ...document.components?.['responses'], ...errorResponses() },
      headers: { ...document.components?.['headers'], ...HEADERS },
      securitySchemes: { ...document.components?.['securitySchemes'], ...SECURITY_SCHEMES },
    },
  };
}

const TAGS = [
  { name: STATISTICS, description: "Deskie's statistics API, cached" },
  { name: OPERATIONS, description: 'Health, readiness and Prometheus metrics: never cached, never forwarded' },
  { name: ADMIN, description: 'The cache, listed, purged and prewarmed (only when ADMIN_TOKEN is set)' },
];

/** The page itself and its assets are not part of the API; any route its author hid is not either. */
function isHidden(route: RouteOptions): boolean {
  if (route.url === DOCS_PREFIX || route.url.startsWith(`${DOCS_PREFIX}/`)) return true;
  return route.schema?.hide === true;
}

function info(): Readonly<Record<string, unknown>> {
  return {
    title: 'deskie-stats-proxy',
    version: packageVersion(),
    description:
      "A caching reverse proxy for Deskie's statistics API. It answers Deskie's three statistics routes with the same " +
      'parameters and credentials, from a cache that knows when each period changes, and adds dashboard-ready formats. ' +
      'Every error is `{"status":"error","error":"<what is wrong, and what is accepted>"}`, except an answer of Deskie ' +
      "passed through as it came; any other path is a 404 in that shape. Request and response headers follow RFC 9110 " +
      'and RFC 9111; `Cache-Status` is RFC 9211. Every answer carries `X-Content-Type-Options: nosniff`; a request with ' +
      'more than one `Authorization` header, or one over 4096 bytes, is a 400 on every route that reads it.',
  };
}

/** This package's version, read when the document is first built. */
function packageVersion(): string {
  try {
    const manifest = JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as { version?: unknown };
    return typeof manifest.version === 'string' ? manifest.version : '0.0.0';
  } catch {
    return '0.0.0';
  }
}

// ---------------------------------------------------------------------------
// Parameters, from the validator's tables

/**
 * The values a rule accepts as a JSON Schema (2020-12, as OpenAPI 3.1 uses),
 * built from the rule's own data: the listed values, the pattern, the bounds.
 * A rule with none of these cannot be described, and throws.
 */
export function valueSchema(rule: ValueRule): Schema {
  const examples = rule.examples === undefined ? {} : { examples: [...rule.examples] };
  if (rule.minimum !== undefined || rule.maximum !== undefined) {
    if (rule.values !== undefined) throw new Error(`a numeric rule with listed values cannot be described: ${rule.accepted}`);
    // Written without a sign or leading zeros, as the pattern says: the rule's text tells a reader.
    return definedFields({ type: 'integer', minimum: rule.minimum, maximum: rule.maximum, ...examples });
  }
  if (rule.pattern !== undefined) {
    const { source } = rule.pattern;
    if (!source.startsWith('^') || !source.endsWith('$') || rule.pattern.flags !== '') {
      throw new Error(`the pattern of "${rule.accepted}" must be anchored at both ends and have no flags: /${source}/${rule.pattern.flags}`);
    }
    const listed = rule.values === undefined ? '' : `^(?:${rule.values.map(escapeRegExp).join('|')})$|`;
    return { type: 'string', pattern: `${listed}${source}`, ...examples };
  }
  if (rule.values !== undefined) return { type: 'string', enum: [...rule.values], ...examples };
  if (rule.minLength !== undefined || rule.maxLength !== undefined) {
    return definedFields({ type: 'string', minLength: rule.minLength, maxLength: rule.maxLength, ...examples });
  }
  throw new Error(`a value rule has nothing to describe it with: ${rule.accepted}`);
}

const escapeRegExp = (text: string): string => text.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');

const query = (name: string, description: string, schema: Schema, extra: Partial<Parameter> = {}): Parameter => ({
  name,
  in: 'query',
  description,
  schema,
  ...extra,
});

/** What each proxy-only parameter means; PROXY_PARAMETERS says which exist. */
const PROXY_PARAMETER_DOCS: Readonly<Record<string, () => Parameter>> = {
  [FORMAT_PARAMETER]: () =>
    query(
      FORMAT_PARAMETER,
      `Which answer this server gives; never sent to Deskie and not part of the cache entry. ` +
        `\`normalized\` (the default): Deskie's shape with numbers cleaned; \`raw\`: Deskie's body byte for byte; ` +
        `\`rows\`: one flat object per record, with the window; \`csv\`: those rows as ${CSV_MEDIA}. Without it, a ` +
        'request whose `Accept` prefers `text/csv` to JSON gets CSV.',
      { type: 'string', enum: [...FORMATS], default: DEFAULT_FORMAT },
    ),
  [BOM_PARAMETER]: () =>
    query(BOM_PARAMETER, '`1` puts a UTF-8 byte order mark before CSV (for Excel); `0` or absent, none. Ignored for JSON.', {
      type: 'string',
      enum: [...BOM_VALUES],
      default: BOM_VALUES[0],
    }),
};

/** Every query parameter the validator accepts on `endpoint` (deskie/query.ts), and nothing else. */
function queryParameters(endpoint: EndpointSpec, extraParameters: ReadonlySet<string>): Parameter[] {
  const parameters: Parameter[] = [
    query('period', 'A period in the account time zone; give it, or both `from_time` and `to_time`.', { type: 'string', enum: [...PERIODS] }, { example: 'today' }),
  ];
  for (const [name, example, what] of [
    ['from_time', '2026-11-01', 'Start'],
    ['to_time', '2026-11-15 18:00', 'End'],
  ] as const) {
    parameters.push(
      query(
        name,
        `${what} of a custom range, with the other of \`from_time\` and \`to_time\` and instead of \`period\`: ${ACCEPTED_TIME_FORMS}, ` +
          `in the years ${EARLIEST_YEAR} to ${LATEST_YEAR}. No offset means the account time zone; a date alone means 00:00. ` +
          `The range is at least 1 hour and at most ${endpoint.maxRangeText} long.`,
        { type: 'string' },
        { example },
      ),
    );
  }
  for (const [name, rule] of Object.entries(endpoint.filters)) {
    parameters.push(
      query(name, `Filter: ${rule.accepted}. For several values use \`${name}[]\`.`, valueSchema(rule)),
      query(
        `${name}[]`,
        `The filter \`${name}\` with one or more values, repeated as \`${name}[]=a&${name}[]=b\` (the same filter as \`${name}\` ` +
          `when given once; values de-duplicated and sorted): each ${rule.accepted}.`,
        { type: 'array', items: valueSchema(rule), minItems: 1, maxItems: MAX_VALUES_PER_FILTER },
        { style: 'form', explode: true },
      ),
    );
  }
  for (const [name, rule] of Object.entries(endpoint.scalars)) {
    parameters.push(query(name, scalarDescription(endpoint, name, rule), valueSchema(rule)));
  }
  if (endpoint.customFields) {
    parameters.push(
      query(
        CUSTOM_FIELDS_PARAMETER,
        `Custom field filters, written \`${CUSTOM_FIELDS_PARAMETER}[cf_N]=value\`: each ${nonEmptyText.accepted}.`,
        { type: 'object', propertyNames: { pattern: CUSTOM_FIELD_KEY.source }, additionalProperties: valueSchema(nonEmptyText) },
        { style: 'deepObject', explode: true, example: { cf_7589: '0' } },
      ),
    );
  }
  for (const name of extraParameters) {
    parameters.push(
      query(name, "Allowed by this server's configuration (`extraParameters`): forwarded to Deskie as given, de-duplicated and sorted.", {
        type: 'array',
        items: { type: 'string' },
      }, { style: 'form', explode: true }),
    );
  }
  for (const name of PROXY_PARAMETERS) {
    const document = PROXY_PARAMETER_DOCS[name];
    if (document === undefined) throw new Error(`the proxy parameter ${name} has no description in routes/docs.ts`);
    parameters.push(document());
  }
  return parameters;
}

function scalarDescription(endpoint: EndpointSpec, name: string, rule: ValueRule): string {
  if (name !== 'page') return `${rule.accepted}.`;
  const merged =
    endpoint.pagination === 'last_page'
      ? 'pages are followed until Deskie says `last_page`'
      : 'pages of 100 are read until `total_count`';
  return (
    `The page, ${rule.accepted}. \`page=1\` is the same as no page. \`page=${ALL_PAGES}\`: ${merged}, merged into one answer ` +
    'and cached as one entry (at most PAGE_ALL_MAX_PAGES pages; more is a 422).'
  );
}

const REQUEST_HEADERS: readonly Parameter[] = [
  {
    name: 'Accept-Encoding',
    in: 'header',
    description: `\`br\` or \`gzip\` (kept compressed per entry, never compressed per request); without it, the answer is ${CODINGS[0]}.`,
    schema: { type: 'string' },
    example: 'br, gzip',
  },
  { name: 'If-None-Match', in: 'header', description: 'An ETag from an earlier answer: a 304 when it still matches (RFC 9110 §13.1.2).', schema: { type: 'string' } },
  {
    name: 'If-Modified-Since',
    in: 'header',
    description: 'An HTTP-date; a 304 when the answer was fetched from Deskie no later (used only without If-None-Match).',
    schema: { type: 'string' },
  },
  {
    name: 'X-Request-Id',
    in: 'header',
    description: 'Kept and sent back when it is 1 to 128 characters of letters, digits and `_.:@/+=-`; otherwise one is made.',
    schema: { type: 'string' },
  },
];

// ---------------------------------------------------------------------------
// Responses

const header = (description: string, example?: string): Header => ({ description, schema: { type: 'string' }, ...(example === undefined ? {} : { example }) });

/** The headers answers carry, described once (`#/components/headers`) and referred to by every response. */
const HEADERS: Readonly<Record<string, Header>> = {
  'Cache-Status': header(
    `RFC 9211: how this cache answered. \`${CACHE_NAME}; hit; ttl=N\`: from the cache, fresh for N more seconds; ` +
      '`fwd=miss` (with `stored` once kept): fetched from Deskie; `fwd=stale`: refetched, or, with `fwd-status` and ' +
      '`detail`, an expired answer served because Deskie failed (`ttl` negative); `collapsed`: waited for a fetch under way. ' +
      'On an error, when Deskie was involved: its status (`fwd-status`), why it failed (`detail`), or ' +
      '`detail=remembered-<status>` for a refusal answered from memory.',
    `${CACHE_NAME}; hit; ttl=217`,
  ),
  ETag: header('A strong tag of this answer in this format and coding, for If-None-Match.', '"Xq0bJ8tW2mJ3c1kRr7fVh2aN4eE"'),
  'Cache-Control': header(
    '`private, max-age=<lifetime in seconds>` (the whole lifetime; `Age` says how much of it is gone), or `no-store` when ' +
      'the answer could not be kept. Errors and operational answers: `no-store`.',
    'private, max-age=300',
  ),
  Age: header('Seconds since the answer was fetched from Deskie (RFC 9111 §5.1).', '83'),
  'Last-Modified': header('When the answer was fetched from Deskie, for If-Modified-Since.', 'Sat, 28 Nov 2026 12:00:00 GMT'),
  Vary: header('The answer depends on the format asked for, the coding and the credential.', 'Accept, Accept-Encoding, Authorization'),
  'X-Request-Id': header('The request id: the client’s when well-formed, otherwise one made here. Also in the access log.'),
  'Content-Encoding': header(`\`br\` or \`gzip\` when Accept-Encoding asked for it (one of ${CODINGS.join(', ')}).`),
  'Content-Disposition': header('CSV only: a file to save, named after the endpoint.', 'attachment; filename="stats_leaderboard.csv"'),
  'X-Content-Type-Options': header('`nosniff`: the content type is to be taken as sent.', 'nosniff'),
  'Retry-After': header('Seconds until a call to Deskie may go out.', '30'),
  'WWW-Authenticate': header('The challenge: `Basic realm="deskie-stats-proxy"` for the statistics routes (`Bearer` in service mode), `Bearer` for /metrics and /admin.'),
};

/** References to the shared headers, by name. */
function headers(...names: Array<keyof typeof HEADERS & string>): Record<string, Reference> {
  return Object.fromEntries(names.map((name) => [name, { $ref: `#/components/headers/${name}` }]));
}

/** The headers of every statistics answer, 200 and 304. */
const ANSWER_HEADERS = ['Cache-Status', 'ETag', 'Cache-Control', 'Age', 'Last-Modified', 'Vary', 'X-Request-Id', 'X-Content-Type-Options'] as const;

const ERROR_STATUSES: Readonly<Record<string, string>> = {
  400: 'A query the validator refuses (an unknown parameter, a bad value, a parameter given twice, a custom range out of bounds), named in `error`, or more than one Authorization header, or one over 4096 bytes; Deskie is not called.',
  401: 'No HTTP Basic credentials, or in service mode no valid client token (Deskie is not called); or Deskie refused the credentials (its own answer, passed through and remembered for AUTH_FAILURE_TTL_SECONDS).',
  403: "Deskie refused the credential for this data: Deskie's own answer, passed through.",
  404: "Deskie's own 404, passed through (this server's own 404 answers paths it does not serve).",
  414: 'A query string longer than 4096 bytes.',
  422: '`page=all` needs more pages than PAGE_ALL_MAX_PAGES, or more calls than the upstream budget allows a minute; nothing is stored, and the refusal is remembered while the answer would have been fresh. Or a query Deskie itself refused, passed through.',
  429: "Deskie's rate limit, passed through with Retry-After when no earlier answer for the same window can be served instead.",
  500: 'An unexpected error (never a stack trace).',
  502: "Deskie could not be reached or its answer could not be read, or Deskie's own 5xx passed through; only when no earlier answer can be served instead.",
  503: "No call to Deskie could be made in time (the budget is spent or paused, or Deskie's 429 keeps every call back), or the server is shutting down; Retry-After says when to retry.",
  504: 'Deskie did not answer within UPSTREAM_TIMEOUT_MS (or `page=all` within PAGE_ALL_TIMEOUT_MS).',
};

/** The headers of an error answer of the statistics routes: 400, 414 and 500 are this server's own, the others may involve Deskie. */
function errorHeaders(status: string): Record<string, Reference> {
  return headers(
    'Cache-Control',
    'X-Request-Id',
    'X-Content-Type-Options',
    ...(status === '400' || status === '414' || status === '500' ? [] : (['Cache-Status'] as const)),
    ...(status === '401' ? (['WWW-Authenticate'] as const) : []),
    ...(status === '429' || status === '503' ? (['Retry-After'] as const) : []),
  );
}

const ERROR_CONTENT = { [JSON_MEDIA]: { schema: ref('Error') } };

/** The error answers of the statistics routes, as `#/components/responses/<status>`. */
function errorResponses(): Record<string, Response> {
  return Object.fromEntries(
    Object.entries(ERROR_STATUSES).map(([status, description]) => [status, { description, headers: errorHeaders(status), content: ERROR_CONTENT }]),
  );
}

function statsResponses(endpoint: EndpointSpec, head: boolean): Record<string, Response | Reference> {
  const names = schemaNames(endpoint.name);
  const ok: Response = {
    description:
      'The answer, from the cache or from Deskie. JSON for `normalized`, `raw` (Deskie\'s content type) and `rows`; ' +
      `${CSV_MEDIA} for \`csv\` (a header row, CRLF line ends, empty cells for null, formula-like text prefixed with \`'\`).`,
    headers: headers(...ANSWER_HEADERS, 'Content-Encoding', 'Content-Disposition'),
    ...(head
      ? {}
      : {
          content: {
            [JSON_MEDIA]: {
              schema: { anyOf: [ref(names.answer), ref(names.rows), { type: 'object', description: "`format=raw`: Deskie's body as it came" }] },
            },
            [CSV_MEDIA]: { schema: { type: 'string', description: '`format=csv`, or an Accept that prefers text/csv' } },
          },
        }),
  };
  const responses: Record<string, Response | Reference> = {
    200: ok,
    304: { description: 'Not modified: If-None-Match or If-Modified-Since matched this answer.', headers: headers(...ANSWER_HEADERS) },
  };
  for (const [status, description] of Object.entries(ERROR_STATUSES)) {
    // HEAD answers the same statuses and headers, without a body (RFC 9110 §9.3.2).
    responses[status] = head ? { description, headers: errorHeaders(status) } : { $ref: `#/components/responses/${status}` };
  }
  return responses;
}

function statsOperation(endpoint: EndpointSpec, method: HTTPMethods, clients: NonNullable<OpenApiOptions['clients']>): Operation {
  const head = method === 'HEAD';
  const name = routeLabel(endpoint.path);
  const subject = { leaderboard: 'The agent leaderboard', staff_statuses: "Agents' status changes", satisfaction: 'Satisfaction ratings' }[endpoint.name];
  return {
    tags: [STATISTICS],
    operationId: `${camel(name)}${head ? 'Head' : ''}`,
    summary: head ? `${subject}: headers only` : subject,
    description:
      `Deskie's \`${endpoint.path}\`, answered from the cache while fresh. One upstream call per question: concurrent ` +
      'requests for the same query and credential wait for one fetch, and every parameter is checked before Deskie is ' +
      'asked, so an unknown one is a 400. A query is one cache entry however it is written (order, `name`/`name[]`, ' +
      'page 1, the form of a time). When Deskie fails, the last answer for the same window is served, marked stale.' +
      (endpoint.pagination === null ? '' : ` Deskie pages it (${endpoint.pagination}); \`page=${ALL_PAGES}\` merges every page.`),
    // PROXY_AUTH=none: an empty requirement, anyone may call.
    security: clients === 'none' ? [{}] : [{ [clients]: [] }],
    responses: statsResponses(endpoint, head),
  };
}

const camel = (snake: string): string => snake.replace(/_([a-z])/g, (_match, letter: string) => letter.toUpperCase());
const pascal = (snake: string): string => camel(snake).replace(/^[a-z]/, (letter) => letter.toUpperCase());

function schemaNames(endpoint: EndpointName): { answer: string; rows: string } {
  return { answer: `${pascal(endpoint)}Answer`, rows: `${pascal(endpoint)}Rows` };
}

/** How the normalized formats write each kind of field (deskie/fields.ts). */
const FIELD_SCHEMAS: Readonly<Record<FieldKind, Schema>> = {
  number: { type: ['number', 'null'], description: 'A number; null where Deskie sent "-" (no data).' },
  percent: { type: ['number', 'null'], description: 'Percent units ("21.9%" becomes 21.9); null where Deskie sent "-".' },
  date: { type: 'string', format: 'date-time', description: 'ISO 8601 with its offset (Deskie sends RFC 2822).' },
  text: { description: 'As Deskie sent it, never converted.' },
  id: { description: 'As Deskie sent it, never converted.' },
};

const RECORD_NOTE = 'Fields not listed pass through unchanged; a value its rule cannot read is kept as Deskie sent it.';

function recordSchema(endpoint: EndpointName, extra: Record<string, Schema> = {}): Schema {
  const fields = Object.fromEntries(Object.entries(RECORD_SCHEMAS[endpoint].fields).map(([name, kind]) => [name, FIELD_SCHEMAS[kind]]));
  return { type: 'object', description: RECORD_NOTE, properties: { ...fields, ...extra } };
}

/** Schemas of the error body and of each endpoint's JSON answers. */
function componentSchemas(): Record<string, Schema> {
  const schemas: Record<string, Schema> = {
    Error: {
      type: 'object',
      required: ['status', 'error'],
      properties: { status: { type: 'string', enum: ['error'] }, error: { type: 'string', description: 'What is wrong, and what is accepted.' } },
      additionalProperties: false,
    },
    Window: {
      type: 'object',
      description: 'The absolute window the answer covers, in the account time zone.',
      required: ['from', 'to', 'timezone'],
      properties: {
        from: { type: 'string', format: 'date-time' },
        to: { type: 'string', format: 'date-time', description: 'Exclusive.' },
        timezone: { type: 'string', examples: ['Europe/Berlin'] },
      },
    },
  };
  for (const endpoint of Object.values(ENDPOINTS)) {
    const { wrapper } = RECORD_SCHEMAS[endpoint.name];
    const names = schemaNames(endpoint.name);
    const record = recordSchema(endpoint.name);
    const envelope: Record<string, Schema> =
      endpoint.pagination === 'last_page'
        ? { last_page: { type: 'boolean', description: 'Whether this is the last page.' } }
        : endpoint.pagination === 'total_count'
          ? { total_count: { type: 'integer', description: 'Records in the whole period.' } }
          : {};
    schemas[names.answer] = {
      type: 'object',
      description: "`format=normalized` (the default): Deskie's shape, records under \"0\", \"1\", ..., values cleaned by the field schema.",
      properties: envelope,
      patternProperties: { '^\\d+$': wrapper === null ? record : { type: 'object', properties: { [wrapper]: record } } },
    };
    const statusParts: Record<string, Schema> =
      endpoint.name === 'staff_statuses'
        ? {
            from_name: { type: ['string', 'null'], description: 'The name in `from`, "Offline (2)" giving "Offline".' },
            from_id: { type: ['integer', 'null'], description: 'The id in `from`, "Offline (2)" giving 2.' },
            to_name: { type: ['string', 'null'] },
            to_id: { type: ['integer', 'null'] },
          }
        : {};
    schemas[names.rows] = {
      type: 'object',
      description: '`format=rows`: one flat object per record, in Deskie\'s order (also the columns of `format=csv`).',
      required: ['rows', 'last_page', 'total_count', 'window'],
      properties: {
        rows: { type: 'array', items: recordSchema(endpoint.name, statusParts) },
        last_page: { description: "Deskie's `last_page` when it sent one, otherwise null." },
        total_count: { description: "Deskie's `total_count` when it sent one, otherwise null." },
        window: ref('Window'),
      },
    };
  }
  return schemas;
}

// ---------------------------------------------------------------------------
// The other routes

const HEALTH_BODY: Schema = { type: 'object', properties: { status: { type: 'string' } }, additionalProperties: true };

/** Descriptions of the routes others declare, by path: used where the route declares none of its own. */
const OPS_OPERATIONS: Readonly<Record<string, Partial<Operation>>> = {
  '/healthz': {
    tags: [OPERATIONS],
    summary: 'The process is alive',
    description: "For a container's HEALTHCHECK: 200 while the process runs, with the store's size and the upstream budget.",
    responses: { 200: { description: 'Alive.', headers: headers('X-Request-Id', 'Cache-Control'), content: { [JSON_MEDIA]: { schema: HEALTH_BODY } } } },
  },
  '/readyz': {
    tags: [OPERATIONS],
    summary: 'Send me requests',
    description:
      "For a load balancer: 503 while starting, once SIGTERM starts draining, or when the store is unusable. Deskie's state " +
      '(budget, circuit, last answer) is shown and never failed on: cached answers still serve while Deskie is limited. ' +
        "With REDIS_URL, `store.shared` shows whether Redis answers; a Redis down is shown, never failed on, for the same reason.",
    responses: {
      200: { description: 'Ready.', headers: headers('X-Request-Id', 'Cache-Control'), content: { [JSON_MEDIA]: { schema: HEALTH_BODY } } },
      503: {
        description: 'Starting, draining or without a usable store; `status` says which.',
        headers: headers('X-Request-Id', 'Cache-Control'),
        content: { [JSON_MEDIA]: { schema: HEALTH_BODY } },
      },
    },
  },
  '/metrics': {
    tags: [OPERATIONS],
    summary: 'Prometheus metrics',
    description: 'Prometheus text format: requests by route, period class, outcome and status; calls to Deskie; the budget; the store; process metrics.',
    // Open unless METRICS_TOKEN is set.
    security: [{}, { metricsToken: [] }],
    responses: {
      200: { description: 'The exposition text.', headers: headers('X-Request-Id', 'Cache-Control'), content: { 'text/plain': { schema: { type: 'string' } } } },
      401: {
        description: 'METRICS_TOKEN is set and the bearer token is missing or wrong.',
        headers: headers('X-Request-Id', 'Cache-Control', 'WWW-Authenticate'),
        content: ERROR_CONTENT,
      },
    },
  },
};

const ADMIN_SUMMARIES: Readonly<Record<string, string>> = {
  'GET /admin/entries': 'List cached entries (filter with endpoint= and period=; paginated)',
  'DELETE /admin/entries': 'Purge entries (endpoint=, period=, partition= or all=true; no filter is a 400)',
  'POST /admin/prewarm': 'Fetch queries into the cache within the upstream budget',
};

/**
 * A route declared by others: its own description when it has one (swagger
 * made it from the route's schema), completed with ours where it has none.
 */
function opsOperation(url: string, method: HTTPMethods, generated: Operation | undefined): Operation {
  const ours: Partial<Operation> =
    OPS_OPERATIONS[url] ??
    (url === '/admin' || url.startsWith('/admin/')
      ? {
          tags: [ADMIN],
          summary: ADMIN_SUMMARIES[`${method} ${url}`] ?? `${method} ${url}`,
          security: [{ adminToken: [] }],
          responses: {
            200: { description: 'Done; JSON.', headers: headers('X-Request-Id', 'Cache-Control') },
            400: { description: 'A filter or a query that is refused, named in `error`; nothing is done.', headers: headers('X-Request-Id', 'Cache-Control'), content: ERROR_CONTENT },
            401: { description: 'The bearer token is missing or wrong (no hint which).', headers: headers('X-Request-Id', 'Cache-Control'), content: ERROR_CONTENT },
          },
        }
      : { summary: `${method} ${url}` });
  // Swagger writes a placeholder for a route without response schemas.
  const responses = generated?.responses === undefined || isPlaceholder(generated.responses) ? ours.responses : generated.responses;
  const operation: Operation = {
    tags: ours.tags,
    summary: ours.summary,
    description: ours.description,
    security: ours.security,
    ...definedFields(generated ?? {}),
    responses: responses ?? { 200: { description: 'Default Response' } },
  };
  if (method === 'HEAD') {
    operation.responses = Object.fromEntries(
      Object.entries(operation.responses ?? {}).map(([status, response]) => [status, '$ref' in response ? response : withoutContent(response)]),
    );
  }
  return definedFields(operation);
}

/** The object without its undefined fields. */
function definedFields<T extends object>(object: T): T {
  return Object.fromEntries(Object.entries(object).filter(([, value]) => value !== undefined)) as T;
}

function isPlaceholder(responses: Readonly<Record<string, Response | Reference>>): boolean {
  const statuses = Object.keys(responses);
  return statuses.length === 1 && statuses[0] === '200' && (responses['200'] as Response).description === 'Default Response' && !('content' in (responses['200'] as Response));
}

function withoutContent({ content: _content, ...response }: Response): Response {
  return response;
}
