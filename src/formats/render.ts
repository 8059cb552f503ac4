import { createHash } from 'node:crypto';
import { basename } from 'node:path/posix';
import { brotliCompressSync, constants as zlib, gunzipSync, gzipSync } from 'node:zlib';
import { DateTime } from 'luxon';
import { type EndpointName, ENDPOINTS } from '../deskie/endpoints.js';
import { asObject, normalizeBody } from '../deskie/fields.js';
import { toCsv } from './csv.js';
import { type Coding, CSV_TYPE, describeVariant, JSON_TYPE, type Rendering, type Variant } from './representations.js';
import { toRows } from './rows.js';

/** One answer as it is sent: bytes, their type and coding, and a strong validator. */
export interface Representation {
  readonly variant: Variant;
  readonly body: Buffer;
  readonly contentType: string;
  readonly contentEncoding: 'gzip' | 'br' | undefined;
  /** Content-Disposition to send (CSV is a file to save), or undefined. */
  readonly contentDisposition: string | undefined;
  /** Strong validator, distinct per entry (URL and credential), variant and bytes. */
  readonly etag: string;
}

/** The window an answer covers, as instants and a zone name: the `rows` format states it. */
export interface SourceWindow {
  readonly fromMs: number;
  readonly toMs: number;
  readonly zone: string;
}

/** What an entry keeps to render any format: Deskie's body gzipped (a gzip client asking for `raw` gets these very bytes), and what the formats need. */
export interface AnswerSource extends SourceWindow {
  readonly gzipped: Buffer;
  readonly contentType: string;
  readonly endpoint: EndpointName;
}

const UTF8_BOM = Buffer.from([0xef, 0xbb, 0xbf]);

/** CSV is saved as a file named after Deskie's endpoint (`stats_leaderboard.csv`, RFC 6266), whatever the period. */
const CSV_DISPOSITION: Readonly<Record<EndpointName, string>> = Object.fromEntries(
  Object.values(ENDPOINTS).map((endpoint) => [endpoint.name, `attachment; filename="${basename(endpoint.path, '.json')}.csv"`]),
) as Record<EndpointName, string>;
/** About gzip's speed and a little smaller; Brotli's default (11) is far slower. */
const BROTLI_QUALITY = 5;

// A small Buffer slices Node's pool or a zlib chunk: a cached slice would pin the slab, beyond what the store counts.
function ownBytes(parts: readonly Buffer[]): Buffer[] {
  const packed = Buffer.allocUnsafeSlow(parts.reduce((total, part) => total + part.length, 0));
  let offset = 0;
  return parts.map((part) => {
    const start = offset;
    offset += part.copy(packed, offset);
    return packed.subarray(start, offset);
  });
}

/** An entry's source: Deskie's body, compressed into bytes not yet owned (see withOwnedBytes). */
export function answerSource(endpoint: EndpointName, body: Buffer, contentType: string | undefined, window: SourceWindow): AnswerSource {
  return { gzipped: gzipSync(body), contentType: contentType ?? JSON_TYPE, endpoint, ...window };
}

/** A representation rendered for a stored entry, with bytes of its own (or the source's very bytes). */
export function ownedBy(source: AnswerSource, representation: Representation): Representation {
  if (representation.body === source.gzipped) return representation;
  const [body = representation.body] = ownBytes([representation.body]);
  return { ...representation, body };
}

/** The source and representations with their bytes copied into one allocation of their own. */
export function withOwnedBytes(
  source: AnswerSource,
  representations: readonly Representation[],
): { source: AnswerSource; representations: Representation[] } {
  const [gzipped = source.gzipped, ...bodies] = ownBytes([source.gzipped, ...representations.map((r) => r.body)]);
  return {
    source: { ...source, gzipped },
    representations: representations.map((r, i) => ({ ...r, body: r.body === source.gzipped ? gzipped : (bodies[i] ?? r.body) })),
  };
}

/** Coded only if smaller; bytes not owned yet. ETag hashes entry key, variant, bytes: per URL, credential, coding. */
export function renderVariant(source: AnswerSource, entryTag: string, variant: Variant, parsed?: unknown): Representation {
  const { rendering, coding } = describeVariant(variant);
  if (rendering === 'raw' && coding === 'gzip') return represent(source.gzipped, source.contentType, 'gzip', undefined, entryTag, variant);
  const [identity, contentType] = renderIdentity(source, rendering, parsed);
  const disposition = rendering === 'csv' || rendering === 'csv+bom' ? CSV_DISPOSITION[source.endpoint] : undefined;
  const coded = encode(identity, coding);
  return coded.length < identity.length
    ? represent(coded, contentType, coding === 'identity' ? undefined : coding, disposition, entryTag, variant)
    : represent(identity, contentType, undefined, disposition, entryTag, variant);
}

function renderIdentity(source: AnswerSource, rendering: Rendering, parsed: unknown): [Buffer, string] {
  const raw = (): Buffer => gunzipSync(source.gzipped);
  if (rendering === 'raw') return [raw(), source.contentType];
  const normalized = normalizeBody(source.endpoint, parsed ?? JSON.parse(raw().toString('utf8')));
  if (rendering === 'normalized') return [Buffer.from(JSON.stringify(normalized)), JSON_TYPE];
  const iso = (ms: number): string => DateTime.fromMillis(ms, { zone: source.zone }).toISO() ?? '';
  const rows = toRows(source.endpoint, asObject(normalized), { from: iso(source.fromMs), to: iso(source.toMs), timezone: source.zone });
  if (rendering === 'rows') return [Buffer.from(JSON.stringify(rows)), JSON_TYPE];
  const csv = Buffer.from(toCsv(rows.rows));
  return [rendering === 'csv' ? csv : Buffer.concat([UTF8_BOM, csv]), CSV_TYPE];
}

function encode(identity: Buffer, coding: Coding): Buffer {
  if (coding === 'gzip') return gzipSync(identity);
  if (coding === 'br') {
    return brotliCompressSync(identity, {
      params: { [zlib.BROTLI_PARAM_QUALITY]: BROTLI_QUALITY, [zlib.BROTLI_PARAM_SIZE_HINT]: identity.length },
    });
  }
  return identity;
}

function represent(
  body: Buffer,
  contentType: string,
  contentEncoding: Representation['contentEncoding'],
  contentDisposition: string | undefined,
  entryTag: string,
  variant: Variant,
): Representation {
  const digest = createHash('sha256').update(entryTag).update('\0').update(String(variant)).update('\0').update(body).digest('base64url');
  return { variant, body, contentType, contentEncoding, contentDisposition, etag: `"${digest.slice(0, 27)}"` };
}
