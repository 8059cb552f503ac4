import { type EndpointSpec, SATISFACTION_MAX_LIMIT, STAFF_STATUS_PAGE_SIZE } from '../deskie/endpoints.js';
import { asObject, isRecordKey, type JsonObject } from '../deskie/fields.js';
import { canonicalQueryString, type QueryPairs } from '../deskie/query.js';
import { tooManyPages } from '../http/errors.js';

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
 * One body shaped like one page: records renumbered "0", "1", ..., then `last_page: true` or `total_count`; a record
 * seen twice (data moved) kept once. Pages in turn, so page=all never bursts the rate limit; past `maxPages` it throws.
 */
export async function fetchAllPages(
  endpoint: EndpointSpec,
  pageBase: QueryPairs,
  maxPages: number,
  fetchPage: PageFetcher,
  reservePages: PageReserver = NOTHING_TO_RESERVE,
): Promise<DeskiePage> {
  const paging = endpoint.pagination === 'total_count' ? ratingPaging(pageBase) : statusChangePaging(pageBase);
  const records: unknown[] = [];
  const seen = new Set<unknown>();
  let total: number | undefined;
  for (let page = 1; ; page++) {
    if (page > maxPages) throw tooManyPages(maxPages);
    const body = asObject((await fetchPage(canonicalQueryString([...paging.base, ['page', String(page)]]))).parsed);
    total = totalOf(body) ?? total;
    if (page === 1) await checkTotal(total, paging.pageSize, maxPages, reservePages);
    const onPage = pageRecords(body);
    for (const record of onPage) {
      const identity = paging.identity(record);
      if (identity !== undefined && seen.has(identity)) continue;
      if (identity !== undefined) seen.add(identity);
      records.push(record);
    }
    if (paging.isLastPage(body, onPage.length) || (total !== undefined && records.length >= total)) break;
  }
  const envelope = paging.finish(records, total);
  const merged: JsonObject = {};
  records.forEach((record, index) => (merged[String(index)] = record));
  Object.assign(merged, envelope);
  return { body: Buffer.from(JSON.stringify(merged)), contentType: undefined, parsed: merged };
}

/** How an endpoint is paged: its query, page size, a record's identity, its last page, and the merged envelope. */
interface Paging {
  readonly base: QueryPairs;
  readonly pageSize: number;
  readonly identity: (record: unknown) => unknown;
  readonly isLastPage: (body: JsonObject, onPage: number) => boolean;
  readonly finish: (records: unknown[], total: number | undefined) => JsonObject;
}

/** Read oldest first: a rating added mid-paging lands last instead of shifting pages (which repeats one, loses one). */
function ratingPaging(pageBase: QueryPairs): Paging {
  const newestFirst = !pageBase.some(([name, value]) => name === 'sort' && value === 'added_at_asc');
  return {
    base: [
      ...pageBase.filter(([name]) => name !== 'sort'),
      ['sort', 'added_at_asc'],
      ['limit', String(SATISFACTION_MAX_LIMIT)],
    ],
    pageSize: SATISFACTION_MAX_LIMIT,
    identity: (record) => asObject(record)['rating_id'],
    isLastPage: (_body, onPage) => onPage < SATISFACTION_MAX_LIMIT,
    finish: (records, total) => {
      if (newestFirst) records.reverse();
      return { total_count: Math.max(total ?? 0, records.length) };
    },
  };
}

/** Staff-status pages (oldest first) are followed until `last_page: true`, or while full when it is missing. */
function statusChangePaging(pageBase: QueryPairs): Paging {
  return {
    base: pageBase,
    pageSize: STAFF_STATUS_PAGE_SIZE,
    identity: statusChangeIdentity,
    isLastPage: (body, onPage) =>
      body['last_page'] === true || onPage === 0 || (body['last_page'] !== false && onPage < STAFF_STATUS_PAGE_SIZE),
    finish: () => ({ last_page: true }),
  };
}

/** What makes a status change itself: who, when, from and to. */
function statusChangeIdentity(record: unknown): string | undefined {
  const change = asObject(asObject(record)['status_change']);
  const { staff_id: staffId, timestamp, from, to } = change;
  if (staffId === undefined || timestamp === undefined) return undefined;
  return JSON.stringify([staffId, timestamp, from, to]);
}

/** Deskie's `total_count` as a number, when it sends a usable one. */
function totalOf(body: JsonObject): number | undefined {
  const value = body['total_count'];
  const total = typeof value === 'string' && /^\d{1,12}$/.test(value) ? Number(value) : value;
  return typeof total === 'number' && Number.isFinite(total) && total >= 0 ? total : undefined;
}

/** With Deskie's total after the first page: refuses a merge past `maxPages`, and reserves the pages still to come. */
async function checkTotal(total: number | undefined, pageSize: number, maxPages: number, reservePages: PageReserver): Promise<void> {
  if (total === undefined) return;
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
