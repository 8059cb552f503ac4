import t from 'tap';
import { brotliDecompressSync, gunzipSync } from 'node:zlib';
import { request } from 'undici';
import { DEMO, OTHER, settled, startStack } from './helpers/stack.js';

const LEADERBOARD = '/api/stats_leaderboard.json';
const SATISFACTION = '/api/stats_satisfaction.json';
const STAFF = '/api/stats_staff_statuses.json';

/** What Deskie itself answers for a query, asked directly. */
async function direct(url: string, path: string): Promise<string> {
  const response = await request(`${url}${path}`, { headers: { authorization: DEMO } });
  return response.body.text();
}

t.test('the default answer has numbers and nulls where Deskie sends percent strings and dashes', async (t) => {
  const stack = await startStack(t);
  const body = JSON.parse((await stack.get(`${LEADERBOARD}?period=this_month`)).text) as Record<string, { staff: Record<string, unknown> }>;
  const staff = Object.values(body).map((record) => record.staff);
  t.ok(staff.length > 0);
  for (const agent of staff) {
    for (const field of ['first_response_sla_violated', 'response_sla_violated', 'resolution_sla_violated', 'ratings_of_responses']) {
      t.ok(agent[field] === null || typeof agent[field] === 'number', `${field} is a number or null`);
    }
    t.equal(typeof agent['staff_name'], 'string');
  }
  t.ok(staff.some((agent) => agent['ratings_of_responses'] === null), '"-" became null');
});

t.test('free text that looks like a number, a percent or a dash arrives as sent', async (t) => {
  const stack = await startStack(t);
  const path = `${SATISFACTION}?period=this_month`;
  const raw = JSON.parse(await direct(stack.simulator.url, path)) as Record<string, Record<string, unknown>>;
  const normalized = JSON.parse((await stack.get(path)).text) as Record<string, Record<string, unknown>>;
  const comments = Object.keys(raw).filter((key) => /^\d+$/.test(key)).map((key) => [raw[key]?.['rating_comment'], normalized[key]?.['rating_comment']]);
  t.ok(comments.some(([sent]) => sent === '42') && comments.some(([sent]) => sent === '100%') && comments.some(([sent]) => sent === '-'), 'the tricky comments are there');
  for (const [sent, got] of comments) t.equal(got, sent, `comment ${JSON.stringify(sent)} untouched`);
  t.equal(typeof normalized['0']?.['rating'], 'number', 'rating is a number');
  t.match(normalized['0']?.['created_at'], /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}[+-]\d{2}:\d{2}$/, 'created_at is ISO 8601 with offset');
  t.equal(normalized['total_count'], raw['total_count'], 'the envelope is kept');
});

t.test('format=raw is byte-identical to Deskie and switching format makes no upstream call', async (t) => {
  const stack = await startStack(t);
  const normalized = await stack.get(`${LEADERBOARD}?period=this_month`);
  const raw = await stack.get(`${LEADERBOARD}?period=this_month&format=raw`);
  t.match(raw.headers['cache-status'], /; hit;/, 'the same entry');
  t.equal(raw.text, await direct(stack.simulator.url, `${LEADERBOARD}?period=this_month`), 'byte for byte');
  t.not(raw.text, normalized.text);
  const rows = await stack.get(`${LEADERBOARD}?format=rows&period=this_month`);
  const csv = await stack.get(`${LEADERBOARD}?period=this_month&format=csv`);
  t.equal(stack.simulator.calls - 1, 1, 'only the direct comparison call besides the one fetch');
  t.match(rows.headers['content-type'], /^application\/json/);
  t.match(csv.headers['content-type'], /^text\/csv/);
});

t.test('format=rows gives flat rows, the envelope and the window', async (t) => {
  const stack = await startStack(t, { now: '2026-11-28T12:00:00Z', env: { DESKIE_TIMEZONE: 'Europe/Berlin' } });
  const doc = JSON.parse((await stack.get(`${STAFF}?period=yesterday&format=rows`)).text) as {
    rows: Array<Record<string, unknown>>;
    last_page: unknown;
    total_count: unknown;
    window: unknown;
  };
  t.same(doc.window, { from: '2026-11-27T00:00:00.000+01:00', to: '2026-11-28T00:00:00.000+01:00', timezone: 'Europe/Berlin' });
  t.equal(typeof doc.last_page, 'boolean');
  t.equal(doc.total_count, null);
  t.ok(doc.rows.length > 0);
  for (const row of doc.rows) {
    t.match(row, { staff_id: Number, timestamp: Number, from: String, from_name: String, from_id: Number, to_name: String, to_id: Number });
  }
});

t.test('format=csv has a header row and one line per record', async (t) => {
  const stack = await startStack(t);
  const json = JSON.parse((await stack.get(`${LEADERBOARD}?period=today&format=rows`)).text) as { rows: unknown[] };
  const csv = (await stack.get(`${LEADERBOARD}?period=today&format=csv`)).text;
  const lines = csv.trimEnd().split('\r\n');
  t.match(lines[0], /^staff_id,staff_name,new_cases_in_total,/);
  t.equal(lines.length, json.rows.length + 1);
  const viaAccept = await stack.get(`${LEADERBOARD}?period=today`, { headers: { accept: 'text/csv' } });
  t.equal(viaAccept.text, csv, 'Accept: text/csv picks CSV');
  t.equal(viaAccept.headers['vary'], 'Accept, Accept-Encoding, Authorization');
});

t.test('an unknown format is a 400 that never reaches Deskie', async (t) => {
  const stack = await startStack(t);
  const answer = await stack.get(`${LEADERBOARD}?period=today&format=xml`);
  t.equal(answer.status, 400);
  t.match(answer.text, /format must be one of normalized, raw, rows, csv/);
  t.equal(stack.simulator.calls, 0);
});

t.test('a matching If-None-Match gets 304 with no body; another format, URL or credential does not', async (t) => {
  const stack = await startStack(t);
  const first = await stack.get(`${LEADERBOARD}?period=today`);
  const etag = String(first.headers['etag']);
  t.match(etag, /^"[\w-]+"$/, 'a strong ETag');
  t.equal(first.headers['last-modified'], new Date(stack.clock.nowMs).toUTCString());

  const again = await stack.get(`${LEADERBOARD}?period=today`, { headers: { 'if-none-match': etag } });
  t.equal(again.status, 304);
  t.equal(again.text, '');
  t.equal(again.headers['etag'], etag);
  t.match(again.headers['cache-status'], /hit/);
  t.equal((await stack.get(`${LEADERBOARD}?period=today`, { headers: { 'if-none-match': `"other", W/${etag}` } })).status, 304, 'weak comparison in a list');

  t.equal((await stack.get(`${LEADERBOARD}?period=today&format=raw`, { headers: { 'if-none-match': etag } })).status, 200, 'another format');
  t.equal((await stack.get(`${LEADERBOARD}?period=yesterday`, { headers: { 'if-none-match': etag } })).status, 200, 'another URL');
  t.equal((await stack.get(`${LEADERBOARD}?period=today`, { authorization: OTHER, headers: { 'if-none-match': etag } })).status, 200, 'another credential');
});

t.test('If-Modified-Since at or after the fetch gets 304', async (t) => {
  const stack = await startStack(t);
  const first = await stack.get(`${LEADERBOARD}?period=today`);
  const lastModified = String(first.headers['last-modified']);
  t.equal((await stack.get(`${LEADERBOARD}?period=today`, { headers: { 'if-modified-since': lastModified } })).status, 304);
  const earlier = new Date(Date.parse(lastModified) - 1000).toUTCString();
  t.equal((await stack.get(`${LEADERBOARD}?period=today`, { headers: { 'if-modified-since': earlier } })).status, 200);
  t.equal((await stack.get(`${LEADERBOARD}?period=today`, { headers: { 'if-modified-since': 'not a date' } })).status, 200);
  t.equal((await stack.get(`${LEADERBOARD}?period=today`, { headers: { 'if-modified-since': '3000' } })).status, 200, 'only an HTTP-date counts');
});

t.test('a 304 to HEAD carries no Content-Length; a 200 to HEAD carries the body\'s', async (t) => {
  const stack = await startStack(t);
  const first = await stack.get(`${LEADERBOARD}?period=today`);
  const head = await stack.get(`${LEADERBOARD}?period=today`, { method: 'HEAD' });
  t.equal(head.headers['content-length'], String(Buffer.byteLength(first.text)));
  const notModified = await stack.get(`${LEADERBOARD}?period=today`, { method: 'HEAD', headers: { 'if-none-match': String(first.headers['etag']) } });
  t.equal(notModified.status, 304);
  t.notOk(notModified.headers['content-length'], 'no Content-Length on the 304');
});

t.test('a refetch that brings the same bytes keeps its ETag, so the client still gets 304', async (t) => {
  const stack = await startStack(t, { now: '2026-11-28T12:00:00Z' });
  const path = `${LEADERBOARD}?from_time=2026-11-01&to_time=2026-11-02`;
  const first = await stack.get(path);
  stack.clock.advance(3_600_000); // the 1-hour lifetime of a short custom range
  const refetched = await stack.get(path, { headers: { 'if-none-match': String(first.headers['etag']) } });
  t.match(refetched.headers['cache-status'], /fwd=stale; stored/, 'fetched again');
  t.equal(refetched.status, 304, 'same bytes, same tag');
  t.equal(stack.simulator.calls, 2);
});

t.test('page=all on staff statuses follows last_page into one cached answer', async (t) => {
  const stack = await startStack(t);
  const base = `${STAFF}?period=this_month`;
  const pages: string[] = [];
  for (let page = 1; ; page++) {
    const text = await direct(stack.simulator.url, `${base}&page=${page}`);
    pages.push(text);
    if ((JSON.parse(text) as { last_page: boolean }).last_page) break;
  }
  t.ok(pages.length > 1, `the period has ${pages.length} pages`);
  stack.simulator.resetCounters();

  const all = JSON.parse((await stack.get(`${base}&page=all&format=raw`)).text) as Record<string, unknown>;
  t.equal(stack.simulator.calls, pages.length, 'one upstream call per page');
  const expected = pages.flatMap((text) => {
    const page = JSON.parse(text) as Record<string, unknown>;
    return Object.keys(page).filter((key) => /^\d+$/.test(key)).map((key) => page[key]);
  });
  t.same(Object.keys(all).filter((key) => /^\d+$/.test(key)).map((key) => all[key]), expected, 'every record, in order');
  t.equal(all['last_page'], true);

  const rows = await stack.get(`${base}&page=all&format=rows`);
  t.match(rows.headers['cache-status'], /; hit;/, 'one entry serves every format');
  t.equal((JSON.parse(rows.text) as { rows: unknown[] }).rows.length, expected.length);
  t.equal(stack.simulator.calls, pages.length);
});

t.test('page=all on satisfaction uses total_count, whatever limit the client gave', async (t) => {
  const stack = await startStack(t);
  const all = JSON.parse((await stack.get(`${SATISFACTION}?period=this_month&page=all&limit=10`)).text) as Record<string, unknown>;
  const total = all['total_count'] as number;
  t.ok(total > 100, `${total} ratings span several pages`);
  t.equal(Object.keys(all).filter((key) => /^\d+$/.test(key)).length, total, 'every rating');
  t.equal(stack.simulator.calls, Math.ceil(total / 100), 'pages of 100');
  t.ok(stack.simulator.requests.every((r) => r.query.includes('limit=100')));
  const again = await stack.get(`${SATISFACTION}?period=this_month&page=all`);
  t.match(again.headers['cache-status'], /; hit;/, 'the limit is not part of the entry');
});

t.test('page=all past the page limit is a clear error and stores nothing', async (t) => {
  const stack = await startStack(t, { env: { PAGE_ALL_MAX_PAGES: '2' } });
  const answer = await stack.get(`${STAFF}?period=this_month&page=all`);
  t.equal(answer.status, 422);
  t.match(answer.text, /page=all needs more than 2 pages/);
  const calls = stack.simulator.calls;
  const again = await stack.get(`${STAFF}?period=this_month&page=all`);
  t.equal(again.status, 422, 'still refused');
  t.equal(again.headers['cache-status'], 'deskie-stats-proxy; hit; detail=remembered-422', 'the refusal, not partial data, was kept');
  t.equal(stack.simulator.calls, calls, 'and the retry cost no calls');
});

t.test('single pages keep working beside page=all', async (t) => {
  const stack = await startStack(t);
  const second = await stack.get(`${STAFF}?period=this_month&page=2&format=raw`);
  t.equal(second.text, await direct(stack.simulator.url, `${STAFF}?period=this_month&page=2`));
  t.equal((await stack.get(`${LEADERBOARD}?period=today&page=all`)).status, 400, 'the leaderboard has no pages');
});

t.test('page=all answers like Deskie\'s own order and a failure on a later page stores nothing', async (t) => {
  const stack = await startStack(t);
  const base = `${SATISFACTION}?period=this_month`;
  const direct1 = JSON.parse(await direct(stack.simulator.url, `${base}&page=1&limit=100`)) as Record<string, { rating_id: number }>;
  const all = JSON.parse((await stack.get(`${base}&page=all&format=raw`)).text) as Record<string, { rating_id: number }>;
  t.same([all['0']?.rating_id, all['1']?.rating_id], [direct1['0']?.rating_id, direct1['1']?.rating_id], 'newest first, as Deskie sorts by default');

  const failing = await startStack(t);
  failing.simulator.set({ fault: 'rateLimited', faultAfterCalls: 1 });
  const answer = await failing.get(`${base}&page=all`);
  t.equal(answer.status, 429, "Deskie's refusal of page 2 reaches the client");
  failing.simulator.set({ fault: 'none' });
  failing.clock.advance(30_000); // the 429's retry_after
  const retried = await failing.get(`${base}&page=all`);
  t.match(retried.headers['cache-status'], /fwd=miss; stored/, 'nothing partial had been stored');
});

t.test('page=all past its deadline is a 504 and stores nothing', async (t) => {
  // Several pages at 100 ms each cannot all start within 150 ms.
  const stack = await startStack(t, { env: { PAGE_ALL_TIMEOUT_MS: '150' }, simulator: { knobs: { latencyMs: 100 } } });
  const answer = await stack.get(`${STAFF}?period=this_month&page=all`);
  t.equal(answer.status, 504);
  t.match(answer.text, /page=all did not finish within 150 ms/);
  const calls = stack.simulator.calls;
  t.ok(calls >= 1 && calls < 4, `stopped after ${calls} pages`);
  t.equal((await stack.get(`${STAFF}?period=this_month&page=all`)).status, 504, 'nothing was stored');
});

t.test('bom=1 puts a UTF-8 byte order mark before CSV, from the same entry', async (t) => {
  const stack = await startStack(t);
  const plain = await stack.get(`${LEADERBOARD}?period=today&format=csv`);
  const marked = await stack.get(`${LEADERBOARD}?period=today&format=csv&bom=1`);
  t.equal(marked.status, 200);
  const bytes = Buffer.from(await (await request(`${stack.proxyUrl}${LEADERBOARD}?period=today&format=csv&bom=1`, { headers: { authorization: DEMO } })).body.arrayBuffer());
  t.same([...bytes.subarray(0, 3)], [0xef, 0xbb, 0xbf], 'the mark');
  t.equal(bytes.subarray(3).toString(), plain.text, 'then the same CSV');
  t.not(marked.headers['etag'], plain.headers['etag'], 'other bytes, another tag');
  t.match(marked.headers['cache-status'], /; hit;/, 'the same entry');
  t.equal((await stack.get(`${LEADERBOARD}?period=today&bom=1`)).text.charCodeAt(0), '{'.charCodeAt(0), 'JSON never gets one');
  const bad = await stack.get(`${LEADERBOARD}?period=today&format=csv&bom=yes`);
  t.equal(bad.status, 400);
  t.match(bad.text, /bom must be 1 or 0/);
  t.equal(stack.simulator.calls, 1);
  t.equal(stack.simulator.requests[0]?.query, 'period=today', 'bom never goes upstream');
});

/** An answer's bytes as sent, not decoded: undici's request() leaves Content-Encoding to the caller. */
async function sent(stack: Awaited<ReturnType<typeof startStack>>, path: string, headers: Record<string, string> = {}) {
  const response = await request(`${stack.proxyUrl}${path}`, { headers: { authorization: DEMO, ...headers } });
  return { status: response.statusCode, headers: response.headers, bytes: Buffer.from(await response.body.arrayBuffer()) };
}

t.test('a client that accepts gzip or br gets the stored compressed bytes, with their own ETag, from one upstream call', async (t) => {
  const stack = await startStack(t);
  const path = `${LEADERBOARD}?period=this_month`;
  const plain = await sent(stack, path);
  t.equal(plain.headers['content-encoding'], undefined, 'no Accept-Encoding, no coding');
  t.equal(plain.headers['vary'], 'Accept, Accept-Encoding, Authorization');
  const gzip = await sent(stack, path, { 'accept-encoding': 'gzip, deflate' });
  t.equal(gzip.headers['content-encoding'], 'gzip');
  t.same(gunzipSync(gzip.bytes), plain.bytes, 'the same JSON, gzipped');
  t.ok(gzip.bytes.length * 3 < plain.bytes.length, `${gzip.bytes.length} bytes instead of ${plain.bytes.length}`);
  const br = await sent(stack, path, { 'accept-encoding': 'gzip, deflate, br' });
  t.equal(br.headers['content-encoding'], 'br', 'br preferred when both are as welcome');
  t.same(brotliDecompressSync(br.bytes), plain.bytes);
  t.equal((await sent(stack, path, { 'accept-encoding': 'br;q=0.5, gzip' })).headers['content-encoding'], 'gzip', 'the higher q-value wins');
  t.equal((await sent(stack, path, { 'accept-encoding': 'gzip;q=0, identity' })).headers['content-encoding'], undefined, 'q=0 refuses');
  t.equal((await sent(stack, path, { 'accept-encoding': '*' })).headers['content-encoding'], 'br', '* takes any');
  const tags = new Set([plain, gzip, br].map((answer) => answer.headers['etag']));
  t.equal(tags.size, 3, 'one validator per coding');
  const revalidated = await sent(stack, path, { 'accept-encoding': 'gzip', 'if-none-match': String(gzip.headers['etag']) });
  t.equal(revalidated.status, 304);
  t.equal(revalidated.bytes.length, 0);
  const csv = await sent(stack, `${path}&format=csv&bom=1`, { 'accept-encoding': 'gzip' });
  t.same([...gunzipSync(csv.bytes).subarray(0, 3)], [0xef, 0xbb, 0xbf], 'CSV with its mark, gzipped');
  const rawGzip = await sent(stack, `${path}&format=raw`, { 'accept-encoding': 'gzip' });
  t.equal(stack.simulator.calls, 1, 'every coding and format from one entry');
  t.equal(gunzipSync(rawGzip.bytes).toString(), await direct(stack.simulator.url, path), 'raw, gzipped, is Deskie\'s bytes');
});

t.test('a format is rendered on its first request and the store counts it then; a refetch renders the formats in use up front', async (t) => {
  const stack = await startStack(t);
  const health = async () => JSON.parse((await stack.get('/healthz', { authorization: null })).text) as { entries: number; bytes: number };
  const path = `${LEADERBOARD}?period=today`;
  const first = await stack.get(path);
  const one = await health();
  t.equal(one.entries, 1);
  await stack.get(path);
  t.equal((await health()).bytes, one.bytes, 'a hit adds nothing');
  const csv = await stack.get(`${path}&format=csv`);
  t.match(csv.headers['cache-status'], /; hit;/);
  const two = await health();
  t.ok(two.bytes > one.bytes + csv.text.length, `the CSV is counted: ${one.bytes} then ${two.bytes} bytes`);
  await stack.get(`${path}&format=rows`);
  await stack.get(`${path}&format=raw`);
  const all = await health();
  t.ok(one.bytes * 2 < all.bytes, `one format held in ${one.bytes} bytes, all four in ${all.bytes}`);
  // Past the lifetime and the margin: the poll gets the previous answer and the refresh goes.
  stack.clock.advance(5 * 60_000 + 1_000);
  const refetched = await stack.get(path);
  t.match(refetched.headers['cache-status'], /fwd=stale; revalidating/);
  t.equal(refetched.text, first.text);
  await settled(stack);
  t.equal((await health()).bytes, all.bytes, 'the new answer holds the four formats in use, counted when stored');
  t.equal(stack.simulator.calls, 2);
});
