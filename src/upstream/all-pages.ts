import { type EndpointSpec, SATISFACTION_MAX_LIMIT, STAFF_STATUS_PAGE_SIZE } from '../deskie/endpoints.js';
import { asObject, isRecordKey, type JsonObject } from '../deskie/fields.js';
import { tooManyPages } from '../errors.js';

/** One page of a Deskie answer: a 200 whose body parsed as JSON. */
export interface DeskiePage {
  readonly body: Buffer;
  readonly contentType: string | undefined;
  readonly parsed: unknown;
}

export type PageFetcher = (query: string) => Promise<DeskiePage>;
/** Told, after the first page, how many more pages Deskie's total says the merge needs; may wait, or refuse by throwing. */
export type PageReserver = (morePages: number) => Promise<void>;
const NOTHING_TO_RESERVE: PageReserver = async () => {};

/**
 * Fetches every page of a period and merges them into one body shaped like a
 * single Deskie page: records renumbered "0", "1", ... then `last_page: true`
 * (staff statuses) or `total_count` (satisfaction). Pages are fetched one
 * after another, so `page=all` never bursts against the account's rate limit.
 * Past `maxPages` it throws, and nothing is stored.
 */
export async function fetchAllPages(
  endpoint: EndpointSpec,
  baseQuery: string,
  maxPages: number,
  fetchPage: PageFetcher,
  reservePages: PageReserver = NOTHING_TO_RESERVE,
): Promise<DeskiePage> {
  const { records, envelope } =
    endpoint.pagination === 'total_count'
      ? await allRatings(baseQuery, maxPages, fetchPage, reservePages)
      : await allStatusChanges(baseQuery, maxPages, fetchPage, reservePages);
  const merged: JsonObject = {};
  records.forEach((record, index) => (merged[String(index)] = record));
  Object.assign(merged, envelope);
  return { body: Buffer.from(JSON.stringify(merged)), contentType: undefined, parsed: merged };
}

interface Merged {
  readonly records: unknown[];
  readonly envelope: JsonObject;
}

/**
 * Satisfaction pages are read oldest first, whatever order the client asked
 * for: a rating added while paging then lands at the end instead of shifting
 * every later page by one (which would repeat one record and lose another).
 * Pages are read until one comes back short; `total_count` only lets an
 * oversized period fail before it spends calls. Ratings seen twice are kept once.
 */
async function allRatings(baseQuery: string, maxPages: number, fetchPage: PageFetcher, reservePages: PageReserver): Promise<Merged> {
  const params = new URLSearchParams(baseQuery);
  const newestFirst = params.get('sort') !== 'added_at_asc';
  params.set('sort', 'added_at_asc');
  params.set('limit', String(SATISFACTION_MAX_LIMIT));
  const records: unknown[] = [];
  const seen = new Set<unknown>();
  let totalCount: unknown;
  for (let page = 1; ; page++) {
    if (page > maxPages) throw tooManyPages(maxPages);
    params.set('page', String(page));
    const body = asObject((await fetchPage(params.toString())).parsed);
    totalCount = body['total_count'] ?? totalCount;
    if (page === 1) await checkTotal(totalCount, SATISFACTION_MAX_LIMIT, maxPages, reservePages);
    const onPage = pageRecords(body);
    for (const record of onPage) {
      const id = asObject(record)['rating_id'];
      if (id !== undefined && seen.has(id)) continue;
      if (id !== undefined) seen.add(id);
      records.push(record);
    }
    if (onPage.length < SATISFACTION_MAX_LIMIT) break;
  }
  if (newestFirst) records.reverse();
  return { records, envelope: { total_count: typeof totalCount === 'number' ? Math.max(totalCount, records.length) : records.length } };
}

/**
 * Staff-status pages are followed until Deskie says `last_page: true`. A body
 * without a usable `last_page` is followed while its pages are full.
 */
async function allStatusChanges(baseQuery: string, maxPages: number, fetchPage: PageFetcher, reservePages: PageReserver): Promise<Merged> {
  const records: unknown[] = [];
  for (let page = 1; ; page++) {
    if (page > maxPages) throw tooManyPages(maxPages);
    const body = asObject((await fetchPage(`${baseQuery}&page=${page}`)).parsed);
    if (page === 1) await checkTotal(body['total_count'], STAFF_STATUS_PAGE_SIZE, maxPages, reservePages);
    const onPage = pageRecords(body);
    records.push(...onPage);
    const lastPage = body['last_page'];
    if (lastPage === true || onPage.length === 0) break;
    if (lastPage !== false && onPage.length < STAFF_STATUS_PAGE_SIZE) break;
  }
  return { records, envelope: { last_page: true } };
}

/**
 * Where Deskie tells the total up front, a merge that needs more than
 * `maxPages` is refused after its first page, and the pages still to come are
 * reserved at once (so the budget refuses or waits now, not halfway through).
 */
async function checkTotal(totalCount: unknown, pageSize: number, maxPages: number, reservePages: PageReserver): Promise<void> {
  const total = typeof totalCount === 'string' && /^\d{1,12}$/.test(totalCount) ? Number(totalCount) : totalCount;
  if (typeof total !== 'number' || !Number.isFinite(total) || total < 0) return;
  const pages = Math.max(1, Math.ceil(total / pageSize));
  if (pages > maxPages) throw tooManyPages(maxPages);
  await reservePages(pages - 1);
}

/** A page's records in key order ("0", "1", ...). */
function pageRecords(body: JsonObject): unknown[] {
  return Object.keys(body)
    .filter(isRecordKey)
    .sort((a, b) => Number(a) - Number(b))
    .map((key) => body[key]);
}
