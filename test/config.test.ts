import t from 'tap';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ConfigError, DEFAULT_CACHE_MAX_BYTES, loadConfig } from '../src/config/config.js';

const fileWith = (content: string): string => {
  const path = join(mkdtempSync(join(tmpdir(), 'proxy-config-')), 'proxy.json');
  writeFileSync(path, content);
  return path;
};

t.test('defaults apply when nothing is set', async (t) => {
  const config = loadConfig({});
  t.match(config, {
    port: 3000,
    host: '0.0.0.0',
    deskieUrl: null,
    timezone: 'UTC',
    weekStart: 1,
    cacheMaxBytes: DEFAULT_CACHE_MAX_BYTES,
    upstreamTimeoutMs: 30_000,
    logLevel: 'info',
    production: false,
    staleIfErrorSeconds: 86_400,
    refreshMarginMs: 1_000,
    staleWhileRevalidateSeconds: 30,
    retiredSettings: [],
    upstreamRatePerMin: undefined,
    upstreamReserve: 0.2,
    upstreamConcurrency: 4,
    upstreamQueueMs: 10_000,
    upstreamQueueLength: 1_000,
    upstreamNewCredentialShare: 0.1,
    authFailureTtlSeconds: 30,
  });
  t.equal(config.cacheKeySecret.length, 32, 'a random secret per process');
  t.ok(Object.isFrozen(config));
});

t.test('variables are read and converted', async (t) => {
  const config = loadConfig({
    PORT: '8080',
    DESKIE_URL: 'https://acme.deskie.io',
    DESKIE_TIMEZONE: 'Europe/Berlin',
    DESKIE_WEEK_START: 'sunday',
    CACHE_MAX_BYTES: '67108864',
    CACHE_KEY_SECRET: 'a-long-enough-secret',
    LOG_LEVEL: 'debug',
    STALE_IF_ERROR_SECONDS: '0',
    REFRESH_AHEAD: '0.25',
    REFRESH_MARGIN_MS: '2500',
    STALE_WHILE_REVALIDATE_SECONDS: '0',
    UPSTREAM_RATE_PER_MIN: '100',
    UPSTREAM_RESERVE: '0',
    UPSTREAM_CONCURRENCY: '2',
  });
  t.match(config, { port: 8080, deskieUrl: 'https://acme.deskie.io', timezone: 'Europe/Berlin', weekStart: 7, cacheMaxBytes: 67_108_864 });
  t.match(config, { staleIfErrorSeconds: 0, refreshMarginMs: 2_500, staleWhileRevalidateSeconds: 0, upstreamRatePerMin: 100, upstreamReserve: 0, upstreamConcurrency: 2 });
  t.same(config.retiredSettings, ['REFRESH_AHEAD'], 'a retired setting is accepted, and named for the warning at start-up');
  t.equal(config.cacheKeySecret.toString(), 'a-long-enough-secret');
});

t.test('a bad variable is named in the error', async (t) => {
  const cases: Array<[Record<string, string>, RegExp]> = [
    [{ DESKIE_TIMEZONE: 'Mars/Olympus' }, /DESKIE_TIMEZONE must be an IANA time zone name.*Mars\/Olympus/],
    [{ PORT: 'eighty' }, /PORT must be a whole number; got "eighty"/],
    [{ UPSTREAM_TIMEOUT_MS: '1.5' }, /UPSTREAM_TIMEOUT_MS must be a whole number; got "1.5"/],
    [{ PORT: '70000' }, /PORT must be <= 65535/],
    [{ DESKIE_URL: 'https://user:pass@acme.deskie.io' }, /without credentials, query or fragment/],
    [{ DESKIE_URL: 'https://acme.deskie.io/?x=1' }, /without credentials, query or fragment/],
    [{ LOG_LEVEL: 'loud' }, /LOG_LEVEL must be one of fatal, error/],
    [{ DESKIE_WEEK_START: 'funday' }, /DESKIE_WEEK_START must be one of monday/],
    [{ DESKIE_URL: 'acme.deskie.io' }, /DESKIE_URL must be an http\(s\) URL/],
    [{ DESKIE_URL: 'ftp://acme.deskie.io' }, /DESKIE_URL must use http or https/],
    [{ CACHE_MAX_BYTES: '10' }, /CACHE_MAX_BYTES/],
    [{ CACHE_KEY_SECRET: 'short' }, /CACHE_KEY_SECRET/],
    [{ REFRESH_MARGIN_MS: 'soon' }, /REFRESH_MARGIN_MS must be a whole number; got "soon"/],
    [{ STALE_WHILE_REVALIDATE_SECONDS: '1.5' }, /STALE_WHILE_REVALIDATE_SECONDS must be a whole number; got "1.5"/],
    [{ UPSTREAM_RESERVE: '-0.1' }, /UPSTREAM_RESERVE must be a number/],
    [{ UPSTREAM_RATE_PER_MIN: '0' }, /UPSTREAM_RATE_PER_MIN must be >= 1/],
    [{ UPSTREAM_CONCURRENCY: '16' }, /UPSTREAM_CONCURRENCY \(16\) must not exceed UPSTREAM_CONNECTIONS \(8\)/],
  ];
  for (const [env, message] of cases) {
    t.throws(() => loadConfig(env), message, JSON.stringify(env));
  }
});

t.test('production without DESKIE_URL says what to set', async (t) => {
  t.throws(() => loadConfig({ NODE_ENV: 'production' }), /DESKIE_URL is required when NODE_ENV=production/);
  t.equal(loadConfig({ NODE_ENV: 'production', DESKIE_URL: 'https://acme.deskie.io' }).production, true);
});

t.test('the config file overrides TTLs and allows more parameters', async (t) => {
  const path = fileWith(JSON.stringify({ ttlSeconds: { today: 60, custom_longer: 600 }, extraParameters: ['lang'] }));
  const config = loadConfig({ CONFIG_FILE: path });
  for (const endpoint of ['leaderboard', 'staff_statuses', 'satisfaction'] as const) {
    t.same(config.lifetimes[endpoint].today, { seconds: 60 }, endpoint);
    t.same(config.lifetimes[endpoint].custom_longer, { seconds: 600 }, endpoint);
    t.same(config.lifetimes[endpoint].yesterday, { days: 1 }, 'the rest keep Deskie\'s table');
  }
  t.same([...config.extraParameters], ['lang']);
});

t.test('ttlSeconds can be set for one endpoint, over the setting for all', async (t) => {
  const path = fileWith(JSON.stringify({ ttlSeconds: { today: 120, stats_staff_statuses: { today: 60, yesterday: 600 } } }));
  const { lifetimes } = loadConfig({ CONFIG_FILE: path });
  t.same(lifetimes.staff_statuses.today, { seconds: 60 }, "the endpoint's own");
  t.same(lifetimes.staff_statuses.yesterday, { seconds: 600 });
  t.same(lifetimes.leaderboard.today, { seconds: 120 }, 'the setting for all');
  t.same(lifetimes.satisfaction.yesterday, { days: 1 }, "Deskie's table");
  t.throws(() => loadConfig({ CONFIG_FILE: fileWith('{"ttlSeconds":{"stats_cases":{"today":5}}}') }), /ttlSeconds\.stats_cases is not a known setting.*stats_staff_statuses/);
  t.throws(() => loadConfig({ CONFIG_FILE: fileWith('{"ttlSeconds":{"stats_leaderboard":{"someday":5}}}') }), /ttlSeconds\.stats_leaderboard\.someday is not a known setting/);
});

t.test('a bad config file is refused with its path and the problem', async (t) => {
  t.throws(() => loadConfig({ CONFIG_FILE: fileWith('{nope') }), /is not valid JSON/);
  t.throws(() => loadConfig({ CONFIG_FILE: fileWith('{"ttlSeconds":{"someday":5}}') }), /ttlSeconds\.someday is not a known setting/);
  t.throws(() => loadConfig({ CONFIG_FILE: fileWith('{"ttlSeconds":{"today":0}}') }), /ttlSeconds\.today/);
  t.throws(() => loadConfig({ CONFIG_FILE: '/nonexistent/proxy.json' }), /does not exist/);
});

t.test('the committed config file is valid', async (t) => {
  const config = loadConfig({ CONFIG_FILE: 'config/proxy.json' });
  t.same(config.lifetimes.leaderboard.today, { minutes: 5 });
});

t.test('service mode: half a configuration is refused with what is missing', async (t) => {
  const key = { DESKIE_EMAIL: 'service@example.com', DESKIE_API_KEY: 'key-1234' };
  const tokens = { PROXY_TOKENS: 'wall:0123456789abcdef0123' };
  const refusals: Array<[string, Record<string, string>, RegExp]> = [
    ['an e-mail without a key', { DESKIE_EMAIL: 'service@example.com', ...tokens }, /DESKIE_EMAIL is set without DESKIE_API_KEY \(or DESKIE_API_KEY_FILE\)/],
    ['a key without an e-mail', { DESKIE_API_KEY: 'key-1234', ...tokens }, /DESKIE_API_KEY is set without DESKIE_EMAIL/],
    ['tokens without service credentials', tokens, /PROXY_TOKENS is set without DESKIE_EMAIL and DESKIE_API_KEY/],
    ['a token file without service credentials', { PROXY_TOKENS_FILE: '/nowhere' }, /PROXY_TOKENS_FILE is set without DESKIE_EMAIL/],
    ['service credentials without tokens', key, /needs client tokens: set PROXY_TOKENS .* or PROXY_TOKENS_FILE .*, or PROXY_AUTH=none/],
    ['a token shorter than 16 characters', { ...key, PROXY_TOKENS: 'wall:0123456789abcdef0123,tv:short-one' }, /item 2: the token has 9 characters; a token needs at least 16/],
    ['a name given twice', { ...key, PROXY_TOKENS: 'wall:0123456789abcdef0123,wall:0123456789abcdef9999' }, /item 2: the name is given again \(first at PROXY_TOKENS item 1\)/],
    ['one token for two names', { ...key, PROXY_TOKENS: 'wall:0123456789abcdef0123,tv:0123456789abcdef0123' }, /item 2: the same token as PROXY_TOKENS item 1/],
    ['a name that is not one', { ...key, PROXY_TOKENS: 'wall board:0123456789abcdef0123' }, /item 1: the name must be up to 32 letters.*is the order name, then token\?/],
    ['an item without a name', { ...key, PROXY_TOKENS: '0123456789abcdef0123' }, /item 1 must be name:token/],
    ['both token settings', { ...key, ...tokens, PROXY_TOKENS_FILE: '/nowhere' }, /PROXY_TOKENS and PROXY_TOKENS_FILE are both set/],
    ['both key settings', { ...key, DESKIE_API_KEY_FILE: '/nowhere', ...tokens }, /DESKIE_API_KEY and DESKIE_API_KEY_FILE are both set/],
    ['a key file that cannot be read', { DESKIE_EMAIL: 'service@example.com', DESKIE_API_KEY_FILE: '/nowhere/key', ...tokens }, /DESKIE_API_KEY_FILE \/nowhere\/key cannot be read \(ENOENT\)/],
    ['a token file that cannot be read', { ...key, PROXY_TOKENS_FILE: '/nowhere/tokens' }, /PROXY_TOKENS_FILE \/nowhere\/tokens cannot be read \(ENOENT\)/],
    ['an e-mail with a colon', { ...key, DESKIE_EMAIL: 'a:b@example.com', ...tokens }, /DESKIE_EMAIL must be the e-mail of a Deskie user/],
    ['a key pasted after the e-mail', { ...key, DESKIE_EMAIL: 'service@example.com:key-1234', ...tokens }, /DESKIE_EMAIL must be the e-mail of a Deskie user alone/],
    ['a token and name the wrong way round', { ...key, PROXY_TOKENS: '0123456789abcdef0123:wall' }, /item 1: the name must be .*not look like a token/],
    ['a hex token and a long name the wrong way round', { ...key, PROXY_TOKENS: `${'0123456789abcdef'.repeat(4)}:grafana-wallboard-west` }, /item 1: the name must be .*not look like a token/],
    ['an empty key file', { DESKIE_EMAIL: 'service@example.com', DESKIE_API_KEY_FILE: fileWith('\n\n'), ...tokens }, /DESKIE_API_KEY_FILE is empty/],
    ['the production confirmation without PROXY_AUTH=none', { ...key, ...tokens, PROXY_AUTH_NONE_IN_PRODUCTION: 'yes' }, /PROXY_AUTH_NONE_IN_PRODUCTION=yes is set without PROXY_AUTH=none/],
    ['an empty token file at start-up', { ...key, PROXY_TOKENS_FILE: fileWith('# none yet\n') }, /holds no token/],
    ['a too-short ADMIN_TOKEN', { ADMIN_TOKEN: 'key-1234' }, /ADMIN_TOKEN/],
    ['PROXY_AUTH=none with tokens', { ...key, ...tokens, PROXY_AUTH: 'none' }, /PROXY_AUTH=none and client tokens are both set/],
    ['PROXY_AUTH=none in pass-through mode', { PROXY_AUTH: 'none' }, /PROXY_AUTH=none is set without DESKIE_EMAIL and DESKIE_API_KEY/],
    [
      'PROXY_AUTH=none in production',
      { ...key, PROXY_AUTH: 'none', NODE_ENV: 'production', DESKIE_URL: 'https://acme.deskie.io' },
      /set PROXY_TOKENS or PROXY_TOKENS_FILE, or PROXY_AUTH_NONE_IN_PRODUCTION=yes/,
    ],
  ];
  for (const [what, env, message] of refusals) {
    t.throws(() => loadConfig(env), message, what);
    try {
      loadConfig(env);
    } catch (error) {
      t.type(error, ConfigError, `${what}: a ConfigError`);
      for (const secret of ['key-1234', '0123456789abcdef']) t.notOk((error as Error).message.includes(secret), `${what}: the message quotes no secret`);
    }
  }
});

t.test('service mode: the pieces that make it', async (t) => {
  const keyFile = fileWith('\uFEFFkey-from-a-secret\r\n\n');
  const tokenFile = fileWith('# dashboards\nwall 0123456789abcdef0123\n  tv   fedcba9876543210fedc  \n');
  const config = loadConfig({ DESKIE_EMAIL: 'service@example.com', DESKIE_API_KEY_FILE: keyFile, PROXY_TOKENS_FILE: tokenFile });
  t.same(config.access, {
    mode: 'service',
    authorization: 'Basic ' + Buffer.from('service@example.com:key-from-a-secret').toString('base64'),
    clients: {
      tokens: [
        { name: 'wall', token: '0123456789abcdef0123' },
        { name: 'tv', token: 'fedcba9876543210fedc' },
      ],
      file: tokenFile,
    },
  }, "the key file's byte order mark and line ends are dropped; the token file's comments and blanks are skipped");
  t.same(loadConfig({}).access, { mode: 'pass-through' }, 'pass-through without service credentials');
  t.equal(loadConfig({}).authRecheckSeconds, 600, 'credentials are rechecked every ten minutes by default');
  const open = loadConfig({ DESKIE_EMAIL: 'service@example.com', DESKIE_API_KEY: 'k', PROXY_AUTH: 'none', NODE_ENV: 'production', DESKIE_URL: 'https://acme.deskie.io', PROXY_AUTH_NONE_IN_PRODUCTION: 'yes' });
  t.match(open.access, { mode: 'service', clients: 'none' }, 'PROXY_AUTH=none in production only with the explicit yes');
});

t.test('REDIS_URL: shared by replicas, so it needs the same CACHE_KEY_SECRET on each, and is never quoted', async (t) => {
  t.equal(loadConfig({}).redis, undefined, 'no Redis by default: each process keeps its own store');
  t.same(loadConfig({ REDIS_URL: 'redis://redis:6379', CACHE_KEY_SECRET: 'a-long-enough-secret' }).redis, {
    url: 'redis://redis:6379',
    prefix: 'deskie-stats-proxy:',
    timeoutMs: 250,
    l1MaxBytes: 32 * 1024 * 1024,
  });
  t.match(
    loadConfig({ REDIS_URL: 'rediss://user:pw@redis:6380/2', CACHE_KEY_SECRET: 'a-long-enough-secret', REDIS_PREFIX: 'team-a:', REDIS_TIMEOUT_MS: '100', L1_MAX_BYTES: '8388608' }).redis,
    { url: 'rediss://user:pw@redis:6380/2', prefix: 'team-a:', timeoutMs: 100, l1MaxBytes: 8_388_608 },
  );
  t.throws(() => loadConfig({ REDIS_URL: 'redis://redis:6379' }), { name: 'ConfigError', message: /CACHE_KEY_SECRET is required with REDIS_URL/ });
  const refused = (() => {
    try {
      loadConfig({ REDIS_URL: 'http://user:hunter2-password@redis', CACHE_KEY_SECRET: 'a-long-enough-secret' });
    } catch (error) {
      return error as Error;
    }
    return undefined;
  })();
  t.ok(refused instanceof ConfigError && /REDIS_URL/.test(refused.message), 'a URL that is not redis:// is refused');
  t.notOk(refused?.message.includes('hunter2'), 'without quoting it: it may hold a password');
  t.throws(() => loadConfig({ REDIS_PREFIX: 'has space' }), /REDIS_PREFIX/);
});
