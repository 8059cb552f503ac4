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
 * Merges every page into one body shaped like a single page: records renumbered "0", "1", ..., then `last_page: true`
 * or `total_count`. One page after another, so `page=all` never bursts against the rate limit; past `maxPages` it throws.
 */
export async function fetchAllPages(
  endpoint: EndpointSpec,
  pageBase: QueryPairs,
  maxPages: number,
  fetchPage: PageFetcher,
  reservePages: PageReserver = NOTHING_TO_RESERVE,
): Promise<DeskiePage> {
  const { records, envelope } =
    endpoint.pagination === 'total_count'
      ? await allRatings(pageBase, maxPages, fetchPage, reservePages)
      : await allStatusChanges(pageBase, maxPages, fetchPage, reservePages);
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
 * Satisfaction pages are read oldest first, whatever order was asked: a rating
 * added while paging lands at the end instead of shifting later pages (which
 * would repeat one record and lose another). Read until a short page or
 * `total_count`; a rating seen twice is kept once.
 */
async function allRatings(pageBase: QueryPairs, maxPages: number, fetchPage: PageFetcher, reservePages: PageReserver): Promise<Merged> {
  const newestFirst = !pageBase.some(([name, value]) => name === 'sort' && value === 'added_at_asc');
  const base: QueryPairs = [
    ...pageBase.filter(([name]) => name !== 'sort'),
    ['sort', 'added_at_asc'],
    ['limit', String(SATISFACTION_MAX_LIMIT)],
  ];
  const records: unknown[] = [];
  const seen = new Set<unknown>();
  let total: number | undefined;
  for (let page = 1; ; page++) {
    if (page > maxPages) throw tooManyPages(maxPages);
    const body = asObject((await fetchPage(canonicalQueryString([...base, ['page', String(page)]]))).parsed);
    total = totalOf(body) ?? total;
    if (page === 1) await checkTotal(total, SATISFACTION_MAX_LIMIT, maxPages, reservePages);
    const onPage = pageRecords(body);
    for (const record of onPage) {
      const id = asObject(record)['rating_id'];
      if (id !== undefined && seen.has(id)) continue;
      if (id !== undefined) seen.add(id);
      records.push(record);
    }
    if (onPage.length < SATISFACTION_MAX_LIMIT || (total !== undefined && records.length >= total)) break;
  }
  if (newestFirst) records.reverse();
  return { records, envelope: { total_count: Math.max(total ?? 0, records.length) } };
}

/**
 * Staff-status pages (oldest first) are followed until `last_page: true`, or
 * while full when `last_page` is missing, or up to `total_count` when sent. A
 * change seen twice (same staff, time and statuses) is kept once.
 */
async function allStatusChanges(pageBase: QueryPairs, maxPages: number, fetchPage: PageFetcher, reservePages: PageReserver): Promise<Merged> {
  const records: unknown[] = [];
  const seen = new Set<string>();
  let total: number | undefined;
  for (let page = 1; ; page++) {
    if (page > maxPages) throw tooManyPages(maxPages);
    const body = asObject((await fetchPage(canonicalQueryString([...pageBase, ['page', String(page)]]))).parsed);
    total = totalOf(body) ?? total;
    if (page === 1) await checkTotal(total, STAFF_STATUS_PAGE_SIZE, maxPages, reservePages);
    const onPage = pageRecords(body);
    for (const record of onPage) {
      const identity = statusChangeIdentity(record);
      if (identity !== undefined && seen.has(identity)) continue;
      if (identity !== undefined) seen.add(identity);
      records.push(record);
    }
    const lastPage = body['last_page'];
    if (lastPage === true || onPage.length === 0 || (total !== undefined && records.length >= total)) break;
    if (lastPage !== false && onPage.length < STAFF_STATUS_PAGE_SIZE) break;
  }
  return { records, envelope: { last_page: true } };
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
