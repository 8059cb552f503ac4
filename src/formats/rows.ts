import type { EndpointName } from '../deskie/endpoints.js';
import { isRecordKey, type JsonObject, RECORD_SCHEMAS, recordFields } from '../deskie/fields.js';

export type RowsWindow = Readonly<Record<'from' | 'to' | 'timezone', string>>;

export interface RowsDocument {
  readonly rows: JsonObject[];
  readonly last_page: unknown;
  readonly total_count: unknown;
  readonly window: RowsWindow;
}

/** A staff status as Deskie writes it: a name and its numeric id, "Online (1)". */
const STATUS = /^(.*) \((\d+)\)$/;

/** Rows, in Deskie's order: a leaderboard's `staff`, a status change plus each status's name and id, a rating as is. */
export function toRows(endpoint: EndpointName, normalized: JsonObject, window: RowsWindow): RowsDocument {
  const schema = RECORD_SCHEMAS[endpoint];
  const rows: JsonObject[] = [];
  for (const [key, record] of Object.entries(normalized)) {
    if (!isRecordKey(key)) continue;
    const fields = recordFields(schema, record);
    if (fields === null) continue;
    // Fields beside the wrapper (none in Deskie's reference) are kept in the row too.
    const outer = schema.wrapper === null ? {} : Object.fromEntries(Object.entries(record as JsonObject).filter(([name]) => name !== schema.wrapper));
    const row = { ...outer, ...fields };
    rows.push(endpoint === 'staff_statuses' ? withStatusParts(row) : row);
  }
  return { rows, last_page: normalized['last_page'] ?? null, total_count: normalized['total_count'] ?? null, window };
}

function withStatusParts(change: JsonObject): JsonObject {
  const row: JsonObject = { ...change };
  for (const side of ['from', 'to'] as const) {
    const match = typeof change[side] === 'string' ? STATUS.exec(change[side]) : null;
    row[`${side}_name`] = match ? match[1] : (change[side] ?? null);
    row[`${side}_id`] = match ? Number(match[2]) : null;
  }
  return row;
}
