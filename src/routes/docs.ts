import { readFileSync } from 'node:fs';
import swagger, { type SwaggerTransformObject } from '@fastify/swagger';
import swaggerUi from '@fastify/swagger-ui';
import type { FastifyInstance } from 'fastify';
import { RESPONSE_HEADERS, SHARED_SCHEMAS } from './stats-schema.js';

// OpenAPI 3.1 (/docs/json, /docs/yaml), Swagger UI (/docs): what no route says; how HEAD and query objects are written.

export const DOCS_PREFIX = '/docs';

const SECURITY_SCHEMES = {
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
} as const;

const TAGS = [
  { name: 'statistics', description: "Deskie's statistics API, cached" },
  { name: 'operations', description: 'Health, readiness and Prometheus metrics: never cached, never forwarded' },
  { name: 'admin', description: 'The cache, listed, purged and prewarmed (only when ADMIN_TOKEN is set)' },
];

// The few shapes of OpenAPI 3.1 read here (openapi-types mixes 3.0 into its 3.1 operations).
interface Parameter {
  readonly in: string;
  readonly schema?: { readonly type?: unknown };
}
type Headers = Readonly<Record<string, { readonly description?: string } | { readonly $ref: string }>>;
interface Response {
  readonly headers?: Headers;
  readonly content?: unknown;
}
interface Operation {
  readonly operationId?: string;
  readonly summary?: string;
  readonly tags?: readonly string[];
  readonly parameters?: readonly Parameter[];
  readonly responses?: Readonly<Record<string, Response>>;
}
/** A path's operations by method and, once finished, the parameters they share. */
type PathItem = Readonly<Record<string, Operation | readonly Parameter[]>>;
interface Document {
  readonly tags?: ReadonlyArray<{ readonly name: string }>;
  readonly paths?: Readonly<Record<string, PathItem>>;
  readonly components?: Readonly<Record<string, unknown>>;
}

/** The response headers routes share (stats-schema.ts), as OpenAPI writes a header. */
const COMPONENT_HEADERS: Readonly<Record<string, { readonly description: string; readonly schema: object }>> = Object.fromEntries(
  Object.entries(RESPONSE_HEADERS).map(([name, { description, ...schema }]) => [name, { description: description as string, schema }]),
);

/** Registers the shared schemas and the document at the root, before any route, so that every route is seen. */
export function registerOpenApi(app: FastifyInstance): void {
  for (const schema of SHARED_SCHEMAS) app.addSchema(schema);
  app.register(swagger, {
    openapi: { openapi: '3.1.0', info: info(), tags: TAGS, components: { securitySchemes: SECURITY_SCHEMES } },
    // A shared schema is components/schemas/<its $id>.
    refResolver: { buildLocalReference: (json, _baseUri, _fragment, i) => (typeof json['$id'] === 'string' ? json['$id'] : `def-${i}`) },
    transformObject: (documentObject) => {
      if (!('openapiObject' in documentObject)) throw new Error('the API description is an OpenAPI document');
      // openapi-types' shapes are not the ones read here (see the types above); both are the same JSON.
      return finish(documentObject.openapiObject as Document) as ReturnType<SwaggerTransformObject>;
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

function info(): { title: string; version: string; description: string } {
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

function packageVersion(): string {
  try {
    const manifest = JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as { version?: unknown };
    return typeof manifest.version === 'string' ? manifest.version : '0.0.0';
  } catch {
    return '0.0.0';
  }
}

/** Swagger's document as a client reads it: HEAD apart from GET, deepObject query objects, shared headers once, only tags in use. */
function finish(document: Document): Document {
  const paths = Object.fromEntries(Object.entries(document.paths ?? {}).map(([path, item]) => [path, finishPath(item)]));
  const used = new Set(Object.values(paths).flatMap((item) => Object.values(item).flatMap((operation) => (operation as Operation).tags ?? [])));
  return { ...document, tags: TAGS.filter((tag) => used.has(tag.name)), paths, components: { ...document.components, headers: COMPONENT_HEADERS } };
}

/** A path's operations (swagger writes nothing else), each finished, and GET and HEAD declared together written apart. */
function finishPath(item: PathItem): PathItem {
  const operations = Object.fromEntries((Object.entries(item) as Array<[string, Operation]>).map(([method, operation]) => [method, finishOperation(operation)]));
  const { get, head } = operations;
  if (get === undefined || head === undefined) return operations;
  // HEAD, declared with GET: parameters once, for the path; its own id and summary, and no bodies (RFC 9110 §9.3.2).
  return {
    ...operations,
    ...(get.parameters && { parameters: get.parameters }),
    get: without(get, 'parameters'),
    head: {
      ...without(head, 'parameters'),
      ...(head.operationId && { operationId: `${head.operationId}Head` }),
      ...(head.summary && { summary: `${head.summary}: headers only` }),
      responses: Object.fromEntries(Object.entries(head.responses ?? {}).map(([status, response]) => [status, without(response, 'content')])),
    },
  };
}

const without = <T extends object>(object: T, field: keyof T): T => Object.fromEntries(Object.entries(object).filter(([key]) => key !== field)) as T;

function finishOperation(operation: Operation): Operation {
  const responses = Object.entries(operation.responses ?? {}).map(([status, response]) => [
    status,
    { ...response, ...(response.headers && { headers: sharedHeaders(response.headers) }) },
  ]);
  return { ...operation, ...(operation.parameters && { parameters: operation.parameters.map(serialized) }), responses: Object.fromEntries(responses) };
}

/** A header described as the shared one of its name is, refers to it. */
function sharedHeaders(headers: Headers): Headers {
  return Object.fromEntries(
    Object.entries(headers).map(([name, header]) => [
      name,
      'description' in header && header.description === COMPONENT_HEADERS[name]?.description ? { $ref: `#/components/headers/${name}` } : header,
    ]),
  );
}

/** An object in a query string is written `name[key]=value`: OpenAPI's deepObject (swagger copies no style per parameter). */
function serialized(parameter: Parameter): Parameter {
  return parameter.in === 'query' && parameter.schema?.type === 'object' ? ({ ...parameter, style: 'deepObject', explode: true } as Parameter) : parameter;
}
