import { badRequest } from '../http/errors.js';

/** The answers one cached entry can give, chosen with `format=`. */
export const FORMATS = ['normalized', 'raw', 'rows', 'csv'] as const;
export type Format = (typeof FORMATS)[number];
export const DEFAULT_FORMAT: Format = 'normalized';

const FORMAT_SET: ReadonlySet<string> = new Set(FORMATS);
export const isFormat = (value: string): value is Format => FORMAT_SET.has(value);

export const FORMAT_PARAMETER = 'format';
export const BOM_PARAMETER = 'bom';

/** Parameters that steer this proxy only: never sent upstream, never part of the key. */
export const PROXY_PARAMETERS: ReadonlySet<string> = new Set([FORMAT_PARAMETER, BOM_PARAMETER]);

const BOM_OFF = '0';
const BOM_ON = '1';
/** The values `bom=` takes (for the API description): without the mark, with it. */
export const BOM_VALUES = [BOM_OFF, BOM_ON] as const;

export function wantsBom(parameter: string | undefined): boolean {
  if (parameter === undefined || parameter === BOM_OFF) return false;
  if (parameter === BOM_ON) return true;
  throw badRequest(`bom must be ${BOM_ON} or ${BOM_OFF}; got ${JSON.stringify(parameter)}`);
}

/** `format=` when given, else CSV when Accept prefers it to JSON (a spreadsheet's import), else normalized JSON. */
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

/** The one JSON content type this server writes. */
export const JSON_TYPE = 'application/json; charset=utf-8';
export const CSV_TYPE = 'text/csv; charset=utf-8; header=present';

/** Content codings an answer is kept and sent in (RFC 9110 §8.4.1); identity is the body as rendered. */
export const CODINGS = ['identity', 'gzip', 'br'] as const;
export type Coding = (typeof CODINGS)[number];

/** What one request asks of an entry, as a small integer: a format (CSV with or without its BOM) in one content coding. */
export type Variant = number;
const RENDERINGS = [...FORMATS, 'csv+bom'] as const;
export type Rendering = (typeof RENDERINGS)[number];

export function variantOf(format: Format, bom: boolean, coding: Coding): Variant {
  const rendering = bom && format === 'csv' ? RENDERINGS.length - 1 : FORMATS.indexOf(format);
  return rendering * CODINGS.length + CODINGS.indexOf(coding);
}

export function describeVariant(variant: Variant): { readonly rendering: Rendering; readonly coding: Coding } {
  const rendering = RENDERINGS[Math.floor(variant / CODINGS.length)];
  const coding = CODINGS[variant % CODINGS.length];
  if (rendering === undefined || coding === undefined) throw new RangeError(`no variant ${variant}`);
  return { rendering, coding };
}

/** RFC 9110 §12.5.3: br or gzip by q (br on a tie: smaller), else identity even if refused (all read it; no 406). */
export function chooseCoding(acceptEncoding: string | undefined): Coding {
  if (acceptEncoding === undefined || acceptEncoding === '') return 'identity';
  const q: Partial<Record<string, number>> = {};
  for (const item of acceptEncoding.split(',')) {
    const [name = '', ...params] = item.trim().toLowerCase().split(';');
    const weight = params.map((p) => p.trim()).find((p) => p.startsWith('q='));
    q[name.trim()] = weight === undefined ? 1 : Number(weight.slice(2)) || 0;
  }
  const weightOf = (coding: string, alias?: string): number => q[coding] ?? (alias === undefined ? undefined : q[alias]) ?? q['*'] ?? 0;
  const br = weightOf('br');
  const gzip = weightOf('gzip', 'x-gzip');
  if (br > 0 && br >= gzip) return 'br';
  return gzip > 0 ? 'gzip' : 'identity';
}
