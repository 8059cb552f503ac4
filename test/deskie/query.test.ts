import t, { type Test } from 'tap';
import { DateTime } from 'luxon';
import { ENDPOINTS } from '../../src/deskie/endpoints.js';
import { PeriodWindows } from '../../src/deskie/periods.js';
import { parseStatsQuery, type QueryContext, type RawQuery, type ResolvedWindow } from '../../src/deskie/query.js';
import { ProxyError } from '../../src/http/errors.js';

const context: QueryContext = {
  windows: new PeriodWindows('Europe/Berlin', 1),
  nowMs: Date.parse('2026-11-28T12:00:00Z'),
  extraParameters: new Set(),
  proxyParameters: new Set(['format']),
};
const leaderboard = (query: RawQuery, ctx: Partial<QueryContext> = {}) =>
  parseStatsQuery(ENDPOINTS.leaderboard, query, { ...context, ...ctx });

/** Asserts a 400 whose message contains every given fragment. */
function rejects(t: Test, run: () => unknown, ...fragments: string[]): void {
  try {
    run();
    t.fail(`expected a 400 mentioning ${fragments.join(', ')}`);
  } catch (error) {
    t.ok(error instanceof ProxyError && error.statusCode === 400, 'is a 400');
    for (const fragment of fragments) t.match((error as Error).message, fragment, `message names ${fragment}`);
  }
}

t.test('a filter written name=a, name[]=a or both is one question, sent one way', async (t) => {
  const plain = leaderboard({ period: 'today', staff_id: '5' });
  const array = leaderboard({ period: 'today', 'staff_id[]': '5' });
  const both = leaderboard({ period: 'today', staff_id: '5', 'staff_id[]': ['5'] });
  t.equal(plain.canonicalQuery, 'period=today&staff_id=5');
  t.equal(array.canonicalQuery, plain.canonicalQuery);
  t.equal(both.canonicalQuery, plain.canonicalQuery);
  t.equal(leaderboard({ period: 'today', user_id: '7', 'user_id[]': ['9', '7'] }).canonicalQuery, 'period=today&user_id%5B%5D=7&user_id%5B%5D=9', 'several values go as name[]');
  rejects(t, () => leaderboard({ period: 'today', user_id: '0', 'user_id[]': Array.from({ length: 100 }, (_, i) => String(i + 1)) }), 'filter user_id is given 101 values; at most 100');
});

t.test('page=1 is the page Deskie answers without one; other defaults are not guessed', async (t) => {
  const satisfaction = (query: RawQuery) => parseStatsQuery(ENDPOINTS.satisfaction, query, context);
  t.equal(satisfaction({ period: 'today', page: '1' }).canonicalQuery, satisfaction({ period: 'today' }).canonicalQuery);
  t.equal(satisfaction({ period: 'today', page: '2' }).canonicalQuery, 'page=2&period=today');
  t.equal(satisfaction({ period: 'today', limit: '100' }).canonicalQuery, 'limit=100&period=today', 'limit has no documented default');
  t.equal(satisfaction({ period: 'today', sort: 'added_at_desc' }).canonicalQuery, 'period=today&sort=added_at_desc', 'nor has sort');
});

t.test('the canonical query sorts names and the values of repeated filters', async (t) => {
  const a = leaderboard({ period: 'today', 'user_id[]': ['2414389', '2414276'], channel: 'telegram', 'custom_fields[cf_7589]': '0' });
  const b = leaderboard({ 'custom_fields[cf_7589]': '0', channel: 'telegram', 'user_id[]': ['2414276', '2414389'], period: 'today' });
  t.equal(a.canonicalQuery, b.canonicalQuery, 'order does not matter');
  t.equal(
    a.canonicalQuery,
    'channel=telegram&custom_fields%5Bcf_7589%5D=0&period=today&user_id%5B%5D=2414276&user_id%5B%5D=2414389',
  );
});

t.test('proxy-only parameters are kept apart from the upstream query', async (t) => {
  const query = leaderboard({ period: 'today', format: 'raw' });
  t.equal(query.canonicalQuery, 'period=today');
  t.same(query.proxy, { format: 'raw' });
});

t.test('period must be one of the 19 documented values', async (t) => {
  rejects(t, () => leaderboard({ period: 'last_2_days' }), 'period must be one of', 'last_24_hours', 'last_year');
});

t.test('without a period both from_time and to_time are required', async (t) => {
  rejects(t, () => leaderboard({}), 'give period', 'from_time and to_time');
  rejects(t, () => leaderboard({ from_time: '2026-11-01' }), 'from_time and to_time');
});

t.test('a period and a range together are refused', async (t) => {
  rejects(t, () => leaderboard({ period: 'today', from_time: '2026-11-01', to_time: '2026-11-02' }), 'not both');
});

t.test('every accepted time form resolves to the same instant', async (t) => {
  const instant = DateTime.fromISO('2026-09-01T00:00:00', { zone: 'Europe/Berlin' });
  const forms = ['2026-09-01 00:00:00', '2026-09-01 00:00:00 +0200', '2026-08-31 22:00:00 +0000', '2026-09-01 00:00', '2026-09-01', '01.09.2026', '01.09.2026 00:00', String(instant.toSeconds())];
  const queries = new Set(forms.map((from) => leaderboard({ from_time: from, to_time: '2026-10-01' }).canonicalQuery));
  t.same([...queries], ['from_time=2026-09-01%2000%3A00%3A00%20%2B0200&to_time=2026-10-01%2000%3A00%3A00%20%2B0200']);
});

t.test('an unknown time form is refused with the accepted forms', async (t) => {
  rejects(t, () => leaderboard({ from_time: '2026-09-01T00:00:00Z', to_time: '2026-10-01' }), 'from_time must be', 'DD.MM.YYYY', 'unix timestamp');
  rejects(t, () => leaderboard({ from_time: '2021-01-01', to_time: '2021-31-01' }), 'to_time must be');
});

t.test('an offset outside -1400..+1400 is refused', async (t) => {
  rejects(t, () => leaderboard({ from_time: '2026-11-01 10:00:00 +9999', to_time: '2026-11-02' }), 'from_time must be');
  rejects(t, () => leaderboard({ from_time: '2026-11-01 10:00:00 +0060', to_time: '2026-11-02' }), 'from_time must be');
  t.ok(leaderboard({ from_time: '2026-11-01 10:00:00 +1400', to_time: '2026-11-02 10:00:00 -1200' }), 'the extremes are fine');
});

t.test('filter values follow their documented forms', async (t) => {
  const ok = leaderboard({ period: 'today', status: 'open', priority: 'critical', initiator: 'agent', staff_id: 'all', channel: 'cch12', labels: '7152', 'group_id[]': ['2', '10'] });
  t.equal(ok.canonicalQuery, 'channel=cch12&group_id%5B%5D=10&group_id%5B%5D=2&initiator=agent&labels=7152&period=today&priority=critical&staff_id=all&status=open');
  rejects(t, () => leaderboard({ period: 'today', status: 'bogus' }), 'status must be one of open, waiting, closed');
  rejects(t, () => leaderboard({ period: 'today', group_id: '01' }), 'group_id must be a numeric id');
  rejects(t, () => leaderboard({ period: 'today', group_id: '' }), 'group_id must be a numeric id');
  rejects(t, () => leaderboard({ period: 'today', 'labels[]': ['1', ''] }), 'labels[] must be a numeric id');
  rejects(t, () => leaderboard({ period: 'today', staff_id: 'none' }), 'staff_id must be a numeric id or all');
  rejects(t, () => leaderboard({ period: 'today', channel: 'E-Mail' }), 'channel must be a channel such as');
  rejects(t, () => leaderboard({ period: 'today', 'custom_fields[cf_7589]': '' }), 'custom_fields[cf_7589] must be non-empty text');
  rejects(t, () => leaderboard({ period: 'today', 'custom_fields[cf_01]': '1' }), 'unknown parameter custom_fields[cf_01]');
  const satisfaction = (query: RawQuery) => parseStatsQuery(ENDPOINTS.satisfaction, { period: 'today', ...query }, context);
  t.ok(satisfaction({ rating: 'middle', rated_staff_id: '0', user_email: 'a@b.c' }), 'rated_staff_id 0 means the case as a whole');
  rejects(t, () => satisfaction({ rating: '5' }), 'rating must be one of low, middle, high');
});

t.test('a custom range is at least one hour and ends after it starts', async (t) => {
  rejects(t, () => leaderboard({ from_time: '2026-11-01 10:00', to_time: '2026-11-01 10:30' }), 'at least 1 hour');
  rejects(t, () => leaderboard({ from_time: '2026-11-02', to_time: '2026-11-01' }), 'to_time must be after from_time');
  t.equal(leaderboard({ from_time: '2026-11-01 10:00', to_time: '2026-11-01 11:00' }).freshness, 'custom_up_to_1_day', 'exactly an hour is fine');
});

t.test('a custom range is at most 3 calendar months, or 1 for staff statuses', async (t) => {
  t.equal(leaderboard({ from_time: '2026-01-31', to_time: '2026-04-30' }).freshness, 'custom_longer', '3 months from 31 January end on 30 April');
  rejects(t, () => leaderboard({ from_time: '2026-01-31', to_time: '2026-05-01' }), 'at most 3 months');
  const staff = (from: string, to: string) => parseStatsQuery(ENDPOINTS.staff_statuses, { from_time: from, to_time: to }, context);
  t.ok(staff('2026-02-01', '2026-03-01'), 'February is one month');
  rejects(t, () => staff('2026-02-01', '2026-03-01 00:00:01'), 'at most 1 month', 'stats_staff_statuses');
});

t.test('a custom range up to a day long is in the one-hour row of the table', async (t) => {
  t.equal(leaderboard({ from_time: '2026-11-01', to_time: '2026-11-02' }).freshness, 'custom_up_to_1_day');
  t.equal(leaderboard({ from_time: '2026-11-01', to_time: '2026-11-02 00:00:01' }).freshness, 'custom_longer');
});

t.test('page, limit and sort take their documented values', async (t) => {
  const satisfaction = (query: RawQuery) => parseStatsQuery(ENDPOINTS.satisfaction, { period: 'today', ...query }, context);
  t.equal(satisfaction({ page: '2', limit: '100', sort: 'added_at_asc' }).canonicalQuery, 'limit=100&page=2&period=today&sort=added_at_asc');
  rejects(t, () => satisfaction({ page: '0' }), 'page must be a positive integer');
  rejects(t, () => satisfaction({ page: '1.5' }), 'page must be a positive integer');
  rejects(t, () => satisfaction({ limit: '101' }), 'limit must be an integer from 1 to 100');
  rejects(t, () => satisfaction({ limit: '0' }), 'limit must be an integer from 1 to 100');
  rejects(t, () => satisfaction({ sort: 'newest' }), 'sort must be added_at_desc or added_at_asc');
});

t.test('unknown parameters are refused by name, with what is accepted', async (t) => {
  rejects(t, () => leaderboard({ period: 'today', _: '123' }), 'unknown parameter _', 'accepts period');
  rejects(t, () => leaderboard({ period: 'today', zz: '1', aa: '2' }), 'unknown parameters aa, zz');
  rejects(t, () => leaderboard({ period: 'today', 'nope[]': ['1'] }), 'unknown parameter nope[]');
  rejects(t, () => leaderboard({ period: 'today', 'custom_fields[x]': '1' }), 'unknown parameter custom_fields[x]');
  rejects(t, () => parseStatsQuery(ENDPOINTS.staff_statuses, { period: 'today', channel: 'email' }, context), 'unknown parameter channel');
});

t.test('the operator can allow more names', async (t) => {
  const query = leaderboard({ period: 'today', lang: 'en' }, { extraParameters: new Set(['lang']) });
  t.equal(query.canonicalQuery, 'lang=en&period=today');
  t.equal(leaderboard({ period: 'today', lang: ['en', 'de', 'en'] }, { extraParameters: new Set(['lang']) }).canonicalQuery, 'lang=de&lang=en&period=today', 'de-duplicated and sorted');
});

t.test('a single-valued parameter given twice is refused', async (t) => {
  rejects(t, () => leaderboard({ period: ['today', 'yesterday'] }), 'period is given 2 times');
  rejects(t, () => leaderboard({ period: 'today', staff_id: ['1', '2'] }), 'staff_id[]=a');
});

t.test('a resolved custom range is remembered and gives the same canonical query', async (t) => {
  const { LRUCache } = await import('lru-cache');
  const ranges = new LRUCache<string, ResolvedWindow>({ max: 10 });
  const first = leaderboard({ from_time: '01.11.2026', to_time: '2026-11-02' }, { ranges });
  t.equal(ranges.size, 1);
  const again = leaderboard({ from_time: '01.11.2026', to_time: '2026-11-02' }, { ranges });
  t.equal(again.canonicalQuery, first.canonicalQuery);
  t.equal(again.window, first.window, 'the same resolved window');
  rejects(t, () => leaderboard({ from_time: '01.11.2026', to_time: '01.11.2026' }, { ranges }), 'to_time must be after');
  t.equal(ranges.size, 1, 'a refused range is not remembered');
});

t.test('a custom time the account zone skips for daylight saving is a 400 that says so', async (t) => {
  rejects(t, () => leaderboard({ from_time: '2026-03-29 02:30', to_time: '2026-03-29 06:00' }), 'from_time "2026-03-29 02:30" does not exist in Europe/Berlin');
  rejects(t, () => leaderboard({ from_time: '2026-03-28', to_time: '29.03.2026 02:00:00' }), 'to_time "29.03.2026 02:00:00" does not exist');
  t.equal(leaderboard({ from_time: '2026-03-29 01:30', to_time: '2026-03-29 03:30' }).window.to.toISO(), '2026-03-29T03:30:00.000+02:00', 'either side of the gap is fine');
  t.equal(leaderboard({ from_time: '2026-03-29 02:30:00 +0100', to_time: '2026-03-29 06:00' }).window.from.toISO(), '2026-03-29T03:30:00.000+02:00', 'with an offset the instant is explicit');
});
