import t, { type Test } from 'tap';
import { request } from 'undici';
import { MemoryStore } from '../src/cache/memory-store.js';
import type { AnswerLoader, StoreResult } from '../src/cache/store.js';
import { capturedLog } from './helpers/log.js';
import { DEMO, OTHER, type Stack, startStack, WRONG } from './helpers/stack.js';

const TOKEN = 'admin-token-0123456789';
const BEARER = `Bearer ${TOKEN}`;
const LEADERBOARD = '/api/stats_leaderboard.json';
const STAFF = '/api/stats_staff_statuses.json';
const SATISFACTION = '/api/stats_satisfaction.json';
const TODAY = `${LEADERBOARD}?period=today`;
/** Deskie's lifetime for `today`. */
const TODAY_LIFETIME_MS = 300_000;
const CUSTOM_WEEK = `${SATISFACTION}?from_time=2026-11-01&to_time=2026-11-08`;

/** An admin answer's JSON, read field by field: an error, a page of entries, a purge's count or a prewarm's results. */
interface AdminJson {
  readonly status: string;
  readonly error: string;
  readonly total: number;
  readonly offset: number;
  readonly limit: number;
  readonly entries: Array<Record<string, unknown>>;
  readonly removed: number;
  readonly results: Array<{ query: string; outcome: string; status: number; error?: string }>;
}

interface AdminAnswer {
  readonly status: number;
  readonly headers: Record<string, string | string[] | undefined>;
  readonly text: string;
  /** Undefined when the body is not JSON. */
  readonly json: AdminJson;
}

interface AdminRequest {
  readonly authorization?: string | null;
  /** Sent as JSON unless it is a string, which goes as it is. */
  readonly body?: unknown;
  readonly contentType?: string;
}

/** An admin request with the right token unless told otherwise. */
async function admin(stack: Stack, method: 'GET' | 'DELETE' | 'POST' | 'PUT' | 'HEAD', path: string, options: AdminRequest = {}): Promise<AdminAnswer> {
  const { authorization = BEARER, body, contentType } = options;
  const headers: Record<string, string> = {};
  if (authorization !== null) headers['authorization'] = authorization;
  let payload: string | undefined;
  if (body !== undefined) {
    payload = typeof body === 'string' ? body : JSON.stringify(body);
    headers['content-type'] = contentType ?? 'application/json';
  }
  const response = await request(`${stack.proxyUrl}${path}`, { method, headers, ...(payload === undefined ? {} : { body: payload }) });
  const text = await response.body.text();
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch {
    json = undefined;
  }
  return { status: response.statusCode, headers: response.headers, text, json: json as AdminJson };
}

const prewarm = (stack: Stack, queries: unknown, authorization: unknown = DEMO) =>
  admin(stack, 'POST', '/admin/prewarm', { body: { authorization, queries } });

async function adminStack(t: Test, env: Record<string, string> = {}): Promise<Stack> {
  return startStack(t, { env: { ADMIN_TOKEN: TOKEN, ...env } });
}

/** Every entry listed (one page of up to 1000). */
async function listed(stack: Stack, query = ''): Promise<Array<Record<string, unknown>>> {
  const answer = await admin(stack, 'GET', `/admin/entries?limit=1000${query}`);
  return answer.json.entries as Array<Record<string, unknown>>;
}

/** The partition ids of DEMO (the only one asking for staff statuses) and OTHER (asking for today's leaderboard too). */
async function partitions(stack: Stack): Promise<{ demo: string; other: string }> {
  const demo = (await listed(stack, '&endpoint=stats_staff_statuses'))[0]?.partition as string;
  const today = await listed(stack, '&endpoint=stats_leaderboard&period=today');
  const other = today.map((entry) => entry.partition as string).find((partition) => partition !== demo) as string;
  return { demo, other };
}

t.test('without ADMIN_TOKEN there is no admin API: /admin/entries is the 404 JSON', async (t) => {
  const stack = await startStack(t);
  const answer = await admin(stack, 'GET', '/admin/entries');
  t.equal(answer.status, 404, 'not found');
  t.same(answer.json.status, 'error', 'the JSON error shape');
  t.match(answer.json.error, /no route GET \/admin\/entries/, 'says which route is missing');
  t.equal((await admin(stack, 'POST', '/admin/prewarm', { body: { queries: [] } })).status, 404, 'prewarm is absent too');
});

t.test('a missing, wrong or one-character-off admin token is the same 401 with WWW-Authenticate: Bearer, and nothing is done', async (t) => {
  const stack = await adminStack(t);
  await stack.get(TODAY);
  const oneOff = `Bearer ${TOKEN.slice(0, -1)}${TOKEN.endsWith('9') ? '8' : '9'}`;
  const refusals = [
    ['missing', null],
    ['wrong', 'Bearer not-the-admin-token-at-all'],
    ['one character changed, same length', oneOff],
    ['a prefix of the token', `Bearer ${TOKEN.slice(0, -1)}`],
    ['Basic credentials', DEMO],
    ['the scheme alone', 'Bearer'],
    ['the token without a scheme', TOKEN],
  ] as const;
  const messages = new Set<string>();
  for (const [what, authorization] of refusals) {
    for (const [method, path] of [['GET', '/admin/entries'], ['DELETE', '/admin/entries?all=true'], ['POST', '/admin/prewarm']] as const) {
      const answer = await admin(stack, method, path, { authorization, ...(method === 'POST' ? { body: { authorization: DEMO, queries: [TODAY] } } : {}) });
      t.equal(answer.status, 401, `${what}: ${method} ${path} is a 401`);
      t.match(answer.headers['www-authenticate'], /^Bearer\b/, `${what}: WWW-Authenticate names the Bearer scheme`);
      t.equal(answer.headers['cache-control'], 'no-store', `${what}: never cached`);
      t.equal(answer.json.status, 'error', `${what}: the JSON error shape`);
      messages.add(answer.json.error);
    }
  }
  t.equal(messages.size, 1, 'one message whatever was wrong: no hint which part');
  t.notMatch([...messages][0], new RegExp(TOKEN.slice(0, 6)), 'the message never quotes the token');
  t.equal(stack.simulator.calls, 1, 'no prewarm reached Deskie');
  t.equal((await listed(stack)).length, 1, 'no purge happened');
  const right = await admin(stack, 'GET', '/admin/entries', { authorization: `bearer  ${TOKEN}` });
  t.equal(right.status, 200, 'the scheme is case-insensitive (RFC 9110 §11.1)');
});

t.test('unknown admin paths and methods fall to the 404 JSON', async (t) => {
  const stack = await adminStack(t);
  for (const [method, path] of [['GET', '/admin/'], ['GET', '/admin/nothing'], ['PUT', '/admin/entries'], ['GET', '/admin/prewarm'], ['GET', '/admin/entries/']] as const) {
    const answer = await admin(stack, method, path);
    t.equal(answer.status, 404, `${method} ${path} is a 404`);
    t.equal(answer.json.status, 'error', `${method} ${path}: the JSON error shape`);
  }
  t.equal((await admin(stack, 'HEAD', '/admin/entries')).status, 404, 'HEAD is not declared on the list');
});

t.test('GET /admin/entries lists endpoint, period, class, formats, partition, bytes, age, ttl and hits', async (t) => {
  const stack = await adminStack(t);
  t.equal((await stack.get(TODAY)).status, 200, 'the first request is answered');
  await stack.get(TODAY);
  await stack.get(TODAY);
  await stack.get(`${TODAY}&format=csv&bom=1`);
  await stack.get(TODAY, { headers: { 'accept-encoding': 'gzip' } });
  await stack.get(`${STAFF}?period=this_month&format=rows`);
  await stack.get(CUSTOM_WEEK);
  stack.clock.advance(TODAY_LIFETIME_MS + 100_000);

  const answer = await admin(stack, 'GET', '/admin/entries');
  t.equal(answer.status, 200, 'the list is answered');
  t.equal(answer.headers['cache-control'], 'no-store', 'never cached');
  t.match(answer.headers['content-type'], /^application\/json/, 'JSON');
  t.ok(answer.headers['x-request-id'], 'a request id like every answer');
  t.same({ total: answer.json.total, offset: answer.json.offset, limit: answer.json.limit }, { total: 3, offset: 0, limit: 100 }, 'three entries, the first page of 100');
  const byEndpoint = Object.fromEntries((answer.json.entries as Array<Record<string, unknown>>).map((entry) => [entry.endpoint, entry]));
  t.match(
    byEndpoint['stats_leaderboard'],
    {
      period: 'today',
      freshness: 'today',
      formats: ['normalized', 'csv+bom', 'normalized (gzip)'],
      partition: /^[A-Za-z0-9_-]{12}$/,
      ageSeconds: 400,
      ttlSeconds: -100,
      hits: 4,
      fetchedAt: '2026-11-28T12:00:00.000Z',
    },
    'the leaderboard: three formats rendered, stale by 100 s and still kept, four hits after its miss',
  );
  t.ok((byEndpoint['stats_leaderboard']?.bytes as number) > 0, 'its bytes are counted');
  t.match(byEndpoint['stats_staff_statuses'], { period: 'this_month', freshness: 'this_month', formats: ['rows'], ageSeconds: 400, hits: 0 }, 'staff statuses in rows');
  t.ok((byEndpoint['stats_staff_statuses']?.ttlSeconds as number) > 0, 'this_month is still fresh');
  t.match(
    byEndpoint['stats_satisfaction'],
    { period: '2026-11-01T00:00:00.000Z/2026-11-08T00:00:00.000Z', freshness: 'custom_longer', formats: ['normalized'] },
    'a custom range is listed as its window',
  );
  const partitionIds = new Set((answer.json.entries as Array<{ partition: string }>).map((entry) => entry.partition));
  t.equal(partitionIds.size, 1, 'one credential, one partition id');
  t.notMatch(answer.text, /demo@example\.com|Basic |period=|from_time/, 'no credential, no key, no query string');
  t.equal(stack.simulator.calls, 3, 'listing costs no call');
});

t.test('entries are filtered by endpoint, period and partition, and paginated with limit and offset over a stable order', async (t) => {
  const stack = await adminStack(t);
  await stack.get(TODAY);
  await stack.get(`${LEADERBOARD}?period=this_month`);
  await stack.get(`${STAFF}?period=today`);
  await stack.get(CUSTOM_WEEK);
  await stack.get(TODAY, { authorization: OTHER });
  const { demo, other } = await partitions(stack);

  const count = async (query: string) => (await admin(stack, 'GET', `/admin/entries?${query}`)).json.total as number;
  t.equal(await count(''), 5, 'five entries in all');
  t.equal(await count('endpoint=stats_leaderboard'), 3, 'three leaderboards');
  t.equal(await count('endpoint=stats_satisfaction'), 1, 'one satisfaction');
  t.equal(await count('period=today'), 3, 'three for today');
  t.equal(await count('endpoint=stats_leaderboard&period=today'), 2, 'filters combine');
  t.equal(await count(`partition=${other}`), 1, "one of the other credential's");
  t.equal(await count(`partition=${demo}&period=today`), 2, "two of demo's for today");
  t.equal(await count('period=custom_longer'), 1, 'a custom range class matches its ranges');
  t.equal(await count('period=2026-11-01T00:00:00.000Z/2026-11-08T00:00:00.000Z'), 1, 'a window as listed');
  t.equal(await count('period=2026-11-01T01:00%2B01:00/2026-11-08T00:00:00Z'), 1, 'a window matches by its instants, however written');
  t.equal(await count('period=2026-11-01T00:00:00Z/2026-11-09T00:00:00Z'), 0, 'another window matches nothing');
  t.equal(await count('period=last_year'), 0, 'a period with no entry matches nothing');

  const all = await listed(stack);
  const pages: Array<Record<string, unknown>> = [];
  for (let offset = 0; offset < 5; offset += 2) {
    const page = await admin(stack, 'GET', `/admin/entries?limit=2&offset=${offset}`);
    t.equal(page.json.total, 5, `offset ${offset}: total counts every match`);
    t.equal(page.json.entries.length, offset === 4 ? 1 : 2, `offset ${offset}: a page of at most 2`);
    pages.push(...page.json.entries);
  }
  await stack.get(CUSTOM_WEEK); // a hit makes it the most recently used; the order does not move
  t.same(pages, all, 'the pages put together are the whole list, in the same order');
  t.same(
    (await listed(stack)).map((entry) => `${entry.endpoint} ${entry.period}`),
    all.map((entry) => `${entry.endpoint} ${entry.period}`),
    'a hit does not reorder the list',
  );
  t.same((await admin(stack, 'GET', '/admin/entries?offset=5')).json.entries, [], 'past the end: an empty page');
});

t.test('bad list parameters are 400s naming the parameter and what is accepted', async (t) => {
  const stack = await adminStack(t);
  const cases: Array<[string, RegExp]> = [
    ['foo=1', /unknown parameter foo; GET \/admin\/entries accepts endpoint, period, partition, limit, offset/],
    ['all=true', /unknown parameter all/],
    ['endpoint=leaderboard', /endpoint must be one of stats_leaderboard, stats_staff_statuses, stats_satisfaction; got "leaderboard"/],
    ['endpoint=', /endpoint must be one of/],
    ['period=tomorrow', /period must be a period \(last_24_hours, .*today.*\), custom_up_to_1_day or custom_longer .*got "tomorrow"/],
    ['period=2026-13-01T00:00Z/2026-11-08T00:00Z', /period must be .*a custom window/],
    ['period=2026-11-01/2026-11-08', /period must be .*ISO 8601 instants with an offset/],
    ['partition=abc', /partition must be the 12-character id/],
    ['limit=0', /limit must be an integer from 1 to 1000; got "0"/],
    ['limit=1001', /limit must be an integer from 1 to 1000; got "1001"/],
    ['limit=ten', /limit must be an integer from 1 to 1000/],
    ['offset=-1', /offset must be a whole number/],
    ['limit=5&limit=6', /parameter limit is given 2 times; give it once/],
    ['endpoint=%zz', /malformed percent-encoding/],
  ];
  for (const [query, message] of cases) {
    const answer = await admin(stack, 'GET', `/admin/entries?${query}`);
    t.equal(answer.status, 400, `${query} is a 400`);
    t.equal(answer.headers['cache-control'], 'no-store', `${query}: never cached`);
    t.match(answer.json.error, message, `${query}: says what is wrong and what is accepted`);
  }
  t.equal((await admin(stack, 'GET', '/admin/entries?limit=1000&offset=0')).status, 200, 'the bounds themselves are accepted');
});

t.test('DELETE by endpoint purges only that endpoint, and the next request for it goes upstream', async (t) => {
  const stack = await adminStack(t);
  await stack.get(TODAY);
  await stack.get(`${STAFF}?period=today`);
  t.equal(stack.simulator.calls, 2, 'two misses');

  const purged = await admin(stack, 'DELETE', '/admin/entries?endpoint=stats_staff_statuses');
  t.equal(purged.status, 200, 'the purge is answered');
  t.equal(purged.headers['cache-control'], 'no-store', 'never cached');
  t.same(purged.json, { removed: 1 }, 'one entry removed');

  const again = await stack.get(`${STAFF}?period=today`);
  t.match(again.headers['cache-status'], /fwd=miss; stored/, 'the purged entry is a miss');
  t.equal(stack.simulator.calls, 3, 'and went upstream');
  t.match((await stack.get(TODAY)).headers['cache-status'], /; hit;/, 'the leaderboard was kept');
  t.equal(stack.simulator.calls, 3, 'its hit cost nothing');
});

t.test('DELETE by period, by partition and with all=true removes exactly what matches', async (t) => {
  const stack = await adminStack(t);
  await stack.get(TODAY);
  await stack.get(`${LEADERBOARD}?period=this_month`);
  await stack.get(`${STAFF}?period=today`);
  await stack.get(TODAY, { authorization: OTHER });
  await stack.get(`${SATISFACTION}?period=yesterday`, { authorization: OTHER });
  await stack.get(CUSTOM_WEEK);
  const { other } = await partitions(stack);
  const calls = stack.simulator.calls;

  t.same((await admin(stack, 'DELETE', '/admin/entries?period=today&endpoint=stats_leaderboard')).json, { removed: 2 }, "today's leaderboards, both credentials");
  t.same((await admin(stack, 'DELETE', `/admin/entries?partition=${other}`)).json, { removed: 1 }, "the other credential's last entry");
  t.same((await admin(stack, 'DELETE', '/admin/entries?period=2026-11-01T00:00:00Z/2026-11-08T00:00:00Z')).json, { removed: 1 }, 'the custom window');
  t.same(
    (await listed(stack)).map((entry) => `${entry.endpoint} ${entry.period}`).sort(),
    ['stats_leaderboard this_month', 'stats_staff_statuses today'],
    'the rest is kept',
  );
  t.match((await stack.get(`${LEADERBOARD}?period=this_month`)).headers['cache-status'], /; hit;/, 'a kept entry is still a hit');
  t.match((await stack.get(`${SATISFACTION}?period=yesterday`, { authorization: OTHER })).headers['cache-status'], /fwd=miss/, 'a purged one is a miss');
  t.equal(stack.simulator.calls, calls + 1, 'only the purged one went upstream');

  t.same((await admin(stack, 'DELETE', '/admin/entries?all=true')).json, { removed: 3 }, 'all=true removes everything');
  t.equal((await admin(stack, 'GET', '/admin/entries')).json.total, 0, 'nothing is left');
  t.match((await stack.get(`${LEADERBOARD}?period=this_month`)).headers['cache-status'], /fwd=miss/, 'and the next request goes upstream');
  t.equal(stack.simulator.calls, calls + 2, 'one more call');
});

t.test('DELETE with no filter is a 400 that removes nothing; a filter that matches nothing removes 0', async (t) => {
  const stack = await adminStack(t);
  await stack.get(TODAY);
  const refused: Array<[string, RegExp]> = [
    ['', /give a filter \(endpoint=, period=, partition=\) or all=true: an empty filter never purges everything/],
    ['?all=false', /all must be true; got "false"/],
    ['?all=', /all must be true; got ""/],
    ['?all=true&endpoint=stats_leaderboard', /all=true purges every entry: give it alone/],
    ['?limit=10', /unknown parameter limit; DELETE \/admin\/entries accepts endpoint, period, partition, all/],
    ['?endpoint=stats_nothing', /endpoint must be one of/],
    ['?period=', /period must be/],
  ];
  for (const [query, message] of refused) {
    const answer = await admin(stack, 'DELETE', `/admin/entries${query}`);
    t.equal(answer.status, 400, `DELETE ${query || 'without a filter'} is a 400`);
    t.match(answer.json.error, message, `DELETE ${query || 'without a filter'}: says what to give`);
  }
  t.equal((await admin(stack, 'GET', '/admin/entries')).json.total, 1, 'nothing was removed');

  const none = await admin(stack, 'DELETE', '/admin/entries?period=last_year');
  t.equal(none.status, 200, 'a filter that matches nothing is fine');
  t.same(none.json, { removed: 0 }, 'and removes nothing');
  t.same((await admin(stack, 'DELETE', '/admin/entries?partition=AAAAAAAAAAAA')).json, { removed: 0 }, 'an unknown partition removes nothing');
  t.match((await stack.get(TODAY)).headers['cache-status'], /; hit;/, 'the entry is still served');
  t.equal(stack.simulator.calls, 1, 'one call in all');
});

t.test('prewarm fetches each query once; the clients asking next are hits with no extra call', async (t) => {
  const stack = await adminStack(t);
  const queries = [TODAY, `${STAFF}?period=today&format=rows`, `${SATISFACTION}?period=today&format=csv&bom=1`, `${LEADERBOARD}?period=this_month&channel=email`, CUSTOM_WEEK];
  const answer = await prewarm(stack, queries);
  t.equal(answer.status, 200, 'the prewarm is answered');
  t.equal(answer.headers['cache-control'], 'no-store', 'never cached');
  t.same(
    answer.json,
    { results: queries.map((query) => ({ query, outcome: 'miss', status: 200 })) },
    'each query, in order, fetched and answered 200',
  );
  t.equal(stack.simulator.calls, 5, 'one call each');
  t.notMatch(answer.text, new RegExp(DEMO.slice('Basic '.length)), 'the credential is never echoed');

  const formats = Object.fromEntries((await listed(stack)).map((entry) => [`${entry.endpoint} ${entry.period}`, entry.formats]));
  t.same(formats['stats_satisfaction today'], ['csv+bom'], "the query's own format is rendered, not the default");
  t.same(formats['stats_staff_statuses today'], ['rows'], 'rows for the rows query');
  t.same(formats['stats_leaderboard today'], ['normalized'], 'normalized JSON without format=');

  for (const query of queries) {
    const client = await stack.get(query);
    t.equal(client.status, 200, `${query}: 200`);
    t.match(client.headers['cache-status'], /; hit;/, `${query}: a hit`);
  }
  t.equal(stack.simulator.calls, 5, 'the clients cost no call');

  const again = await prewarm(stack, queries);
  t.same(again.json.results.map((result: { outcome: string }) => result.outcome), queries.map(() => 'hit'), 'prewarming fresh entries: all hits');
  t.equal(stack.simulator.calls, 5, 'and costs nothing');
});

t.test('prewarm renders its format on an entry a client already fetched in another', async (t) => {
  const stack = await adminStack(t);
  await stack.get(TODAY);
  const answer = await prewarm(stack, [`${TODAY}&format=csv`, TODAY, TODAY]);
  t.same(answer.json.results.map((result: { outcome: string }) => result.outcome), ['hit', 'hit', 'hit'], 'the entry is fresh: hits');
  t.same((await listed(stack))[0]?.formats, ['normalized', 'csv'], 'CSV is rendered once, beside the JSON');
  t.equal(stack.simulator.calls, 1, 'no call');
});

t.test('prewarm with 1,001 queries is a 400 and fetches nothing', async (t) => {
  const stack = await adminStack(t);
  const answer = await prewarm(stack, Array.from({ length: 1001 }, () => TODAY));
  t.equal(answer.status, 400, 'too many queries is a 400');
  t.match(answer.json.error, /queries has 1001 items; at most 1000 are accepted in one prewarm \(queries\[1000\] is the first past it\)/, 'names the bound and the first item past it');
  t.equal(stack.simulator.calls, 0, 'no call reached Deskie');
  t.equal((await admin(stack, 'GET', '/admin/entries')).json.total, 0, 'nothing was stored');

  const thousand = await prewarm(stack, Array.from({ length: 1000 }, () => TODAY));
  t.equal(thousand.status, 200, '1,000 queries are accepted');
  t.equal(stack.simulator.calls, 1, 'the same query a thousand times is one call');
  t.equal(thousand.json.results.filter((result: { outcome: string }) => result.outcome === 'miss').length, 1, 'one miss, the rest hits or collapsed');
});

t.test('prewarm with an invalid query is a 400 naming the first bad one, and nothing is fetched', async (t) => {
  const stack = await adminStack(t);
  const cases: Array<[string, unknown[], RegExp]> = [
    ['a bad period, third of four', [TODAY, `${STAFF}?period=today`, `${LEADERBOARD}?period=someday`, '/api/nope.json?period=today'], /^queries\[2\]: period must be one of .*; got "someday"; nothing was fetched$/],
    ['a path that is no route', [TODAY, '/api/nope.json?period=today'], /^queries\[1\]: the path must be one of \/api\/stats_leaderboard\.json, \/api\/stats_staff_statuses\.json, \/api\/stats_satisfaction\.json/],
    ['a whole URL', ['http://localhost:3000/api/stats_leaderboard.json?period=today'], /^queries\[0\]: the path must be one of/],
    ['a number', [TODAY, 42], /^queries\[1\]: each query must be a string/],
    ['a cache-busting parameter', [`${TODAY}&_=123`], /^queries\[0\]: unknown parameter _/],
    ['an unknown format', [`${TODAY}&format=xml`], /^queries\[0\]: format must be one of normalized, raw, rows, csv; got "xml"/],
    ['a bad bom', [`${TODAY}&format=csv&bom=2`], /^queries\[0\]: bom must be 1 or 0; got "2"/],
    ['a malformed escape', [`${TODAY}&channel=%zz`], /^queries\[0\]: the query string has a malformed percent-encoding/],
    ['no query string', [LEADERBOARD], /^queries\[0\]: give period/],
    ['a query string over 4096 bytes', [`${TODAY}&x=${'y'.repeat(5000)}`], /^queries\[0\]: the query string is \d+ bytes long; at most 4096/],
  ];
  for (const [what, queries, message] of cases) {
    const answer = await prewarm(stack, queries);
    t.equal(answer.status, 400, `${what}: a 400`);
    t.match(answer.json.error, message, `${what}: names the item and why`);
  }
  t.equal(stack.simulator.calls, 0, 'no call reached Deskie');
  t.equal((await admin(stack, 'GET', '/admin/entries')).json.total, 0, 'nothing was stored');
});

t.test('a prewarm body that is not what it takes is a clear 400, 413 or 415, and nothing is fetched', async (t) => {
  const stack = await adminStack(t);
  const secret = DEMO.slice('Basic '.length);
  const refused: Array<[string, AdminRequest, number, RegExp]> = [
    ['broken JSON', { body: `{"authorization": "${DEMO}", "queries": [` }, 400, /^the body is not valid JSON; send \{"authorization"/],
    ['JSON with a syntax error after the credential', { body: `{"authorization": "${DEMO}" "queries": []}` }, 400, /not valid JSON/],
    ['an empty JSON body', { body: '' }, 400, /not valid JSON/],
    ['a __proto__ key', { body: `{"__proto__": {"x": 1}, "authorization": "${DEMO}", "queries": ["${TODAY}"]}` }, 400, /not valid JSON/],
    ['text/plain', { body: 'queries', contentType: 'text/plain' }, 415, /^POST \/admin\/prewarm takes a JSON body \(Content-Type: application\/json\)/],
    ['form data', { body: 'queries=x', contentType: 'application/x-www-form-urlencoded' }, 415, /takes a JSON body/],
    ['no body at all', {}, 400, /^POST \/admin\/prewarm takes a JSON object/],
    ['a JSON array', { body: [TODAY] }, 400, /takes a JSON object/],
    ['JSON null', { body: 'null' }, 400, /takes a JSON object/],
    ['an unknown field', { body: { authorization: DEMO, queries: [TODAY], concurrency: 10 } }, 400, /^unknown field "concurrency"; the body takes authorization and queries/],
    ['no authorization', { body: { queries: [TODAY] } }, 400, /^authorization must be HTTP Basic credentials/],
    ['a bearer authorization', { body: { authorization: 'Bearer abc', queries: [TODAY] } }, 400, /^authorization must be HTTP Basic/],
    ['Basic and no base64', { body: { authorization: 'Basic !!!', queries: [TODAY] } }, 400, /^authorization must be HTTP Basic/],
    ['Basic without a colon', { body: { authorization: `Basic ${Buffer.from('demo').toString('base64')}`, queries: [TODAY] } }, 400, /^authorization must be HTTP Basic/],
    ['a number as authorization', { body: { authorization: 42, queries: [TODAY] } }, 400, /^authorization must be HTTP Basic/],
    [
      'an authorization longer than a request may carry',
      { body: { authorization: `Basic ${Buffer.from(`demo@example.com:${'k'.repeat(4096)}`).toString('base64')}`, queries: [TODAY] } },
      400,
      /^authorization must be HTTP Basic credentials .*at most 4096 characters/,
    ],
    ['queries not an array', { body: { authorization: DEMO, queries: TODAY } }, 400, /^queries must be an array/],
    ['no queries', { body: { authorization: DEMO } }, 400, /^queries must be an array/],
    ['empty queries', { body: { authorization: DEMO, queries: [] } }, 400, /^queries is empty; give 1 to 1000/],
    ['a body over 1 MiB', { body: { authorization: DEMO, queries: [`${TODAY}&x=${'y'.repeat(1024 * 1024)}`] } }, 413, /^the body is larger than 1048576 bytes/],
  ];
  for (const [what, options, status, message] of refused) {
    const answer = await admin(stack, 'POST', '/admin/prewarm', options);
    t.equal(answer.status, status, `${what}: ${status}`);
    t.equal(answer.headers['cache-control'], 'no-store', `${what}: never cached`);
    t.match(answer.json?.error, message, `${what}: says what it takes`);
    t.notOk(answer.text.includes(secret), `${what}: the credential is not echoed`);
  }
  t.equal(stack.simulator.calls, 0, 'no call reached Deskie');
  const charset = await admin(stack, 'POST', '/admin/prewarm', { body: JSON.stringify({ authorization: DEMO, queries: [TODAY] }), contentType: 'application/json; charset=utf-8' });
  t.equal(charset.status, 200, 'application/json with a charset is JSON');
});

t.test("one query's failure does not fail the others: it is reported with its status", async (t) => {
  const stack = await adminStack(t, { PAGE_ALL_MAX_PAGES: '2' });
  const queries = [TODAY, `${STAFF}?period=this_month&page=all`, `${SATISFACTION}?period=today`];
  const answer = await prewarm(stack, queries);
  t.equal(answer.status, 200, 'the prewarm itself succeeds');
  t.match(answer.json.results, [
    { query: TODAY, outcome: 'miss', status: 200 },
    { query: queries[1], outcome: 'error', status: 422, error: /page=all needs more than 2 pages/ },
    { query: queries[2], outcome: 'miss', status: 200 },
  ], 'the page=all too large for the page limit fails alone');
  t.equal((await admin(stack, 'GET', '/admin/entries')).json.total, 2, 'the two others are stored');
});

t.test('a credential Deskie refuses is reported per query as its 401, never echoed', async (t) => {
  const stack = await adminStack(t);
  const answer = await prewarm(stack, [TODAY, `${STAFF}?period=today`], WRONG);
  t.equal(answer.status, 200, 'the prewarm itself succeeds');
  t.same(
    answer.json.results.map((result: Record<string, unknown>) => [result.outcome, result.status, result.error]),
    [['error', 401, 'Deskie answered 401'], ['error', 401, 'Deskie answered 401']],
    "each query carries Deskie's refusal",
  );
  t.notOk(answer.text.includes(WRONG.slice('Basic '.length)), 'the credential is not echoed');
  t.equal((await admin(stack, 'GET', '/admin/entries')).json.total, 0, 'nothing stored');
});

t.test('an unexpected failure of one query is a 500 for it alone, logged without the credential', async (t) => {
  const { logger, lines } = capturedLog('info');
  /** A store whose loads of satisfaction entries break the way no Deskie answer does. */
  class BrokenSatisfaction extends MemoryStore {
    override async fetch(key: string, load: AnswerLoader): Promise<StoreResult> {
      if (key.startsWith('satisfaction?')) throw new Error('the store broke');
      return super.fetch(key, load);
    }
  }
  const stack = await startStack(t, {
    logger,
    env: { ADMIN_TOKEN: TOKEN },
    store: (clock) => new BrokenSatisfaction({ maxBytes: 16 * 1024 * 1024, clock }),
  });
  const answer = await prewarm(stack, [`${SATISFACTION}?period=today`, TODAY]);
  t.same(
    answer.json.results,
    [
      { query: `${SATISFACTION}?period=today`, outcome: 'error', status: 500, error: 'internal error' },
      { query: TODAY, outcome: 'miss', status: 200 },
    ],
    'the broken one is a 500 with no detail; the other is fetched',
  );
  const failure = lines.find((line) => line.msg === 'admin: a prewarm query failed unexpectedly');
  t.match(failure, { level: 50, err: { message: 'the store broke' } }, 'the failure is logged as an error');
  t.notOk(JSON.stringify(lines).includes(DEMO.slice('Basic '.length)), 'no line holds the credential');
});

t.test('every admin action is logged at info with what it did, never a token or credential', async (t) => {
  const { logger, lines } = capturedLog('info');
  const stack = await startStack(t, { logger, env: { ADMIN_TOKEN: TOKEN } });
  await prewarm(stack, [TODAY, TODAY, `${STAFF}?period=today`]);
  await admin(stack, 'GET', '/admin/entries?endpoint=stats_leaderboard&limit=10');
  await admin(stack, 'DELETE', '/admin/entries?period=today&endpoint=stats_staff_statuses');
  await admin(stack, 'DELETE', '/admin/entries?all=true');
  await admin(stack, 'GET', '/admin/entries', { authorization: 'Bearer wrong-token-0123456789' });

  const actions = lines.filter((line) => 'admin' in line);
  t.equal(actions.length, 4, 'one line per admin action');
  t.ok(actions.every((line) => line.level === 30), 'all at info');
  t.match(actions[0], { admin: 'prewarm', queries: 3, msg: 'admin: prewarm done' }, 'prewarm: how many queries');
  const outcomes = actions[0]?.outcomes as Record<string, number>;
  t.equal(Object.values(outcomes).reduce((sum, n) => sum + n, 0), 3, 'prewarm: an outcome for each query');
  t.equal(outcomes['miss'], 2, 'prewarm: two misses (the repeated query was a hit or collapsed onto the first)');
  t.match(actions[1], { admin: 'list', filter: { endpoint: 'stats_leaderboard' }, total: 1, listed: 1, msg: 'admin: entries listed' }, 'list: the filter and counts');
  t.match(actions[2], { admin: 'purge', filter: { period: 'today', endpoint: 'stats_staff_statuses' }, removed: 1 }, 'purge: the filter and the count removed');
  t.match(actions[3], { admin: 'purge', filter: { all: 'true' }, removed: 1 }, 'purge all: the count removed');
  t.ok(lines.some((line) => line.route === '/admin/entries' && line.status === 401), 'the refused request has its access line');
  const text = JSON.stringify(lines);
  for (const secret of [TOKEN, 'wrong-token-0123456789', DEMO.slice('Basic '.length), 'demo@example.com:demo']) {
    t.notOk(text.includes(secret), `${secret.slice(0, 6)}… never logged`);
  }
});
