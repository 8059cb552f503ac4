import type { JsonObject } from '../deskie/fields.js';

/** Cells that a spreadsheet could run as a formula (OWASP "CSV injection"). */
const FORMULA_START = /^[=+@\t\r-]/;
/** What starts with "-" and is still safe: a lone dash (Deskie's "no data") or a plain negative number. */
const SAFE_DASH = /^-$|^-\d+(\.\d+)?$/;
const NEEDS_QUOTES = /[",\r\n]|^\s|\s$/;

/**
 * RFC 4180 CSV with a header row: the union of the rows' fields in the order they first appear, CRLF line ends, null
 * as an empty cell. A text cell a spreadsheet could run as a formula is prefixed with a single quote.
 */
export function toCsv(rows: readonly JsonObject[]): string {
  const columns = [...new Set(rows.flatMap((row) => Object.keys(row)))];
  const lines = [columns.map(cell).join(',')];
  for (const row of rows) lines.push(columns.map((name) => cell(row[name])).join(','));
  return `${lines.join('\r\n')}\r\n`;
}

function cell(value: unknown): string {
  if (value === null || value === undefined) return '';
  let text = typeof value === 'string' ? value : typeof value === 'object' ? JSON.stringify(value) : String(value);
  if (typeof value === 'string' && FORMULA_START.test(text) && !SAFE_DASH.test(text)) text = `'${text}`;
  return NEEDS_QUOTES.test(text) ? `"${text.replaceAll('"', '""')}"` : text;
}
