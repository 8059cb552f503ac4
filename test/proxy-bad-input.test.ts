import fc from 'fast-check';
import t from 'tap';
import { request } from 'undici';
import { MAX_QUERY_PARAMETERS, MAX_QUERY_STRING_BYTES, parseQueryString, QUERY_STRING_REFUSAL } from '../src/deskie/query-string.js';
import { DEMO, startStack, type Stack } from './helpers/stack.js';

const LEADERBOARD = '/api/stats_leaderboard.json';
const STAFF = '/api/stats_staff_statuses.json';
const SATISFACTION = '/api/stats_satisfaction.json';

/** Sends a path exactly as written (no client-side re-encoding) and reads the answer. */
async function raw(stack: Stack, path: string, headers: Record<string, string> = {}): Promise<{ status: number; text: string; type: string }> {
  const answer = await request(`${stack.proxyUrl}${path}`, { headers: { authorization: DEMO, ...headers } });
  return { status: answer.statusCode, text: await answer.body.text(), type: String(answer.headers['content-type']) };
}

const errorOf = (text: string): string => (JSON.parse(text) as { status: string; error: string }).error;

t.test('query strings that cannot be decoded are refused, never forwarded encoded twice', async (t) => {
  const stack = await startStack(t);
  for (const query of ['staff_access=%FF%FE', 'staff_access=%zz', 'staff_access=50%', 'staff_access=%E2%82', '%FF=1', 'staff_access=a%2']) {
    const answer = await raw(stack, `${STAFF}?period=today&${query}`);
    t.equal(answer.status, 400, query);
    t.match(errorOf(answer.text), /malformed percent-encoding: each % must start a %XX escape/, query);
  }
  t.equal((await raw(stack, `${STAFF}?period=today&staff_access=%25FF`)).status, 200, 'an encoded percent sign is text like any other');
  t.equal(stack.simulator.requests[0]?.query, 'period=today&staff_access=%25FF', 'and goes upstream encoded once');
  t.equal(stack.simulator.calls, 1);
});

t.test('query strings are bounded in length, parameters and values, and so is the query sent upstream', async (t) => {
  const stack = await startStack(t);
  const long = await raw(stack, `${LEADERBOARD}?period=today&channel=${'a'.repeat(MAX_QUERY_STRING_BYTES)}`);
  t.equal(long.status, 414);
  t.match(errorOf(long.text), /at most 4096 are accepted/);
  const many = Array.from({ length: MAX_QUERY_PARAMETERS }, (_, i) => `user_id[]=${i}`).join('&');
  const tooMany = await raw(stack, `${LEADERBOARD}?period=today&${many}`);
  t.equal(tooMany.status, 400);
  t.match(errorOf(tooMany.text), /has 151 parameters; at most 150 are accepted/);
  const values = Array.from({ length: 101 }, (_, i) => `user_id[]=${i}`).join('&');
  const tooManyValues = await raw(stack, `${LEADERBOARD}?period=today&${values}`);
  t.equal(tooManyValues.status, 400);
  t.match(errorOf(tooManyValues.text), /parameter user_id\[\] is given 101 times; at most 100 values are accepted/);
  const brackets = [1, 2, 3].map((field) => `custom_fields[cf_${field}]=${']'.repeat(500)}`).join('&');
  const tooLongUpstream = await raw(stack, `${LEADERBOARD}?period=today&${brackets}`);
  t.equal(tooLongUpstream.status, 400);
  t.match(errorOf(tooLongUpstream.text), /bytes long upstream; at most 4096 are sent to Deskie/);
  t.equal((await raw(stack, `${LEADERBOARD}?period=today&${Array.from({ length: 100 }, (_, i) => `user_id[]=${i}`).join('&')}`)).status, 200, '100 values are fine');
  t.equal(stack.simulator.calls, 1, 'only the accepted query reached Deskie');
});

t.test('custom times outside the years 2000 to 2099 are refused', async (t) => {
  const stack = await startStack(t);
  for (const [from, to] of [['0000-01-01', '0000-01-02'], ['1970-01-01', '1970-01-02'], ['5138-01-01', '5138-01-02'], ['0', '86400'], ['1999-12-31 23:00:00', '2000-01-01 01:00:00']]) {
    const answer = await raw(stack, `${LEADERBOARD}?from_time=${encodeURIComponent(from as string)}&to_time=${encodeURIComponent(to as string)}`);
    t.equal(answer.status, 400, `${from} .. ${to}`);
    t.match(errorOf(answer.text), /must fall in the years 2000 to 2099/);
  }
  t.equal(stack.simulator.calls, 0);
});

t.test('the parser leaves a refusal rather than throwing inside the router', async (t) => {
  t.match(parseQueryString('a=%zz')[QUERY_STRING_REFUSAL], { statusCode: 400 });
  t.match(parseQueryString('a='.padEnd(5000, 'x'))[QUERY_STRING_REFUSAL], { statusCode: 414 });
  t.same(parseQueryString('a=1&a=2&b=%20c'), { a: ['1', '2'], b: ' c' });
});

// The alphabet of generated query strings: names the routes know and some
// they do not, values good and bad, and the characters that break parsers.
const NAMES = ['period', 'from_time', 'to_time', 'user_id', 'user_id[]', 'staff_id', 'staff_id[]', 'channel', 'status', 'page', 'limit', 'sort',
  'format', 'staff_access', 'custom_fields[cf_1]', 'custom_fields[cf_x]', 'rating', 'group_id', '_', 'x', '', '%', '%zz', '__proto__', 'constructor'];
const VALUES = ['today', 'last_month', 'bogus', '2026-11-01', '01.11.2026', '2026-11-01 10:00', '1795824080', '0', '01', '1', '-1', 'all', '2', '100',
  '101', 'csv', 'raw', 'rows', 'open', 'email', 'cch12', '%FF%FE', '%', '%2', '%E2%82', '%C3%A9', '%00', '%0A', '+', '%2B', '&', '=', '[]', ''];
const PATHS = [LEADERBOARD, STAFF, SATISFACTION, `${LEADERBOARD}/`, '/api/../api/stats_leaderboard.json', '/healthz', '/api/%2e%2e/x'];

const pair = fc.tuple(fc.constantFrom(...NAMES), fc.oneof(fc.constantFrom(...VALUES), fc.string({ maxLength: 12 }), fc.string({ unit: 'binary', maxLength: 6 })));
const queryString = fc.oneof(
  fc.array(pair, { maxLength: 8 }).map((pairs) => pairs.map(([name, value]) => `${name}=${value}`).join('&')),
  fc.array(pair, { maxLength: 8 }).map((pairs) => pairs.map(([name, value]) => `${encodeURIComponent(name)}=${encodeURIComponent(value)}`).join('&')),
  fc.constantFrom('user_id[]=1&'.repeat(200), `channel=${'x'.repeat(5000)}`, '&&&&', '=&=', 'period=today&period=today', 'period=today&'.repeat(10)),
);
const headers = fc.record(
  {
    accept: fc.constantFrom('text/csv', 'application/json;q=0', 'text/csv;q=abc, */*', '*/*', ''),
    'if-none-match': fc.constantFrom('*', '"x"', 'W/"x", "y"', ''),
    'if-modified-since': fc.constantFrom('Sat, 28 Nov 2026 12:00:00 GMT', '3000', 'yesterday', ''),
    authorization: fc.constantFrom(DEMO, 'Basic ', 'Basic %%%', 'Bearer x', 'Basic ' + Buffer.from('nobody@example.com:x').toString('base64')),
  },
  { requiredKeys: [] },
);

t.test('thousands of generated requests: always a 4xx or a 200, never a 5xx, and no call for a refused one', async (t) => {
  const stack = await startStack(t);
  let requests = 0;
  await fc.assert(
    fc.asyncProperty(fc.constantFrom(...PATHS), queryString, headers, async (path, query, extra) => {
      const before = stack.simulator.calls;
      const answer = await raw(stack, `${path}?${query}`, Object.fromEntries(Object.entries(extra).filter(([, value]) => value !== '')));
      requests += 1;
      const calls = stack.simulator.calls - before;
      if (answer.status >= 500) throw new Error(`${answer.status} for ${path}?${query}: ${answer.text}`);
      if (answer.status !== 200 && answer.status !== 304 && calls > 0) {
        // A credential Deskie refuses costs its one call (then it is remembered).
        if (answer.status !== 401) throw new Error(`${answer.status} for ${path}?${query} cost ${calls} call(s)`);
      }
      if (answer.status >= 400 && answer.status !== 401) {
        if (!/^application\/json/.test(answer.type) || typeof errorOf(answer.text) !== 'string') {
          throw new Error(`${answer.status} without the JSON error shape: ${answer.text}`);
        }
      }
      return true;
    }),
    { numRuns: 3_000, seed: 20261128 },
  );
  t.equal(requests, 3_000, 'every generated request was answered');
  t.ok(stack.simulator.calls <= requests, `${stack.simulator.calls} calls reached Deskie`);
});
