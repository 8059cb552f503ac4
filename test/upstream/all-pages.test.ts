import t from 'tap';
import { ENDPOINTS } from '../../src/deskie/endpoints.js';
import { type DeskiePage, fetchAllPages } from '../../src/upstream/all-pages.js';

/** Deskie's pages as data: the fetcher answers each query from this table and records what was asked. */
function pages(bodies: Record<string, unknown>) {
  const asked: string[] = [];
  const fetchPage = async (query: string): Promise<DeskiePage> => {
    asked.push(query);
    const page = new URLSearchParams(query).get('page') ?? '';
    const parsed = bodies[page] ?? {};
    return { body: Buffer.from(JSON.stringify(parsed)), contentType: 'application/json', parsed };
  };
  return { asked, fetchPage };
}

const ratings = (from: number, count: number) =>
  Object.fromEntries(Array.from({ length: count }, (_, i) => [String(i), { rating_id: from + i }]));
const ids = (merged: unknown) =>
  Object.entries(merged as Record<string, { rating_id?: number }>)
    .filter(([key]) => /^\d+$/.test(key))
    .map(([, record]) => record.rating_id);

t.test('satisfaction is read oldest first and returned in the order asked for', async (t) => {
  const { asked, fetchPage } = pages({ '1': { ...ratings(1, 100), total_count: 150 }, '2': { ...ratings(101, 50), total_count: 150 } });
  const desc = await fetchAllPages(ENDPOINTS.satisfaction, [['period', 'this_month']], 50, fetchPage);
  t.same(ids(desc.parsed).slice(0, 3), [150, 149, 148], 'newest first by default');
  t.equal((desc.parsed as { total_count: number }).total_count, 150);
  t.ok(asked.every((query) => query.includes('sort=added_at_asc') && query.includes('limit=100')));
  const asc = await fetchAllPages(ENDPOINTS.satisfaction, [['period', 'this_month'], ['sort', 'added_at_asc']], 50, fetchPage);
  t.same(ids(asc.parsed).slice(0, 3), [1, 2, 3]);
});

t.test('a rating seen on two pages is kept once, and a full last page is followed', async (t) => {
  // A rating arrived while paging: page 2 repeats rating 100 and page 3 holds the newest.
  const { fetchPage } = pages({
    '1': { ...ratings(1, 100), total_count: 200 },
    '2': { ...ratings(100, 100), total_count: 201 },
    '3': { ...ratings(200, 2), total_count: 201 },
  });
  const merged = await fetchAllPages(ENDPOINTS.satisfaction, [['period', 'this_month'], ['sort', 'added_at_asc']], 50, fetchPage);
  t.same(ids(merged.parsed), Array.from({ length: 201 }, (_, i) => i + 1));
  t.equal((merged.parsed as { total_count: number }).total_count, 201);
});

t.test('satisfaction without total_count is paged until a short page', async (t) => {
  const { asked, fetchPage } = pages({ '1': ratings(1, 100), '2': ratings(101, 3) });
  const merged = await fetchAllPages(ENDPOINTS.satisfaction, [['period', 'this_month']], 50, fetchPage);
  t.equal(ids(merged.parsed).length, 103);
  t.equal((merged.parsed as { total_count: number }).total_count, 103, 'the count of what was merged');
  t.equal(asked.length, 2);
});

t.test('a period over the page limit fails before spending more calls', async (t) => {
  const { asked, fetchPage } = pages({ '1': { ...ratings(1, 100), total_count: 5_000 } });
  await t.rejects(fetchAllPages(ENDPOINTS.satisfaction, [['period', 'this_year']], 10, fetchPage), /more than 10 pages/);
  t.equal(asked.length, 1);
});

t.test('staff statuses follow last_page, and full pages when last_page is missing', async (t) => {
  const changes = (count: number) => Object.fromEntries(Array.from({ length: count }, (_, i) => [String(i), { status_change: { staff_id: i } }]));
  const flagged = pages({ '1': { ...changes(100), last_page: false }, '2': { ...changes(100), last_page: false }, '3': { ...changes(7), last_page: true } });
  const merged = await fetchAllPages(ENDPOINTS.staff_statuses, [['period', 'this_month']], 50, flagged.fetchPage);
  t.equal(Object.keys(merged.parsed as object).length, 208, '207 records and last_page');
  t.equal((merged.parsed as { last_page: boolean }).last_page, true);
  const unflagged = pages({ '1': changes(100), '2': changes(40) });
  const followed = await fetchAllPages(ENDPOINTS.staff_statuses, [['period', 'this_month']], 50, unflagged.fetchPage);
  t.equal(unflagged.asked.length, 2, 'a full page without last_page is followed');
  t.equal(Object.keys(followed.parsed as object).length, 141);
});

t.test('a failure on a later page reaches the caller', async (t) => {
  let calls = 0;
  const failing = async (query: string): Promise<DeskiePage> => {
    if (++calls === 3) throw new Error(`page failed: ${query}`);
    const parsed = { ...ratings(calls * 100, 100), total_count: 500 };
    return { body: Buffer.from(JSON.stringify(parsed)), contentType: undefined, parsed };
  };
  await t.rejects(fetchAllPages(ENDPOINTS.satisfaction, [['period', 'this_month']], 50, failing), /page failed/);
});

t.test('a status change seen on two pages is kept once, and paging stops once the merge holds total_count', async (t) => {
  const change = (staffId: number, timestamp: number) => ({ status_change: { staff_id: staffId, timestamp, from: 'Online (1)', to: 'Offline (2)' } });
  const page = (from: number, count: number) => Object.fromEntries(Array.from({ length: count }, (_, i) => [String(i), change(7, from + i)]));
  // A change arrived while paging: page 2 starts with the last change of page 1 again.
  const shifted = pages({ '1': { ...page(0, 100), last_page: false }, '2': { ...page(99, 100), last_page: false }, '3': { ...page(199, 2), last_page: true } });
  const merged = await fetchAllPages(ENDPOINTS.staff_statuses, [['period', 'this_month']], 50, shifted.fetchPage);
  const timestamps = Object.values(merged.parsed as Record<string, { status_change?: { timestamp: number } }>)
    .map((record) => record.status_change?.timestamp)
    .filter((timestamp) => timestamp !== undefined);
  t.equal(timestamps.length, 201, 'the repeated change is kept once');
  t.equal(new Set(timestamps).size, 201);

  const counted = pages({ '1': { ...ratings(1, 100), total_count: 200 }, '2': { ...ratings(101, 100), total_count: 200 } });
  const all = await fetchAllPages(ENDPOINTS.satisfaction, [['period', 'this_month']], 50, counted.fetchPage);
  t.equal(counted.asked.length, 2, 'a total of 200 costs two calls, not a third for an empty page');
  t.equal((all.parsed as { total_count: number }).total_count, 200);
});

t.test('page queries come from the one canonical builder', async (t) => {
  const { asked, fetchPage } = pages({ '1': { ...ratings(1, 3), total_count: 3 } });
  await fetchAllPages(ENDPOINTS.satisfaction, [['rating_comment', 'a b+c'], ['period', 'this_month']], 50, fetchPage);
  t.same(asked, ['limit=100&page=1&period=this_month&rating_comment=a%20b%2Bc&sort=added_at_asc'], 'sorted, spaces as %20 like every upstream query');
});
