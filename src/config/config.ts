import { randomBytes } from 'node:crypto';
import { existsSync, readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { isIP } from 'node:net';
import { isAbsolute, resolve } from 'node:path';
import { IANAZone, type DurationLike } from 'luxon';
import Type, { type Static, type TSchema } from 'typebox';
import Schema from 'typebox/schema';
import type * as TypeBoxValue from 'typebox/value';
import { type EndpointName, ENDPOINTS } from '../deskie/endpoints.js';
import { type Access, parseTokenList, readTokenFile, TokenListError } from '../auth/clients.js';
import { DEFAULT_LIFETIMES, FRESHNESS_CLASSES, type FreshnessClass, type Lifetimes, type Weekday } from '../deskie/periods.js';

export const DEFAULT_PORT = 3000;
export const DEFAULT_CACHE_MAX_BYTES = 256 * 1024 * 1024;
const DEFAULT_CONFIG_FILE = 'config/proxy.json';
/** Settings no longer used: still accepted so old deployments start, and named in a warning at start-up. */
const RETIRED_SETTINGS = ['REFRESH_AHEAD'] as const;
/** Without CONNECTION_TIMEOUT_MS, how much longer than the longest wait for Deskie a connection may idle. */
export const CONNECTION_TIMEOUT_MARGIN_MS = 10_000;

const WEEKDAYS = ['monday', 'tuesday', 'wednesday', 'thursday', 'friday', 'saturday', 'sunday'] as const;
const LOG_LEVELS = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'] as const;

/** The environment this server reads; every variable is listed in docs/settings.md. */
const EnvSchema = Type.Object({
  PORT: Type.Integer({ minimum: 0, maximum: 65535, default: DEFAULT_PORT }),
  HOST: Type.String({ minLength: 1, default: '0.0.0.0' }),
  NODE_ENV: Type.String({ default: 'development' }),
  DESKIE_URL: Type.Optional(Type.String({ minLength: 1 })),
  DESKIE_TIMEZONE: Type.String({ minLength: 1, default: 'UTC' }),
  DESKIE_WEEK_START: Type.Enum(WEEKDAYS, { default: 'monday' }),
  CACHE_MAX_BYTES: Type.Integer({ minimum: 1024 * 1024, default: DEFAULT_CACHE_MAX_BYTES }),
  CACHE_KEY_SECRET: Type.Optional(Type.String({ minLength: 16 })),
  UPSTREAM_TIMEOUT_MS: Type.Integer({ minimum: 1, default: 30_000 }),
  UPSTREAM_MAX_BODY_BYTES: Type.Integer({ minimum: 1024, default: 32 * 1024 * 1024 }),
  UPSTREAM_CONNECTIONS: Type.Integer({ minimum: 1, maximum: 256, default: 8 }),
  PAGE_ALL_MAX_PAGES: Type.Integer({ minimum: 1, maximum: 1000, default: 50 }),
  PAGE_ALL_TIMEOUT_MS: Type.Integer({ minimum: 1, default: 120_000 }),
  STALE_IF_ERROR_SECONDS: Type.Integer({ minimum: 0, default: 86_400 }),
  // Room for clocks and Deskie's own timing past its cache's expiry.
  REFRESH_MARGIN_MS: Type.Integer({ minimum: 0, maximum: 600_000, default: 1_000 }),
  // Longer than a refresh takes unless Deskie is in trouble.
  STALE_WHILE_REVALIDATE_SECONDS: Type.Integer({ minimum: 0, maximum: 86_400, default: 30 }),
  // Each stream holds a socket and a few kB; per client: a wall of screens, not a leak.
  SSE_MAX_STREAMS: Type.Integer({ minimum: 0, default: 10_000 }),
  SSE_MAX_STREAMS_PER_CLIENT: Type.Integer({ minimum: 0, default: 100 }),
  SSE_MAX_BUFFER_BYTES: Type.Integer({ minimum: 1024, default: 1024 * 1024 }),
  // Retired (refresh in phase replaced it): any value is accepted and ignored.
  REFRESH_AHEAD: Type.Optional(Type.String()),
  UPSTREAM_RATE_PER_MIN: Type.Optional(Type.Integer({ minimum: 1, maximum: 100_000 })),
  UPSTREAM_RESERVE: Type.Number({ minimum: 0, maximum: 0.9, default: 0.2 }),
  UPSTREAM_CONCURRENCY: Type.Integer({ minimum: 1, maximum: 256, default: 4 }),
  UPSTREAM_QUEUE_MS: Type.Integer({ minimum: 1, default: 10_000 }),
  UPSTREAM_QUEUE_LENGTH: Type.Integer({ minimum: 1, maximum: 100_000, default: 1_000 }),
  UPSTREAM_NEW_CREDENTIAL_SHARE: Type.Number({ minimum: 0.01, maximum: 1, default: 0.1 }),
  AUTH_FAILURE_TTL_SECONDS: Type.Integer({ minimum: 0, default: 30 }),
  // The longest a revoked key keeps getting cached answers.
  AUTH_RECHECK_SECONDS: Type.Integer({ minimum: 1, default: 600 }),
  DESKIE_EMAIL: Type.Optional(Type.String({ minLength: 1 })),
  DESKIE_API_KEY: Type.Optional(Type.String({ minLength: 1 })),
  DESKIE_API_KEY_FILE: Type.Optional(Type.String({ minLength: 1 })),
  PROXY_TOKENS: Type.Optional(Type.String({ minLength: 1 })),
  PROXY_TOKENS_FILE: Type.Optional(Type.String({ minLength: 1 })),
  PROXY_AUTH: Type.Optional(Type.Enum(['none'])),
  PROXY_AUTH_NONE_IN_PRODUCTION: Type.Optional(Type.Enum(['yes', 'no'])),
  LOG_LEVEL: Type.Enum(LOG_LEVELS, { default: 'info' }),
  // Long enough for a balancer probing /readyz to see the 503; drain and exit fit `docker stop`'s 10 s.
  SHUTDOWN_DRAIN_SECONDS: Type.Number({ minimum: 0, maximum: 300, default: 5 }),
  // At least 2 s: the answers cut short need a moment to be written.
  SHUTDOWN_TIMEOUT_MS: Type.Integer({ minimum: 2_000, maximum: 3_600_000, default: 8_000 }),
  ADMIN_TOKEN: Type.Optional(Type.String({ minLength: 16 })),
  METRICS_TOKEN: Type.Optional(Type.String({ minLength: 16 })),
  CONFIG_FILE: Type.String({ minLength: 1, default: DEFAULT_CONFIG_FILE }),
  TRUST_PROXY: Type.Optional(Type.String({ minLength: 1 })),
  // A client trickling its headers (slow loris) holds its connection 10 s rather than Node's 60.
  HEADERS_TIMEOUT_MS: Type.Integer({ minimum: 1, default: 10_000 }),
  // Fastify leaves it off, so a trickled body would hold its connection without end.
  REQUEST_TIMEOUT_MS: Type.Integer({ minimum: 1, default: 30_000 }),
  // Longer than balancers' idle (AWS ALB's 60 s), so the balancer closes first.
  KEEP_ALIVE_TIMEOUT_MS: Type.Integer({ minimum: 1, default: 72_000 }),
  CONNECTION_TIMEOUT_MS: Type.Optional(Type.Integer({ minimum: 1 })),
  REDIS_URL: Type.Optional(Type.String({ pattern: '^rediss?://' })),
  REDIS_PREFIX: Type.String({ pattern: '^[A-Za-z0-9_.:-]{1,64}$', default: 'deskie-stats-proxy:' }),
  REDIS_TIMEOUT_MS: Type.Integer({ minimum: 1, maximum: 60_000, default: 250 }),
  L1_MAX_BYTES: Type.Integer({ minimum: 1024 * 1024, default: 32 * 1024 * 1024 }),
});
type Env = Static<typeof EnvSchema>;

/** Every environment variable the server reads (the deployment files are checked against it). */
export const SETTING_NAMES: readonly string[] = Object.keys(EnvSchema.properties);

/** `ttlSeconds` for one endpoint is keyed by the endpoint's name as Deskie's path spells it. */
const ENDPOINT_TTL_KEYS = Object.keys(ENDPOINTS).map((name) => `stats_${name}`);

/** Seconds per period or custom-range class. */
const ClassTtlsSchema = Type.Object(
  Object.fromEntries(FRESHNESS_CLASSES.map((name) => [name, Type.Optional(Type.Integer({ minimum: 1 }))])),
  { additionalProperties: false },
);

/** The optional file under config/: TTL overrides and extra allowed parameters. */
const FileSchema = Type.Object(
  {
    // For every endpoint ({"today": 60}), or for one ({"stats_staff_statuses": {"today": 60}}), which wins.
    ttlSeconds: Type.Optional(
      Type.Object(
        {
          ...ClassTtlsSchema.properties,
          ...Object.fromEntries(ENDPOINT_TTL_KEYS.map((key) => [key, Type.Optional(ClassTtlsSchema)])),
        },
        { additionalProperties: false },
      ),
    ),
    extraParameters: Type.Optional(Type.Array(Type.String({ minLength: 1 }))),
  },
  { additionalProperties: false },
);
type ConfigFile = Static<typeof FileSchema>;

export type Config = ReturnType<typeof loadConfig>;

export class ConfigError extends Error {
  override name = 'ConfigError';
}

/** The environment (and the config file it names) as frozen, validated settings; docs/settings.md describes each. */
export function loadConfig(env: Readonly<Record<string, string | undefined>>, cwd = process.cwd()) {
  const vars = parse(EnvSchema, pickKnown(env), (path) => `environment variable ${path}`);
  if (!IANAZone.isValidZone(vars.DESKIE_TIMEZONE)) {
    throw new ConfigError(
      `DESKIE_TIMEZONE must be an IANA time zone name such as UTC or Europe/Berlin; got ${JSON.stringify(vars.DESKIE_TIMEZONE)}`,
    );
  }
  const deskieUrl = vars.DESKIE_URL === undefined ? null : checkUrl(vars.DESKIE_URL);
  const production = vars.NODE_ENV === 'production';
  if (production && deskieUrl === null) {
    throw new ConfigError(
      'DESKIE_URL is required when NODE_ENV=production: set it to your account, such as https://acme.deskie.io',
    );
  }
  checkSettingsAgree(vars);
  const file = readConfigFile(vars, cwd);
  const access = accessOf(vars, production, cwd);
  return Object.freeze({
    port: vars.PORT,
    host: vars.HOST,
    production,
    // Null: no Deskie configured, so the server embeds the simulator (never in production).
    deskieUrl,
    timezone: vars.DESKIE_TIMEZONE,
    weekStart: (WEEKDAYS.indexOf(vars.DESKIE_WEEK_START) + 1) as Weekday,
    cacheMaxBytes: vars.CACHE_MAX_BYTES,
    cacheKeySecret: vars.CACHE_KEY_SECRET ? Buffer.from(vars.CACHE_KEY_SECRET) : randomBytes(32),
    // A random secret: a restart changes every partition and ETag.
    cacheKeySecretIsRandom: !vars.CACHE_KEY_SECRET,
    upstreamTimeoutMs: vars.UPSTREAM_TIMEOUT_MS,
    upstreamMaxBodyBytes: vars.UPSTREAM_MAX_BODY_BYTES,
    upstreamConnections: vars.UPSTREAM_CONNECTIONS,
    pageAllMaxPages: vars.PAGE_ALL_MAX_PAGES,
    pageAllTimeoutMs: vars.PAGE_ALL_TIMEOUT_MS,
    staleIfErrorSeconds: vars.STALE_IF_ERROR_SECONDS,
    refreshMarginMs: vars.REFRESH_MARGIN_MS,
    staleWhileRevalidateSeconds: vars.STALE_WHILE_REVALIDATE_SECONDS,
    sseMaxStreams: vars.SSE_MAX_STREAMS,
    sseMaxStreamsPerClient: vars.SSE_MAX_STREAMS_PER_CLIENT,
    sseMaxBufferBytes: vars.SSE_MAX_BUFFER_BYTES,
    retiredSettings: Object.freeze(RETIRED_SETTINGS.filter((name) => vars[name] !== undefined)),
    upstreamRatePerMin: vars.UPSTREAM_RATE_PER_MIN,
    upstreamReserve: vars.UPSTREAM_RESERVE,
    upstreamConcurrency: vars.UPSTREAM_CONCURRENCY,
    upstreamQueueMs: vars.UPSTREAM_QUEUE_MS,
    upstreamQueueLength: vars.UPSTREAM_QUEUE_LENGTH,
    upstreamNewCredentialShare: vars.UPSTREAM_NEW_CREDENTIAL_SHARE,
    authFailureTtlSeconds: vars.AUTH_FAILURE_TTL_SECONDS,
    authRecheckSeconds: vars.AUTH_RECHECK_SECONDS,
    access,
    logLevel: vars.LOG_LEVEL,
    shutdownDrainSeconds: vars.SHUTDOWN_DRAIN_SECONDS,
    shutdownTimeoutMs: vars.SHUTDOWN_TIMEOUT_MS,
    adminToken: vars.ADMIN_TOKEN,
    metricsToken: vars.METRICS_TOKEN,
    lifetimes: lifetimesWith(file.ttlSeconds ?? {}),
    extraParameters: new Set(file.extraParameters ?? []) as ReadonlySet<string>,
    trustProxy: vars.TRUST_PROXY === undefined ? false : trustedProxies(vars.TRUST_PROXY),
    headersTimeoutMs: vars.HEADERS_TIMEOUT_MS,
    requestTimeoutMs: vars.REQUEST_TIMEOUT_MS,
    keepAliveTimeoutMs: vars.KEEP_ALIVE_TIMEOUT_MS,
    connectionTimeoutMs: vars.CONNECTION_TIMEOUT_MS ?? longestUpstreamWaitMs(vars) + CONNECTION_TIMEOUT_MARGIN_MS,
    redis:
      vars.REDIS_URL === undefined
        ? undefined
        : { url: vars.REDIS_URL, prefix: vars.REDIS_PREFIX, timeoutMs: vars.REDIS_TIMEOUT_MS, l1MaxBytes: vars.L1_MAX_BYTES },
  });
}

/** Settings that must agree with each other: each refusal names both variables and why. */
function checkSettingsAgree(vars: Env): void {
  if (vars.UPSTREAM_CONCURRENCY > vars.UPSTREAM_CONNECTIONS) {
    throw new ConfigError(
      `UPSTREAM_CONCURRENCY (${vars.UPSTREAM_CONCURRENCY}) must not exceed UPSTREAM_CONNECTIONS (${vars.UPSTREAM_CONNECTIONS}): ` +
        'a call must never wait for a connection after its turn came',
    );
  }
  if (vars.HEADERS_TIMEOUT_MS > vars.REQUEST_TIMEOUT_MS) {
    throw new ConfigError(
      `HEADERS_TIMEOUT_MS (${vars.HEADERS_TIMEOUT_MS}) must not exceed REQUEST_TIMEOUT_MS (${vars.REQUEST_TIMEOUT_MS}): the headers are part of the request`,
    );
  }
  if (vars.SHUTDOWN_DRAIN_SECONDS * 1000 >= vars.SHUTDOWN_TIMEOUT_MS) {
    throw new ConfigError(
      `SHUTDOWN_DRAIN_SECONDS (${vars.SHUTDOWN_DRAIN_SECONDS}) must end before SHUTDOWN_TIMEOUT_MS (${vars.SHUTDOWN_TIMEOUT_MS}) does: ` +
        'the drain is part of the time from SIGTERM to exit; lengthen both together with the platform\'s stop timeout',
    );
  }
  const longestWaitMs = longestUpstreamWaitMs(vars);
  if (vars.CONNECTION_TIMEOUT_MS !== undefined && vars.CONNECTION_TIMEOUT_MS <= longestWaitMs) {
    throw new ConfigError(
      `CONNECTION_TIMEOUT_MS (${vars.CONNECTION_TIMEOUT_MS}) must exceed UPSTREAM_QUEUE_MS + PAGE_ALL_TIMEOUT_MS + UPSTREAM_TIMEOUT_MS ` +
        `(${longestWaitMs}): a miss waits that long for Deskie with nothing sent on its connection`,
    );
  }
  if (vars.REDIS_URL !== undefined && !vars.CACHE_KEY_SECRET) {
    throw new ConfigError(
      'CACHE_KEY_SECRET is required with REDIS_URL: every replica must derive the same cache keys and ETags, or none would find ' +
        "another's answers; set the same random string of 16 characters or more on each",
    );
  }
}

/** The longest a miss waits for Deskie: its turn, every page, the call. */
function longestUpstreamWaitMs(vars: Env): number {
  return vars.UPSTREAM_QUEUE_MS + vars.PAGE_ALL_TIMEOUT_MS + vars.UPSTREAM_TIMEOUT_MS;
}

function pickKnown(env: Readonly<Record<string, string | undefined>>): Record<string, string> {
  const known: Record<string, string> = {};
  for (const [name, schema] of Object.entries(EnvSchema.properties)) {
    const value = env[name];
    if (value === undefined || value === '') continue;
    // TypeBox's conversion would truncate "1.5" to 1: whole numbers are written as such.
    const type = (schema as { type?: unknown }).type;
    if (type === 'integer' && !/^\d+$/.test(value)) {
      throw new ConfigError(`environment variable ${name} must be a whole number; got ${JSON.stringify(value)}`);
    }
    if (type === 'number' && !/^\d+(\.\d+)?$/.test(value)) {
      throw new ConfigError(`environment variable ${name} must be a number such as 0.1; got ${JSON.stringify(value)}`);
    }
    known[name] = value;
  }
  return known;
}

const SECRET_SETTINGS: ReadonlySet<string> = new Set(['CACHE_KEY_SECRET', 'ADMIN_TOKEN', 'METRICS_TOKEN', 'DESKIE_API_KEY', 'PROXY_TOKENS', 'REDIS_URL']);

/** TypeBox's Value (about 6 MiB once loaded), loaded only for input the quick path in parse() refuses. */
const loadValue = (): typeof TypeBoxValue => createRequire(import.meta.url)('typebox/value') as typeof TypeBoxValue;

function parse<S extends TSchema>(schema: S, input: unknown, where: (path: string) => string): Static<S> {
  const quick = usualConversion(schema, input);
  if (Schema.Check(schema, quick)) return quick as Static<S>;
  // Anything else is converted as TypeBox converts (a file's "60" is 60), and refused in its words.
  const Value = loadValue();
  const value = Value.Default(schema, Value.Convert(schema, Value.Clone(input)));
  if (Value.Check(schema, value)) return value as Static<S>;
  const [first] = Value.Errors(schema, value);
  const path = first?.instancePath.replace(/^\//, '').replaceAll('/', '.') || 'value';
  const got = path === 'value' ? undefined : path.split('.').reduce<unknown>((at, part) => (at as Record<string, unknown>)?.[part], input);
  const allowed = (first?.params as { allowedValues?: unknown[] } | undefined)?.allowedValues;
  const detail = allowed
    ? `must be one of ${allowed.join(', ')}`
    : first?.keyword === 'boolean' || first?.message === 'schema is false'
      ? `is not a known setting (ttlSeconds takes ${FRESHNESS_CLASSES.join(', ')}, or one of ${ENDPOINT_TTL_KEYS.join(', ')} holding those)`
      : (first?.message ?? 'is invalid');
  // A secret is never quoted back: the message goes to stderr and logs.
  const quoted = got === undefined || SECRET_SETTINGS.has(path) ? '' : `; got ${JSON.stringify(got)}`;
  throw new ConfigError(`${where(path)} ${detail}${quoted}`);
}

/** Value.Default(Value.Convert()) for usual input without Value: top-level defaults, pickKnown's digits as numbers. */
function usualConversion(schema: TSchema, input: unknown): unknown {
  if (typeof input !== 'object' || input === null || Array.isArray(input)) return input;
  const properties = (schema as { properties?: Record<string, { type?: unknown; default?: unknown }> }).properties ?? {};
  const value: Record<string, unknown> = { ...input };
  for (const [name, property] of Object.entries(properties)) {
    const given = value[name];
    if (given === undefined) {
      if ('default' in property) value[name] = property.default;
    } else if (typeof given === 'string' && (property.type === 'integer' || property.type === 'number')) {
      value[name] = Number(given);
    }
  }
  return value;
}

function checkUrl(value: string): string {
  if (!URL.canParse(value)) {
    throw new ConfigError(`DESKIE_URL must be an http(s) URL such as https://acme.deskie.io; got ${JSON.stringify(value)}`);
  }
  const url = new URL(value);
  if (url.protocol !== 'https:' && url.protocol !== 'http:') {
    throw new ConfigError(`DESKIE_URL must use http or https; got ${JSON.stringify(value)}`);
  }
  // Credentials come from each client; a query or fragment would be dropped silently.
  if (url.username || url.password || url.search || url.hash) {
    throw new ConfigError('DESKIE_URL must be a plain base URL such as https://acme.deskie.io, without credentials, query or fragment');
  }
  return value;
}

/** An e-mail as Deskie's Basic credentials carry it: the user part, which a colon would end (RFC 7617 §2). */
const DESKIE_EMAIL = /^[^\s:]+@[^\s:]+$/;
const DESKIE_API_KEY = /^\S+$/;

/** Pass-through, or service mode with client tokens or PROXY_AUTH=none; half a configuration is refused, never run as something else. */
function accessOf(vars: Env, production: boolean, cwd: string): Access {
  const hasKey = vars.DESKIE_API_KEY !== undefined || vars.DESKIE_API_KEY_FILE !== undefined;
  const tokensGiven = vars.PROXY_TOKENS !== undefined || vars.PROXY_TOKENS_FILE !== undefined;
  if (vars.PROXY_AUTH_NONE_IN_PRODUCTION === 'yes' && vars.PROXY_AUTH !== 'none') {
    throw new ConfigError('PROXY_AUTH_NONE_IN_PRODUCTION=yes is set without PROXY_AUTH=none, which it is the confirmation of');
  }
  if (vars.DESKIE_API_KEY !== undefined && vars.DESKIE_API_KEY_FILE !== undefined) {
    throw new ConfigError('DESKIE_API_KEY and DESKIE_API_KEY_FILE are both set: set one');
  }
  if (vars.DESKIE_EMAIL !== undefined && !hasKey) {
    throw new ConfigError('DESKIE_EMAIL is set without DESKIE_API_KEY (or DESKIE_API_KEY_FILE): service mode needs both, the pass-through mode neither');
  }
  if (vars.DESKIE_EMAIL === undefined && hasKey) {
    throw new ConfigError('DESKIE_API_KEY is set without DESKIE_EMAIL: service mode needs both, the pass-through mode neither');
  }
  if (vars.DESKIE_EMAIL === undefined) {
    if (tokensGiven) {
      throw new ConfigError(
        `${vars.PROXY_TOKENS !== undefined ? 'PROXY_TOKENS' : 'PROXY_TOKENS_FILE'} is set without DESKIE_EMAIL and DESKIE_API_KEY: ` +
          "client tokens are for service mode, where the proxy calls Deskie with its own credential",
      );
    }
    if (vars.PROXY_AUTH === 'none') {
      throw new ConfigError(
        'PROXY_AUTH=none is set without DESKIE_EMAIL and DESKIE_API_KEY: it lets clients in without a token in service mode; ' +
          'in the pass-through mode each client sends its own Deskie credentials',
      );
    }
    return { mode: 'pass-through' };
  }
  const email = vars.DESKIE_EMAIL;
  // Not quoted: a key pasted after the e-mail (`stats@acme.com:KEY`) would be printed.
  if (!DESKIE_EMAIL.test(email)) throw new ConfigError('DESKIE_EMAIL must be the e-mail of a Deskie user alone, without spaces or colons');
  const apiKey = vars.DESKIE_API_KEY ?? readSecretFile(vars.DESKIE_API_KEY_FILE as string, cwd);
  // Never quoted: it is the credential.
  if (apiKey === '') throw new ConfigError('DESKIE_API_KEY_FILE is empty: it must hold the Deskie API key');
  if (!DESKIE_API_KEY.test(apiKey)) throw new ConfigError('the Deskie API key (DESKIE_API_KEY or DESKIE_API_KEY_FILE) must be one word, without spaces');
  const authorization = `Basic ${Buffer.from(`${email}:${apiKey}`).toString('base64')}`;
  if (vars.PROXY_TOKENS !== undefined && vars.PROXY_TOKENS_FILE !== undefined) {
    throw new ConfigError('PROXY_TOKENS and PROXY_TOKENS_FILE are both set: set one (the file can be reloaded with SIGHUP)');
  }
  if (vars.PROXY_AUTH === 'none') {
    if (tokensGiven) throw new ConfigError('PROXY_AUTH=none and client tokens are both set: with tokens, clients must show one; leave out one of them');
    if (production && vars.PROXY_AUTH_NONE_IN_PRODUCTION !== 'yes') {
      throw new ConfigError(
        'PROXY_AUTH=none lets anyone who reaches this server read the statistics, and NODE_ENV=production: ' +
          'set PROXY_TOKENS or PROXY_TOKENS_FILE, or PROXY_AUTH_NONE_IN_PRODUCTION=yes if only trusted clients can reach it',
      );
    }
    return { mode: 'service', authorization, clients: 'none' };
  }
  if (!tokensGiven) {
    throw new ConfigError(
      'service mode (DESKIE_EMAIL and DESKIE_API_KEY) needs client tokens: set PROXY_TOKENS (name:token,name:token) ' +
        'or PROXY_TOKENS_FILE (one "name token" a line), or PROXY_AUTH=none on a trusted network',
    );
  }
  try {
    if (vars.PROXY_TOKENS !== undefined) return { mode: 'service', authorization, clients: { tokens: parseTokenList(vars.PROXY_TOKENS), file: undefined } };
    const file = absolute(vars.PROXY_TOKENS_FILE as string, cwd);
    return { mode: 'service', authorization, clients: { tokens: readTokenFile(file), file } };
  } catch (error) {
    if (error instanceof TokenListError) throw new ConfigError(error.message);
    throw error;
  }
}

const absolute = (path: string, cwd: string): string => (isAbsolute(path) ? path : resolve(cwd, path));

/** A secret from a file (a container secret), without the byte order mark and line ends an editor adds. */
function readSecretFile(path: string, cwd: string): string {
  const file = absolute(path, cwd);
  try {
    return readFileSync(file, 'utf8').replace(/^\uFEFF/, '').trim();
  } catch (error) {
    throw new ConfigError(`DESKIE_API_KEY_FILE ${file} cannot be read (${(error as NodeJS.ErrnoException).code ?? (error as Error).message})`);
  }
}

/** Names Fastify (@fastify/proxy-addr) takes for well-known ranges. */
const NAMED_RANGES = ['loopback', 'linklocal', 'uniquelocal'];

/** TRUST_PROXY as Fastify's `trustProxy`: true, false, or addresses and CIDR ranges. A hop count, which Fastify ignores, is refused. */
function trustedProxies(value: string): boolean | readonly string[] {
  if (value === 'true' || value === 'false') return value === 'true';
  const accepted = 'true, or addresses and CIDR ranges of the proxies in front, comma-separated (such as 10.0.0.0/8,127.0.0.1, or loopback, linklocal, uniquelocal)';
  if (/^\d+$/.test(value)) {
    throw new ConfigError(`TRUST_PROXY takes ${accepted}; not a hop count, which Fastify ignores because it cannot tell a proxy from a client; got ${JSON.stringify(value)}`);
  }
  const entries = value.split(',').map((entry) => entry.trim());
  for (const entry of entries) {
    if (NAMED_RANGES.includes(entry)) continue;
    const [address = '', prefix, ...rest] = entry.split('/');
    const family = isIP(address);
    const bits = family === 4 ? 32 : 128;
    const prefixOk = prefix === undefined || (/^\d{1,3}$/.test(prefix) && Number(prefix) >= 1 && Number(prefix) <= bits);
    if (family === 0 || !prefixOk || rest.length > 0) {
      throw new ConfigError(`TRUST_PROXY takes ${accepted}; ${JSON.stringify(entry)} is neither an address nor a range`);
    }
  }
  return Object.freeze(entries);
}

function readConfigFile(vars: Env, cwd: string): ConfigFile {
  const path = absolute(vars.CONFIG_FILE, cwd);
  if (!existsSync(path)) {
    if (vars.CONFIG_FILE === DEFAULT_CONFIG_FILE) return {};
    throw new ConfigError(`CONFIG_FILE names ${path}, which does not exist`);
  }
  let json: unknown;
  try {
    json = JSON.parse(readFileSync(path, 'utf8'));
  } catch (error) {
    throw new ConfigError(`CONFIG_FILE ${path} is not valid JSON: ${(error as Error).message}`);
  }
  return parse(FileSchema, json, (at) => `${path}: ${at}`);
}

/** Deskie's table, then the overrides for every endpoint, then each endpoint's own. */
function lifetimesWith(overrides: NonNullable<ConfigFile['ttlSeconds']>): Lifetimes {
  const lifetimes = {} as Record<EndpointName, Readonly<Record<FreshnessClass, DurationLike>>>;
  for (const [name, table] of Object.entries(DEFAULT_LIFETIMES) as Array<[EndpointName, Record<FreshnessClass, DurationLike>]>) {
    const own = (overrides as Record<string, unknown>)[`stats_${name}`] as Partial<Record<FreshnessClass, number>> | undefined;
    const merged: Record<FreshnessClass, DurationLike> = { ...table };
    for (const source of [overrides as Partial<Record<string, unknown>>, own ?? {}]) {
      for (const name of FRESHNESS_CLASSES) {
        const seconds = source[name];
        if (typeof seconds === 'number') merged[name] = { seconds };
      }
    }
    lifetimes[name] = Object.freeze(merged);
  }
  return Object.freeze(lifetimes);
}
