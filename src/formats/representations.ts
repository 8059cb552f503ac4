import { createHash } from 'node:crypto';
import type { EndpointName } from '../deskie/endpoints.js';
import { asObject, normalizeBody } from '../deskie/fields.js';
import { badRequest } from '../errors.js';
import { toCsv } from './csv.js';
import { type RowsWindow, toRows } from './rows.js';

/** The answers one cached entry can give, chosen with `format=`. */
export const FORMATS = ['normalized', 'raw', 'rows', 'csv'] as const;
export type Format = (typeof FORMATS)[number];
export const DEFAULT_FORMAT: Format = 'normalized';

const FORMAT_SET: ReadonlySet<string> = new Set(FORMATS);
export const isFormat = (value: string): value is Format => FORMAT_SET.has(value);

/** The proxy-only query parameter that picks a format. */
export const FORMAT_PARAMETER = 'format';
/** The proxy-only query parameter that asks for a UTF-8 byte order mark before CSV. */
export const BOM_PARAMETER = 'bom';

const UTF8_BOM = Buffer.from([0xef, 0xbb, 0xbf]);

/** `bom=1` asks for the mark, `bom=0` (or none) not. */
export function wantsBom(parameter: string | undefined): boolean {
  if (parameter === undefined || parameter === '0') return false;
  if (parameter === '1') return true;
  throw badRequest(`bom must be 1 or 0; got ${JSON.stringify(parameter)}`);
}

/**
 * CSV with a UTF-8 byte order mark, so that Excel opening the file reads
 * Cyrillic names as UTF-8; other tools do without it, so it is asked for.
 * Its bytes differ, so its ETag does too.
 */
export function withBom(csv: Representation): Representation {
  return { body: Buffer.concat([UTF8_BOM, csv.body]), contentType: csv.contentType, etag: `${csv.etag.slice(0, -1)}-bom"` };
}

/**
 * The format asked for: `format=` when given, else `text/csv` when the client
 * accepts CSV and not JSON (a spreadsheet's import), else normalized JSON.
 */
export function chooseFormat(parameter: string | undefined, accept: string | undefined): Format {
  if (parameter !== undefined) {
    if (isFormat(parameter)) return parameter;
    throw badRequest(`format must be one of ${FORMATS.join(', ')}; got ${JSON.stringify(parameter)}`);
  }
  if (accept !== undefined && accept.includes('text/csv') && quality(accept, 'text/csv') > quality(accept, 'application/json')) return 'csv';
  return DEFAULT_FORMAT;
}

/** The q-value an Accept header gives a media type (RFC 9110 §12.5.1): exact type, then type/*, then *\/*, else 0. */
function quality(accept: string, mediaType: string): number {
  const [type] = mediaType.split('/');
  let best = -1;
  let result = 0;
  for (const range of accept.split(',')) {
    const [name = '', ...params] = range.trim().toLowerCase().split(';');
    const specificity = name === mediaType ? 3 : name === `${type}/*` ? 2 : name === '*/*' ? 1 : 0;
    if (specificity <= best || specificity === 0) continue;
    const q = params.map((p) => p.trim()).find((p) => p.startsWith('q='));
    best = specificity;
    result = q === undefined ? 1 : Number(q.slice(2)) || 0;
  }
  return result;
}

export interface Representation {
  readonly body: Buffer;
  readonly contentType: string;
  /** Strong validator, distinct per entry (URL and credential), format and bytes. */
  readonly etag: string;
}

/** The one JSON content type this server writes. */
export const JSON_TYPE = 'application/json; charset=utf-8';
const CSV_TYPE = 'text/csv; charset=utf-8; header=present';

/**
 * Renders every format of one Deskie answer once, when it is fetched, so that
 * a hit only picks bytes: no parsing or serialising per request. ETags hash
 * the entry's key (URL and credential), the format and the bytes: a tag from
 * one URL or credential never matches another's, and a refetch that brings
 * the same bytes keeps its tag, so a dashboard still gets its 304.
 */
export function renderRepresentations(
  endpoint: EndpointName,
  rawBody: Buffer,
  rawContentType: string | undefined,
  parsed: unknown,
  window: RowsWindow,
  entryTag: string,
): Readonly<Record<Format, Representation>> {
  const normalized = normalizeBody(endpoint, parsed);
  const rows = toRows(endpoint, asObject(normalized), window);
  const bodies: Record<Format, [Buffer, string]> = {
    raw: [rawBody, rawContentType ?? JSON_TYPE],
    normalized: [Buffer.from(JSON.stringify(normalized)), JSON_TYPE],
    rows: [Buffer.from(JSON.stringify(rows)), JSON_TYPE],
    csv: [Buffer.from(toCsv(rows.rows)), CSV_TYPE],
  };
  // All formats share one unpooled allocation sized to fit. Small Buffers come
  // from Node's shared 8 KiB pool, and a cached slice would keep its whole slab
  // alive: the cache would hold several times the bytes it counts.
  const packed = Buffer.allocUnsafeSlow(FORMATS.reduce((total, format) => total + bodies[format][0].length, 0));
  let offset = 0;
  const representations = {} as Record<Format, Representation>;
  for (const format of FORMATS) {
    const [source, contentType] = bodies[format];
    const body = packed.subarray(offset, offset + source.length);
    offset += source.copy(packed, offset);
    const digest = createHash('sha256').update(entryTag).update('\0').update(format).update('\0').update(body).digest('base64url');
    representations[format] = { body, contentType, etag: `"${digest.slice(0, 27)}"` };
  }
  return representations;
}
