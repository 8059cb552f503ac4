import { type EndpointSpec, SATISFACTION_MAX_LIMIT } from '../deskie/endpoints.js';
import { isRecordKey, type JsonObject } from '../deskie/fields.js';
import { tooManyPages } from '../errors.js';

/** One page of a Deskie answer: a 200 whose body parsed as JSON. */
export interface DeskiePage {
  readonly body: Buffer;
  readonly contentType: string | undefined;
  readonly parsed: unknown;
}

export type PageFetcher = (query: string) => Promise<DeskiePage>;

/**
 * Fetches every page of a period and merges them into one body shaped like a
 * single Deskie page: records renumbered "0", "1", ... in Deskie's order, then
 * `last_page: true` (staff statuses) or Deskie's `total_count` (satisfaction).
 * Pages are fetched one after another, so `page=all` never bursts against the
 * account's rate limit. Past `maxPages` it throws before storing anything.
 */
export async function fetchAllPages(
  endpoint: EndpointSpec,
  baseQuery: string,
  maxPages: number,
  fetchPage: PageFetcher,
): Promise<DeskiePage> {
  const records: unknown[] = [];
  const envelope: JsonObject = {};

  if (endpoint.pagination === 'total_count') {
    const pageQuery = (page: number) => `${baseQuery}&limit=${SATISFACTION_MAX_LIMIT}&page=${page}`;
    const first = await fetchPage(pageQuery(1));
    collectRecords(first.parsed, records);
    const total = Number(asObject(first.parsed)['total_count']);
    const pages = Number.isFinite(total) ? Math.max(1, Math.ceil(total / SATISFACTION_MAX_LIMIT)) : 1;
    if (pages > maxPages) throw tooManyPages(maxPages);
    for (let page = 2; page <= pages; page++) collectRecords((await fetchPage(pageQuery(page))).parsed, records);
    envelope['total_count'] = asObject(first.parsed)['total_count'];
  } else {
    for (let page = 1; ; page++) {
      if (page > maxPages) throw tooManyPages(maxPages);
      const { parsed } = await fetchPage(`${baseQuery}&page=${page}`);
      const added = collectRecords(parsed, records);
      // Only an explicit last_page: false with records on it promises another page.
      if (asObject(parsed)['last_page'] !== false || added === 0) break;
    }
    envelope['last_page'] = true;
  }

  const merged: JsonObject = {};
  records.forEach((record, index) => (merged[String(index)] = record));
  Object.assign(merged, envelope);
  return { body: Buffer.from(JSON.stringify(merged)), contentType: undefined, parsed: merged };
}

const asObject = (value: unknown): JsonObject =>
  typeof value === 'object' && value !== null && !Array.isArray(value) ? (value as JsonObject) : {};

/** Appends a page's records in key order and returns how many there were. */
function collectRecords(parsed: unknown, into: unknown[]): number {
  const page = asObject(parsed);
  const keys = Object.keys(page).filter(isRecordKey);
  // Integer-like keys already iterate in ascending order; sorting states the intent.
  keys.sort((a, b) => Number(a) - Number(b));
  for (const key of keys) into.push(page[key]);
  return keys.length;
}
