import type { FastifySchema } from 'fastify';
import { CACHE_NAME } from '../cache/cache-status.js';
import { ALL_PAGES, CUSTOM_FIELD_KEY, CUSTOM_FIELDS_PARAMETER, ENDPOINTS, type EndpointName, type EndpointSpec, nonEmptyText, routeLabel, type ValueRule } from '../deskie/endpoints.js';
import { type FieldKind, RECORD_SCHEMAS } from '../deskie/fields.js';
import { PERIODS } from '../deskie/periods.js';
import { EARLIEST_YEAR, LATEST_YEAR, MAX_VALUES_PER_FILTER } from '../deskie/query.js';
import { ACCEPTED_TIME_FORMS } from '../deskie/time.js';
import { BOM_PARAMETER, BOM_VALUES, CODINGS, CSV_TYPE, DEFAULT_FORMAT, FORMAT_PARAMETER, FORMATS, PROXY_PARAMETERS } from '../formats/representations.js';

// Stats routes' contract for /docs only, from the validator's tables (an undescribable rule throws); shared schemas.

/** A JSON Schema (2020-12, the dialect of OpenAPI 3.1). */
type Schema = { readonly [keyword: string]: unknown };

/** How clients of the statistics routes prove who they are, named as docs.ts names the security schemes; `none`: anyone may call. */
export type ClientAuth = 'deskie' | 'clientToken' | 'none';

export interface StatsSchemaOptions {
  /** Names the operator allows besides Deskie's (config `extraParameters`): the validator accepts them, so they are documented. */
  readonly extraParameters: ReadonlySet<string>;
  readonly clientAuth: ClientAuth;
}

const JSON_MEDIA = 'application/json';
const CSV_MEDIA = CSV_TYPE.split(';')[0] as string;

/** A route schema for GET and HEAD on `endpoint`: parameters, request headers, every answer and its headers. */
export function statsRouteSchema(endpoint: EndpointSpec, { extraParameters, clientAuth }: StatsSchemaOptions): FastifySchema {
  const subject = { leaderboard: 'The agent leaderboard', staff_statuses: "Agents' status changes", satisfaction: 'Satisfaction ratings' }[endpoint.name];
  return {
    tags: ['statistics'],
    operationId: camel(routeLabel(endpoint.path)),
    summary: subject,
    description:
      `Deskie's \`${endpoint.path}\`, answered from the cache while fresh. One upstream call per question: concurrent ` +
      'requests for the same query and credential wait for one fetch, and every parameter is checked before Deskie is ' +
      'asked, so an unknown one is a 400. A query is one cache entry however it is written (order, `name`/`name[]`, ' +
      'page 1, the form of a time). When Deskie fails, the last answer for the same window is served, marked stale.' +
      (endpoint.pagination === null ? '' : ` Deskie pages it (${endpoint.pagination}); \`page=${ALL_PAGES}\` merges every page.`),
    security: clientAuth === 'none' ? [{}] : [{ [clientAuth]: [] }],
    querystring: { type: 'object', properties: queryProperties(endpoint, extraParameters), additionalProperties: false },
    headers: { type: 'object', properties: REQUEST_HEADERS },
    response: statsResponses(endpoint),
  };
}

/** The values a rule accepts as a JSON Schema, from its listed values, pattern or bounds; a rule with none throws. */
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

function definedFields<T extends object>(object: T): T {
  return Object.fromEntries(Object.entries(object).filter(([, value]) => value !== undefined)) as T;
}

/** What each proxy-only parameter means; PROXY_PARAMETERS says which exist. */
const PROXY_PARAMETER_SCHEMAS: Readonly<Record<string, Schema>> = {
  [FORMAT_PARAMETER]: {
    type: 'string',
    enum: [...FORMATS],
    default: DEFAULT_FORMAT,
    description:
      `Which answer this server gives; never sent to Deskie and not part of the cache entry. ` +
      `\`normalized\` (the default): Deskie's shape with numbers cleaned; \`raw\`: Deskie's body byte for byte; ` +
      `\`rows\`: one flat object per record, with the window; \`csv\`: those rows as ${CSV_MEDIA}. Without it, a ` +
      'request whose `Accept` prefers `text/csv` to JSON gets CSV.',
  },
  [BOM_PARAMETER]: {
    type: 'string',
    enum: [...BOM_VALUES],
    default: BOM_VALUES[0],
    description: '`1` puts a UTF-8 byte order mark before CSV (for Excel); `0` or absent, none. Ignored for JSON.',
  },
};

/** Every query parameter the validator accepts on `endpoint` (deskie/query.ts), and nothing else. */
function queryProperties(endpoint: EndpointSpec, extraParameters: ReadonlySet<string>): Record<string, Schema> {
  const properties: Record<string, Schema> = {
    period: { type: 'string', enum: [...PERIODS], examples: ['today'], description: 'A period in the account time zone; give it, or both `from_time` and `to_time`.' },
  };
  for (const [name, example, what] of [['from_time', '2026-11-01', 'Start'], ['to_time', '2026-11-15 18:00', 'End']] as const) {
    properties[name] = {
      type: 'string',
      examples: [example],
      description:
        `${what} of a custom range, with the other of \`from_time\` and \`to_time\` and instead of \`period\`: ${ACCEPTED_TIME_FORMS}, ` +
        `in the years ${EARLIEST_YEAR} to ${LATEST_YEAR}. No offset means the account time zone; a date alone means 00:00. ` +
        `The range is at least 1 hour and at most ${endpoint.maxRangeText} long.`,
    };
  }
  for (const [name, rule] of Object.entries(endpoint.filters)) {
    properties[name] = { ...valueSchema(rule), description: `Filter: ${rule.accepted}. For several values use \`${name}[]\`.` };
    properties[`${name}[]`] = {
      type: 'array',
      items: valueSchema(rule),
      minItems: 1,
      maxItems: MAX_VALUES_PER_FILTER,
      description:
        `The filter \`${name}\` with one or more values, repeated as \`${name}[]=a&${name}[]=b\` (the same filter as \`${name}\` ` +
        `when given once; values de-duplicated and sorted): each ${rule.accepted}.`,
    };
  }
  for (const [name, rule] of Object.entries(endpoint.scalars)) {
    properties[name] = { ...valueSchema(rule), description: scalarDescription(endpoint, name, rule) };
  }
  if (endpoint.customFields) {
    // An object in a query string: docs.ts writes it as OpenAPI's deepObject, `custom_fields[cf_N]=value`.
    properties[CUSTOM_FIELDS_PARAMETER] = {
      type: 'object',
      propertyNames: { pattern: CUSTOM_FIELD_KEY.source },
      additionalProperties: valueSchema(nonEmptyText),
      examples: [{ cf_7589: '0' }],
      description: `Custom field filters, written \`${CUSTOM_FIELDS_PARAMETER}[cf_N]=value\`: each ${nonEmptyText.accepted}.`,
    };
  }
  for (const name of extraParameters) {
    properties[name] = {
      type: 'array',
      items: { type: 'string' },
      description: "Allowed by this server's configuration (`extraParameters`): forwarded to Deskie as given, de-duplicated and sorted.",
    };
  }
  for (const name of PROXY_PARAMETERS) {
    const schema = PROXY_PARAMETER_SCHEMAS[name];
    if (schema === undefined) throw new Error(`the proxy parameter ${name} has no description in routes/stats-schema.ts`);
    properties[name] = schema;
  }
  return properties;
}

function scalarDescription(endpoint: EndpointSpec, name: string, rule: ValueRule): string {
  if (name !== 'page') return `${rule.accepted}.`;
  const merged = endpoint.pagination === 'last_page' ? 'pages are followed until Deskie says `last_page`' : 'pages of 100 are read until `total_count`';
  return (
    `The page, ${rule.accepted}. \`page=1\` is the same as no page. \`page=${ALL_PAGES}\`: ${merged}, merged into one answer ` +
    'and cached as one entry (at most PAGE_ALL_MAX_PAGES pages; more is a 422).'
  );
}

const REQUEST_HEADERS: Readonly<Record<string, Schema>> = {
  'Accept-Encoding': {
    type: 'string',
    examples: ['br, gzip'],
    description: `\`br\` or \`gzip\` (kept compressed per entry, never compressed per request); without it, the answer is ${CODINGS[0]}.`,
  },
  'If-None-Match': { type: 'string', description: 'An ETag from an earlier answer: a 304 when it still matches (RFC 9110 §13.1.2).' },
  'If-Modified-Since': { type: 'string', description: 'An HTTP-date; a 304 when the answer was fetched from Deskie no later (used only without If-None-Match).' },
  'X-Request-Id': { type: 'string', description: 'Kept and sent back when it is 1 to 128 characters of letters, digits and `_.:@/+=-`; otherwise one is made.' },
};

const header = (description: string, example?: string): Schema => ({ type: 'string', description, ...(example === undefined ? {} : { examples: [example] }) });

/** The headers answers carry, described once (docs.ts writes them once in the document, in components/headers). */
export const RESPONSE_HEADERS = {
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
} satisfies Record<string, Schema>;

/** Response headers by name, for a response schema's `headers` (docs only: Fastify does not read them). */
export function responseHeaders(...names: Array<keyof typeof RESPONSE_HEADERS>): Record<string, Schema> {
  return Object.fromEntries(names.map((name) => [name, RESPONSE_HEADERS[name]]));
}

/** An error answer: the error body every route answers with (`Error`, one of SHARED_SCHEMAS), and its headers. */
export const errorResponse = (description: string, headers: Record<string, Schema>): Schema => ({ description, headers, $ref: 'Error#' });

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

/** The headers of an error answer: 400, 414 and 500 are this server's own, the others may involve Deskie. */
function errorHeaders(status: string): Record<string, Schema> {
  return responseHeaders(
    'Cache-Control',
    'X-Request-Id',
    'X-Content-Type-Options',
    ...(status === '400' || status === '414' || status === '500' ? [] : (['Cache-Status'] as const)),
    ...(status === '401' ? (['WWW-Authenticate'] as const) : []),
    ...(status === '429' || status === '503' ? (['Retry-After'] as const) : []),
  );
}

function statsResponses(endpoint: EndpointSpec): Record<string, Schema> {
  const names = componentNames(endpoint.name);
  const responses: Record<string, Schema> = {
    200: {
      description:
        'The answer, from the cache or from Deskie. JSON for `normalized`, `raw` (Deskie\'s content type) and `rows`; ' +
        `${CSV_MEDIA} for \`csv\` (a header row, CRLF line ends, empty cells for null, formula-like text prefixed with \`'\`).`,
      headers: responseHeaders(...ANSWER_HEADERS, 'Content-Encoding', 'Content-Disposition'),
      content: {
        [JSON_MEDIA]: {
          schema: { anyOf: [ref(names.answer), ref(names.rows), { type: 'object', description: "`format=raw`: Deskie's body as it came" }] },
        },
        [CSV_MEDIA]: { schema: { type: 'string', description: '`format=csv`, or an Accept that prefers text/csv' } },
      },
    },
    304: { description: 'Not modified: If-None-Match or If-Modified-Since matched this answer.', headers: responseHeaders(...ANSWER_HEADERS), type: 'null' },
  };
  for (const [status, description] of Object.entries(ERROR_STATUSES)) {
    responses[status] = errorResponse(description, errorHeaders(status));
  }
  return responses;
}

const ref = (id: string): Schema => ({ $ref: `${id}#` });
const camel = (snake: string): string => snake.replace(/_([a-z])/g, (_match, letter: string) => letter.toUpperCase());
const pascal = (snake: string): string => camel(snake).replace(/^[a-z]/, (letter) => letter.toUpperCase());
const componentNames = (endpoint: EndpointName) => ({ answer: `${pascal(endpoint)}Answer`, rows: `${pascal(endpoint)}Rows` });

/** How the normalized formats write each kind of field (deskie/fields.ts). */
const FIELD_SCHEMAS: Readonly<Record<FieldKind, Schema>> = {
  number: { type: ['number', 'null'], description: 'A number; null where Deskie sent "-" (no data).' },
  percent: { type: ['number', 'null'], description: 'Percent units ("21.9%" becomes 21.9); null where Deskie sent "-".' },
  date: { type: 'string', format: 'date-time', description: 'ISO 8601 with its offset (Deskie sends RFC 2822).' },
  text: { description: 'As Deskie sent it, never converted.' },
  id: { description: 'As Deskie sent it, never converted.' },
};

function recordSchema(endpoint: EndpointName, extra: Record<string, Schema> = {}): Schema {
  const fields = Object.fromEntries(Object.entries(RECORD_SCHEMAS[endpoint].fields).map(([name, kind]) => [name, FIELD_SCHEMAS[kind]]));
  return {
    type: 'object',
    description: 'Fields not listed pass through unchanged; a value its rule cannot read is kept as Deskie sent it.',
    properties: { ...fields, ...extra },
  };
}

/** The parts of a staff status change's `from` and `to`, in `format=rows`. */
const STATUS_PARTS: Readonly<Record<string, Schema>> = {
  from_name: { type: ['string', 'null'], description: 'The name in `from`, "Offline (2)" giving "Offline".' },
  from_id: { type: ['integer', 'null'], description: 'The id in `from`, "Offline (2)" giving 2.' },
  to_name: { type: ['string', 'null'] },
  to_id: { type: ['integer', 'null'] },
};

function answerSchemas(endpoint: EndpointSpec): Schema[] {
  const { wrapper } = RECORD_SCHEMAS[endpoint.name];
  const names = componentNames(endpoint.name);
  const record = recordSchema(endpoint.name);
  const envelope: Record<string, Schema> =
    endpoint.pagination === 'last_page'
      ? { last_page: { type: 'boolean', description: 'Whether this is the last page.' } }
      : endpoint.pagination === 'total_count'
        ? { total_count: { type: 'integer', description: 'Records in the whole period.' } }
        : {};
  const answer = {
    $id: names.answer,
    type: 'object',
    description: "`format=normalized` (the default): Deskie's shape, records under \"0\", \"1\", ..., values cleaned by the field schema.",
    properties: envelope,
    // The records, under "0", "1", ...: what @fastify/swagger makes of `patternProperties` anyway.
    additionalProperties: wrapper === null ? record : { type: 'object', properties: { [wrapper]: record } },
  };
  const rows = {
    $id: names.rows,
    type: 'object',
    description: "`format=rows`: one flat object per record, in Deskie's order (also the columns of `format=csv`).",
    required: ['rows', 'last_page', 'total_count', 'window'],
    properties: {
      rows: { type: 'array', items: recordSchema(endpoint.name, endpoint.name === 'staff_statuses' ? STATUS_PARTS : {}) },
      last_page: { description: "Deskie's `last_page` when it sent one, otherwise null." },
      total_count: { description: "Deskie's `total_count` when it sent one, otherwise null." },
      window: ref('Window'),
    },
  };
  return [answer, rows];
}

/** Schemas routes refer to by `$ref: '<$id>#'`; docs.ts registers them (`addSchema`) and names them in components/schemas. */
export const SHARED_SCHEMAS: readonly Schema[] = [
  {
    $id: 'Error',
    type: 'object',
    required: ['status', 'error'],
    properties: { status: { type: 'string', enum: ['error'] }, error: { type: 'string', description: 'What is wrong, and what is accepted.' } },
    additionalProperties: false,
  },
  {
    $id: 'Window',
    type: 'object',
    description: 'The absolute window the answer covers, in the account time zone.',
    required: ['from', 'to', 'timezone'],
    properties: {
      from: { type: 'string', format: 'date-time' },
      to: { type: 'string', format: 'date-time', description: 'Exclusive.' },
      timezone: { type: 'string', examples: ['Europe/Berlin'] },
    },
  },
  ...Object.values(ENDPOINTS).flatMap(answerSchemas),
];
