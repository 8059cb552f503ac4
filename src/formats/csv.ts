import type { JsonObject } from '../deskie/fields.js';

/** Cells that a spreadsheet could run as a formula (OWASP "CSV injection"). */
const FORMULA_START = /^[=+@\t\r-]/;
/** What starts with "-" and is still safe: a lone dash (Deskie's "no data") or a plain negative number. */
const SAFE_DASH = /^-$|^-\d+(\.\d+)?$/;
const NEEDS_QUOTES = /[",\r\n]|^\s|\s$/;

/** RFC 4180, CRLF, a header of fields in first-seen order, null as empty; a formula-like text cell gets a leading '. */
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
