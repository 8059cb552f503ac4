import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { Ajv2020 } from 'ajv/dist/2020.js';
import addFormats from 'ajv-formats';
import fc from 'fast-check';
import t from 'tap';
import { buildApp } from '../src/app.js';
import { loadConfig } from '../src/config/config.js';
import { ENDPOINTS, type EndpointSpec, nonEmptyText, type ValueRule } from '../src/deskie/endpoints.js';
import { PERIODS } from '../src/deskie/periods.js';
import { BOM_PARAMETER, BOM_VALUES, FORMAT_PARAMETER, FORMATS } from '../src/formats/representations.js';
import { DOCS_PREFIX } from '../src/routes/docs.js';
import { valueSchema } from '../src/routes/stats-schema.js';
import { PROXY_PARAMETERS } from '../src/formats/representations.js';
import { DEMO, type Stack, startStack } from './helpers/stack.js';

type Json = Record<string, unknown>;
type Schema = Json;
interface Parameter {
  readonly name: string;
  readonly in: string;
  readonly schema: Schema;
  readonly style?: string;
  readonly example?: unknown;
}
interface Response {
  readonly description: string;
  readonly headers?: Record<string, { schema: Schema }>;
  readonly content?: Record<string, { schema: Schema }>;
}
interface Operation {
  readonly operationId?: string;
  readonly tags?: string[];
  readonly security?: Array<Record<string, string[]>>;
  readonly parameters?: Parameter[];
  readonly responses: Record<string, Response | { $ref: string }>;
}
interface PathItem {
  readonly parameters?: Parameter[];
  readonly [method: string]: Operation | Parameter[] | undefined;
}
interface Document {
  readonly openapi: string;
  readonly info: { title: string; version: string };
  readonly tags: Array<{ name: string }>;
  readonly paths: Record<string, PathItem>;
  readonly components: { schemas: Record<string, Schema>; securitySchemes: Record<string, Json>; [kind: string]: Record<string, unknown> };
}

const ADMIN_TOKEN = 'admin-token-0123456789';
const TIME_PARAMETERS = ['period', 'from_time', 'to_time'];
/** The answer headers the issue asks to document, as the routes write them. */
const ANSWER_HEADERS = ['Cache-Status', 'ETag', 'Cache-Control', 'Age', 'Last-Modified', 'Vary', 'X-Request-Id'];
const ERROR_STATUSES = ['400', '401', '404', '422', '429', '502', '503', '504'];
const SEED = 20261128;

async function documentOf(stack: Stack): Promise<Document> {
  const answer = await stack.get(`${DOCS_PREFIX}/json`, { authorization: null });
  if (answer.status !== 200) throw new Error(`${DOCS_PREFIX}/json answered ${answer.status}`);
  return JSON.parse(answer.text) as Document;
}

const operationOf = (document: Document, endpoint: EndpointSpec, method = 'get'): Operation => {
  const operation = document.paths[endpoint.path]?.[method] as Operation | undefined;
  if (operation === undefined) throw new Error(`${method.toUpperCase()} ${endpoint.path} is not in the document`);
  return operation;
};

/** A component the node refers to (`{"$ref": "#/components/..."}`), or the node itself. */
function deref<T>(document: Document, node: T | { $ref: string }): T {
  if (node === null || typeof node !== 'object' || !('$ref' in node)) return node as T;
  const [, kind, name] = /^#\/components\/(\w+)\/(.+)$/.exec(node.$ref) ?? [];
  const target = document.components[kind as string]?.[name as string];
  if (target === undefined) throw new Error(`${node.$ref} does not resolve`);
  return target as T;
}

/** An operation's responses, references resolved. */
const responsesOf = (document: Document, operation: Operation): Record<string, Response> =>
  Object.fromEntries(Object.entries(operation.responses).map(([status, response]) => [status, deref<Response>(document, response)]));

/** The query parameters of a path's operation: the path's own and the operation's. */
function queryParameters(document: Document, endpoint: EndpointSpec, method = 'get'): Parameter[] {
  const item = document.paths[endpoint.path];
  return [...(item?.parameters ?? []), ...(operationOf(document, endpoint, method).parameters ?? [])].filter((parameter) => parameter.in === 'query');
}

/**
 * What the validator accepts on an endpoint, read from its tables as
 * deskie/query.ts reads them: the time parameters, each filter as `name`
 * and `name[]`, the scalars, custom fields (one deepObject parameter,
 * `custom_fields[cf_N]`), the operator's extra names and the proxy's own.
 */
function acceptedByTables(endpoint: EndpointSpec, extraParameters: readonly string[] = []): string[] {
  return [
    ...TIME_PARAMETERS,
    ...Object.keys(endpoint.filters).flatMap((name) => [name, `${name}[]`]),
    ...Object.keys(endpoint.scalars),
    ...(endpoint.customFields ? ['custom_fields'] : []),
    ...extraParameters,
    ...PROXY_PARAMETERS,
  ].sort();
}

/** The names the validator lists in its own 400 for an unknown parameter ("... accepts period, ..., group_id (or group_id[]), ..."). */
async function acceptedByValidator(stack: Stack, endpoint: EndpointSpec): Promise<string[]> {
  const answer = await stack.get(`${endpoint.path}?period=today&_=1`);
  const { error } = JSON.parse(answer.text) as { error: string };
  const listed = /accepts (.*)$/.exec(error)?.[1];
  if (answer.status !== 400 || listed === undefined) throw new Error(`no list of accepted names in ${answer.status} ${answer.text}`);
  return listed
    .split(', ')
    .flatMap((item) => {
      const either = /^(\S+) \(or (\S+)\)$/.exec(item);
      if (either) return [either[1] as string, either[2] as string];
      return [item === 'custom_fields[cf_N]' ? 'custom_fields' : item];
    })
    .sort();
}

/** Values a schema documents: every listed one, the bounds, examples, and a few drawn from its pattern. */
function documentedValues(schema: Schema, { all = true } = {}): string[] {
  const values = new Set<string>();
  const examples = (schema['examples'] as unknown[] | undefined) ?? [];
  for (const example of examples) values.add(String(example));
  if (Array.isArray(schema['enum'])) for (const value of schema['enum'] as unknown[]) values.add(String(value));
  if (schema['type'] === 'integer') {
    values.add(String(schema['minimum']));
    values.add(String(schema['maximum']));
  }
  if (typeof schema['pattern'] === 'string') {
    for (const value of fc.sample(fc.stringMatching(new RegExp(schema['pattern'])), { numRuns: 3, seed: SEED })) values.add(value);
  }
  if (typeof schema['minLength'] === 'number') values.add('a'.repeat(schema['minLength']));
  if (typeof schema['maxLength'] === 'number') values.add('z'.repeat(schema['maxLength']));
  if (values.size === 0) throw new Error(`no documented value in ${JSON.stringify(schema)}`);
  return all ? [...values] : [...values].slice(0, 1);
}

/** Query strings that give `parameter` documented values, each on top of a documented period when it is not a time parameter itself. */
function documentedQueries(parameters: readonly Parameter[], parameter: Parameter, { all = true } = {}): string[] {
  const base = TIME_PARAMETERS.includes(parameter.name) ? '' : 'period=today&';
  const encode = (value: string) => encodeURIComponent(value);
  if (parameter.name === 'from_time' || parameter.name === 'to_time') {
    const example = (name: string) => parameters.find((other) => other.name === name)?.example as string;
    return [`from_time=${encode(example('from_time'))}&to_time=${encode(example('to_time'))}`];
  }
  const { schema } = parameter;
  if (parameter.style === 'deepObject') {
    const [key, value] = Object.entries(parameter.example as Json)[0] as [string, string];
    const drawnKey = fc.sample(fc.stringMatching(new RegExp((schema['propertyNames'] as Schema)['pattern'] as string)), { numRuns: 1, seed: SEED })[0];
    return [
      `${base}${parameter.name}[${key}]=${encode(value)}`,
      `${base}${parameter.name}[${drawnKey}]=${encode(documentedValues(schema['additionalProperties'] as Schema)[0] as string)}`,
    ];
  }
  if (schema['type'] === 'array') {
    const values = documentedValues(schema['items'] as Schema);
    if (!all) return [`${base}${values.slice(0, 2).map((value) => `${parameter.name}=${encode(value)}`).join('&')}`];
    return values.map((value) => `${base}${parameter.name}=${encode(value)}`);
  }
  return documentedValues(schema, { all }).map((value) => `${base}${parameter.name}=${encode(value)}`);
}

/** Every `$ref` in the document, and every JSON Schema in it (parameters, headers, bodies, components). */
function walk(document: Document): { refs: string[]; schemas: Array<{ at: string; schema: Schema }> } {
  const refs: string[] = [];
  const schemas: Array<{ at: string; schema: Schema }> = [];
  const visit = (node: unknown, at: string): void => {
    if (Array.isArray(node)) return node.forEach((item, index) => visit(item, `${at}/${index}`));
    if (node === null || typeof node !== 'object') return;
    for (const [key, value] of Object.entries(node)) {
      if (key === '$ref' && typeof value === 'string') refs.push(value);
      if (key === 'schema' && value !== null && typeof value === 'object') schemas.push({ at: `${at}/schema`, schema: value as Schema });
      visit(value, `${at}/${key}`);
    }
  };
  visit(document.paths, '#/paths');
  for (const [name, schema] of Object.entries(document.components.schemas)) schemas.push({ at: `#/components/schemas/${name}`, schema });
  for (const [kind, components] of Object.entries(document.components)) visit(components, `#/components/${kind}`);
  return { refs, schemas };
}

/** A strict JSON Schema 2020-12 compiler (OpenAPI 3.1's dialect) that resolves the document's component references. */
function schemaCompiler(document: Document): (schema: Schema) => ReturnType<Ajv2020['compile']> {
  const ajv = new Ajv2020({ strict: true, allErrors: true });
  addFormats.default(ajv);
  const rewrite = (node: unknown): unknown => {
    if (Array.isArray(node)) return node.map(rewrite);
    if (node === null || typeof node !== 'object') return node;
    return Object.fromEntries(
      Object.entries(node).map(([key, value]) => [
        key,
        key === '$ref' && typeof value === 'string' ? value.replace('#/components/schemas/', 'https://document.test/components#/$defs/') : rewrite(value),
      ]),
    );
  };
  ajv.addSchema({ $id: 'https://document.test/components', $defs: rewrite(document.components.schemas) as Json });
  return (schema) => ajv.compile(rewrite(schema) as Schema);
}

t.test('/docs/json is a valid OpenAPI 3.1 document describing the three statistics routes, GET and HEAD', async (t) => {
  const stack = await startStack(t);
  const answer = await stack.get(`${DOCS_PREFIX}/json`, { authorization: null });
  t.equal(answer.status, 200, 'served without credentials');
  t.match(answer.headers['content-type'], /^application\/json/);
  const document = JSON.parse(answer.text) as Document;
  t.match(document.openapi, /^3\.1\.\d+$/, 'OpenAPI 3.1');
  const manifest = JSON.parse(readFileSync(new URL('../package.json', import.meta.url), 'utf8')) as { name: string; version: string };
  t.same({ title: document.info.title, version: document.info.version }, { title: manifest.name, version: manifest.version }, "this package's name and version");

  t.match(document.components.securitySchemes['deskie'], { type: 'http', scheme: 'basic' }, 'HTTP Basic');
  for (const endpoint of Object.values(ENDPOINTS)) {
    for (const method of ['get', 'head']) {
      const operation = operationOf(document, endpoint, method);
      t.same(operation.security, [{ deskie: [] }], `${method.toUpperCase()} ${endpoint.path}: HTTP Basic with the Deskie e-mail and API key`);
      t.same(operation.tags, ['statistics']);
    }
  }

  const operationIds = Object.values(document.paths).flatMap((item) =>
    Object.entries(item).flatMap(([field, operation]) => (field === 'parameters' ? [] : ((operation as Operation).operationId ?? []))),
  );
  t.equal(new Set(operationIds).size, operationIds.length, 'operation ids are unique');

  const { refs, schemas } = walk(document);
  const unresolved = refs.filter((ref) => {
    try {
      deref(document, { $ref: ref });
      return false;
    } catch {
      return true;
    }
  });
  t.same(unresolved, [], 'every $ref resolves');
  const compile = schemaCompiler(document);
  const invalid = schemas.flatMap(({ at, schema }) => {
    try {
      compile(schema);
      return [];
    } catch (error) {
      return [`${at}: ${(error as Error).message}`];
    }
  });
  t.same(invalid, [], `all ${schemas.length} schemas are strict JSON Schema 2020-12`);
});

t.test('the statistics answers are documented: JSON and CSV, codings, cache headers, 304 and the error body', async (t) => {
  const stack = await startStack(t);
  const document = await documentOf(stack);
  const compile = schemaCompiler(document);
  const errorBody = compile({ $ref: '#/components/schemas/Error' });

  for (const endpoint of Object.values(ENDPOINTS)) {
    const responses = responsesOf(document, operationOf(document, endpoint));
    const ok = responses['200'] as Response;
    t.same(Object.keys(ok.content ?? {}).sort(), ['application/json', 'text/csv'], `${endpoint.path}: JSON and CSV`);
    t.ok(ANSWER_HEADERS.every((name) => name in (ok.headers ?? {})), `${endpoint.path}: ${ANSWER_HEADERS.join(', ')} on a 200`);
    t.ok('Content-Encoding' in (ok.headers ?? {}), 'the content coding');
    t.ok(ANSWER_HEADERS.every((name) => name in (responses['304']?.headers ?? {})), 'and on a 304');
    t.notOk(responses['304']?.content, 'a 304 has no body');
    for (const status of ERROR_STATUSES) {
      t.same(responses[status]?.content?.['application/json']?.schema, { $ref: '#/components/schemas/Error' }, `${status}: the error body`);
    }
    t.ok('WWW-Authenticate' in (responses['401']?.headers ?? {}), '401 names its challenge');
    t.ok('Retry-After' in (responses['503']?.headers ?? {}) && 'Retry-After' in (responses['429']?.headers ?? {}), '429 and 503 say when to retry');
    const head = responsesOf(document, operationOf(document, endpoint, 'head'));
    t.same(Object.keys(head), Object.keys(responses), 'HEAD answers the same statuses');
    t.ok(Object.values(head).every((response) => response.content === undefined), 'HEAD answers carry no body');
    t.same(head['200']?.headers, ok.headers, 'with the same headers');
  }
  t.same(document.components.schemas['Error'], {
    type: 'object',
    required: ['status', 'error'],
    properties: { status: { type: 'string', enum: ['error'] }, error: { type: 'string', description: 'What is wrong, and what is accepted.' } },
    additionalProperties: false,
  });

  // What the document says is what the routes do.
  const path = '/api/stats_leaderboard.json?period=today';
  const responses = responsesOf(document, operationOf(document, ENDPOINTS.leaderboard));
  const first = await stack.get(path);
  t.equal(first.status, 200);
  // Content-Encoding and Content-Disposition are sent when they apply: a coding asked for, CSV.
  for (const name of Object.keys(responses['200']?.headers ?? {}).filter((name) => name !== 'Content-Encoding' && name !== 'Content-Disposition')) {
    t.ok(first.headers[name.toLowerCase()] !== undefined, `a 200 carries ${name}`);
  }
  t.equal((await stack.get(path, { headers: { 'accept-encoding': 'br' } })).headers['content-encoding'], 'br', 'a coding when asked for');
  const again = await stack.get(path, { headers: { 'if-none-match': String(first.headers['etag']) } });
  t.equal(again.status, 304, 'If-None-Match with the ETag: 304');
  for (const name of Object.keys(responses['304']?.headers ?? {})) t.ok(again.headers[name.toLowerCase()] !== undefined, `a 304 carries ${name}`);
  const csv = await stack.get(`${path}&format=csv`);
  t.ok(Object.keys(responses['200']?.content ?? {}).some((media) => String(csv.headers['content-type']).startsWith(media)), `${csv.headers['content-type']} is documented`);
  t.ok(csv.headers['content-disposition'] !== undefined, 'CSV carries Content-Disposition');
  const rows = await stack.get(`${path}&format=rows`);
  t.ok(compile({ $ref: '#/components/schemas/LeaderboardRows' })(JSON.parse(rows.text)), 'format=rows matches its schema');
  const normalized = JSON.parse(first.text) as unknown;
  t.ok(compile({ $ref: '#/components/schemas/LeaderboardAnswer' })(normalized), 'the default format matches its schema');

  const refused = await stack.get('/api/stats_leaderboard.json?period=someday');
  t.equal(refused.status, 400);
  t.ok(errorBody(JSON.parse(refused.text)), `a 400 body is the documented error: ${refused.text}`);
  const anonymous = await stack.get(path, { authorization: null });
  t.equal(anonymous.status, 401);
  t.ok(errorBody(JSON.parse(anonymous.text)), 'so is a 401');
  t.ok(anonymous.headers['www-authenticate'], 'with its challenge');
});

t.test('the query parameters documented are exactly those the validator accepts', async (t) => {
  const stack = await startStack(t);
  const document = await documentOf(stack);
  for (const endpoint of Object.values(ENDPOINTS)) {
    const documented = queryParameters(document, endpoint).map((parameter) => parameter.name).sort();
    t.same(documented, acceptedByTables(endpoint), `${endpoint.path}: the validator's tables, name for name`);
    t.same(documented, await acceptedByValidator(stack, endpoint), `${endpoint.path}: the list the validator gives in its own 400`);
    const head = queryParameters(document, endpoint, 'head').map((parameter) => parameter.name).sort();
    t.same(head, documented, 'HEAD takes the same');
  }
  const format = queryParameters(document, ENDPOINTS.leaderboard).find((parameter) => parameter.name === FORMAT_PARAMETER);
  t.same(format?.schema['enum'], [...FORMATS], 'formats from FORMATS');
  const bom = queryParameters(document, ENDPOINTS.leaderboard).find((parameter) => parameter.name === BOM_PARAMETER);
  t.same(bom?.schema['enum'], [...BOM_VALUES], 'bom values from representations.ts');
  const period = queryParameters(document, ENDPOINTS.satisfaction).find((parameter) => parameter.name === 'period');
  t.same(period?.schema['enum'], [...PERIODS], 'periods from PERIODS');
});

t.test('each documented parameter, given a documented value, is accepted by the real route', async (t) => {
  const stack = await startStack(t);
  const document = await documentOf(stack);
  for (const endpoint of Object.values(ENDPOINTS)) {
    const parameters = queryParameters(document, endpoint);
    for (const parameter of parameters) {
      for (const query of documentedQueries(parameters, parameter, { all: false })) {
        const answer = await stack.get(`${endpoint.path}?${query}`);
        t.equal(answer.status, 200, `${endpoint.path}?${query}${answer.status === 200 ? '' : `: ${answer.text}`}`);
      }
    }
  }
});

t.test('every documented value of every parameter is accepted by the real route', async (t) => {
  const stack = await startStack(t, { env: { UPSTREAM_RATE_PER_MIN: '100000' } });
  const document = await documentOf(stack);
  let sent = 0;
  for (const endpoint of Object.values(ENDPOINTS)) {
    const parameters = queryParameters(document, endpoint);
    const refused: string[] = [];
    for (const parameter of parameters) {
      for (const query of documentedQueries(parameters, parameter)) {
        sent += 1;
        const answer = await stack.get(`${endpoint.path}?${query}`);
        if (answer.status !== 200) refused.push(`${query}: ${answer.status} ${answer.text}`);
      }
    }
    t.same(refused, [], `${endpoint.path}: every enum value, bound, example and pattern sample answers 200`);
  }
  t.ok(sent > 150, `${sent} requests`);
});

t.test('a parameter the document does not list is a 400 that names it, and Deskie is not called', async (t) => {
  const stack = await startStack(t);
  const document = await documentOf(stack);
  const allDocumented = new Set(
    Object.values(ENDPOINTS).flatMap((endpoint) => queryParameters(document, endpoint).map((parameter) => parameter.name)),
  );
  for (const endpoint of Object.values(ENDPOINTS)) {
    const documented = new Set(queryParameters(document, endpoint).map((parameter) => parameter.name));
    const undocumented = [
      '_',
      'Period',
      'user_ids',
      'format[]',
      'page[]',
      'custom_fields[cf_01]',
      'custom_fields[name]',
      'api_key',
      // Documented on another route, not this one.
      ...[...allDocumented].filter((name) => !documented.has(name)),
    ];
    for (const name of undocumented) {
      t.notOk(documented.has(name), `${name} is not documented on ${endpoint.path}`);
      const calls = stack.simulator.calls;
      const answer = await stack.get(`${endpoint.path}?period=today&${name}=1`);
      t.equal(answer.status, 400, `${endpoint.path}?…&${name}=1 is refused`);
      t.match(JSON.parse(answer.text), { status: 'error', error: /unknown parameter/ });
      t.ok((JSON.parse(answer.text) as { error: string }).error.includes(name), `the error names ${name}`);
      t.equal(stack.simulator.calls, calls, 'Deskie is not called');
    }
  }
});

t.test("the documented value schemas accept what the validator's rules accept, and nothing else", async (t) => {
  const ajv = new Ajv2020({ strict: true });
  const rules = new Map<ValueRule, string>([[nonEmptyText, 'custom_fields[cf_N]']]);
  for (const endpoint of Object.values(ENDPOINTS)) {
    for (const [name, rule] of [...Object.entries(endpoint.filters), ...Object.entries(endpoint.scalars)]) rules.set(rule, name);
  }
  for (const [rule, name] of rules) {
    const schema = valueSchema(rule);
    const valid = ajv.compile(schema);
    if (schema['type'] === 'integer') {
      fc.assert(
        fc.property(fc.integer({ min: -1_000, max: 1_000_000 }), (value) => valid(value) === rule.test(String(value))),
        { seed: SEED },
      );
      for (const written of ['01', '+1', '1.0', ' 1', '1e1', '']) t.notOk(rule.test(written), `${name}: ${JSON.stringify(written)} is refused (no sign, leading zero or decimal point)`);
      t.pass(`${name}: integers agree with ${JSON.stringify(schema)}`);
      continue;
    }
    // ASCII text: the schema's lengths count code points, the validator UTF-16 units; they agree on ASCII.
    const candidates = fc.oneof(
      fc.string(),
      fc.string({ minLength: 495, maxLength: 505 }),
      fc.nat().map(String),
      fc.stringMatching(/^[0-9]{0,22}$/),
      fc.constantFrom('', '0', '00', '01', 'all', 'ALL', 'all ', '-1', 'cch', 'cch0', 'cch01', 'e', 'E-Mail', 'live_chat'),
      ...(rule.pattern === undefined ? [] : [fc.stringMatching(rule.pattern)]),
      ...(rule.values === undefined ? [] : [fc.constantFrom(...rule.values)]),
    );
    fc.assert(
      fc.property(candidates, (value) => valid(value) === rule.test(value)),
      { seed: SEED, numRuns: 500 },
    );
    t.pass(`${name}: ${JSON.stringify(schema)} agrees with the rule`);
  }
});

t.test("the operator's extraParameters are documented on every statistics route and accepted", async (t) => {
  const dir = t.testdir({ 'proxy.json': JSON.stringify({ extraParameters: ['lang'] }) });
  const stack = await startStack(t, { env: { CONFIG_FILE: join(dir, 'proxy.json') } });
  const document = await documentOf(stack);
  for (const endpoint of Object.values(ENDPOINTS)) {
    const documented = queryParameters(document, endpoint).map((parameter) => parameter.name).sort();
    t.same(documented, acceptedByTables(endpoint, ['lang']), `${endpoint.path} documents lang`);
    t.same(documented, await acceptedByValidator(stack, endpoint), 'as the validator lists it');
    t.equal((await stack.get(`${endpoint.path}?period=today&lang=de`)).status, 200, 'and accepts it');
  }
});

/** `METHOD /path` for every route in Fastify's route tree. */
function routesOf(tree: string): string[] {
  const routes: string[] = [];
  const parents: string[] = [];
  for (const line of tree.split('\n')) {
    const match = /^([│ ]*)[├└]── (.*) \(([A-Z, ]+)\)$/.exec(line);
    if (!match) continue;
    const depth = (match[1] as string).length / 4;
    const path = (parents[depth - 1] ?? '') + (match[2] as string);
    parents[depth] = path;
    for (const method of (match[3] as string).split(', ')) routes.push(`${method} ${path}`);
  }
  return routes.sort();
}

t.test('/docs/json documents every route the server answers, except /docs itself', async (t) => {
  const stack = await startStack(t, { env: { ADMIN_TOKEN, METRICS_TOKEN: 'metrics-token-0123456789' } });
  const document = await documentOf(stack);
  const documented = Object.entries(document.paths)
    .flatMap(([path, item]) =>
      Object.keys(item)
        .filter((field) => field !== 'parameters')
        .map((method) => `${method.toUpperCase()} ${path.replace(/\{(\w+)\}/g, ':$1')}`),
    )
    .sort();
  const served = routesOf(stack.app.printRoutes({ commonPrefix: false })).filter((route) => !route.split(' ')[1]?.startsWith(DOCS_PREFIX));
  t.ok(routesOf(stack.app.printRoutes({ commonPrefix: false })).includes(`GET ${DOCS_PREFIX}`), 'the routes include the page');
  t.same(documented, served, 'the same routes, method for method');
  t.notOk(Object.keys(document.paths).some((path) => path.startsWith(DOCS_PREFIX)), 'the page is not part of the API');

  const usedTags = new Set(
    Object.values(document.paths).flatMap((item) =>
      Object.entries(item).flatMap(([field, operation]) => (field === 'parameters' ? [] : ((operation as Operation).tags ?? []))),
    ),
  );
  t.same(document.tags.map((tag) => tag.name).sort(), [...usedTags].sort(), 'every tag listed is used, and every one used is listed');
  const metrics = document.paths['/metrics']?.['get'] as Operation | undefined;
  t.same(metrics?.security, [{}, { metricsToken: [] }], '/metrics: a bearer token when METRICS_TOKEN is set');
  t.match(document.components.securitySchemes, { metricsToken: { type: 'http', scheme: 'bearer' }, adminToken: { type: 'http', scheme: 'bearer' } });
  for (const path of ['/healthz', '/readyz', '/metrics']) t.same((document.paths[path]?.['get'] as Operation | undefined)?.tags, ['operations'], `${path} is described`);
  for (const [path, item] of Object.entries(document.paths).filter(([path]) => path.startsWith('/admin'))) {
    for (const [method, operation] of Object.entries(item).filter(([field]) => field !== 'parameters')) {
      t.same((operation as Operation).security, [{ adminToken: [] }], `${method.toUpperCase()} ${path}: ADMIN_TOKEN`);
    }
  }
});

t.test('the admin parameters and body documented are the ones its routes check', async (t) => {
  const stack = await startStack(t, { env: { ADMIN_TOKEN } });
  const document = await documentOf(stack);
  const entries = document.paths['/admin/entries'] ?? {};
  for (const method of ['GET', 'DELETE']) {
    const documented = ((entries[method.toLowerCase()] as Operation | undefined)?.parameters ?? []).map((parameter) => parameter.name);
    const refused = await stack.app.inject({ method: method as 'GET' | 'DELETE', url: '/admin/entries?_=1', headers: { authorization: `Bearer ${ADMIN_TOKEN}` } });
    t.equal(refused.statusCode, 400, `${method} /admin/entries?_=1 is refused`);
    const listed = /accepts (.*)$/.exec((JSON.parse(refused.body) as { error: string }).error)?.[1]?.split(', ');
    t.same(documented, listed, `${method} /admin/entries documents the parameters its 400 lists, in order`);
  }
  const prewarm = document.paths['/admin/prewarm']?.['post'] as (Operation & { requestBody?: { content: Record<string, { schema: Schema }> } }) | undefined;
  t.match(
    prewarm?.requestBody?.content['application/json']?.schema,
    { type: 'object', required: ['authorization', 'queries'], properties: { queries: { type: 'array', minItems: 1, maxItems: 1000 } }, additionalProperties: false },
    'the prewarm body: the credential and 1 to 1000 queries, nothing else',
  );
  t.same(Object.keys(prewarm?.responses ?? {}).sort(), ['200', '400', '401', '413', '415'], 'and every status it answers with');
});

t.test("the statistics routes' schemas only describe them: deskie/query.ts still checks each query, with its own messages", async (t) => {
  const config = loadConfig({ CACHE_KEY_SECRET: 'test-secret-of-16-bytes', DESKIE_URL: 'http://127.0.0.1:9' });
  const app = buildApp({ ...config, deskieUrl: 'http://127.0.0.1:9' });
  t.teardown(() => app.close());
  const schemas = new Map<string, { querystring?: unknown } | undefined>();
  app.addHook('onRequest', async (request) => {
    schemas.set(request.url.split('?')[0] as string, request.routeOptions.schema);
  });
  await app.ready();
  for (const endpoint of Object.values(ENDPOINTS)) {
    const unknown = await app.inject({ url: `${endpoint.path}?period=today&_=1`, headers: { authorization: DEMO } });
    t.ok(schemas.get(endpoint.path)?.querystring, `${endpoint.path}: the route carries the parameters the document shows`);
    t.equal(unknown.statusCode, 400, `${endpoint.path}: an unknown parameter is a 400`);
    t.match(JSON.parse(unknown.body), { status: 'error', error: /^unknown parameter _; .*accepts period, / }, "in the validator's words, naming what it accepts");
    const someday = await app.inject({ url: `${endpoint.path}?period=someday`, headers: { authorization: DEMO } });
    t.match(JSON.parse(someday.body), { status: 'error', error: /^period must be one of .*; got "someday"$/ }, 'a value the schema does not list: the same');
  }
});

t.test('/docs serves Swagger UI, its scripts and styles read from the installed package', async (t) => {
  const stack = await startStack(t);
  const page = await stack.get(DOCS_PREFIX, { authorization: null });
  t.equal(page.status, 200);
  t.match(page.headers['content-type'], /^text\/html/);
  t.match(page.text, /<div id="swagger-ui">/);
  const assets = [...page.text.matchAll(/(?:src|href)="([^"]+)"/g)].map((match) => match[1] as string);
  t.ok(assets.some((asset) => asset.endsWith('swagger-ui-bundle.js')), 'the Swagger UI bundle');
  const staticDir = join(dirname(createRequire(import.meta.url).resolve('@fastify/swagger-ui')), 'static');
  for (const asset of assets) {
    const answer = await stack.get(asset, { authorization: null });
    t.equal(answer.status, 200, `${asset} loads`);
    const file = asset.replace(`${DOCS_PREFIX}/static/`, '');
    if (file === 'swagger-initializer.js') {
      t.match(answer.text, /resolveUrl\('\.\/json'\)/, 'the page reads the document at ./json');
      t.match(answer.headers['content-type'], /javascript/);
    } else {
      t.equal(answer.text, readFileSync(join(staticDir, file), 'utf8'), `${file} is the package's own file`);
    }
  }
});
