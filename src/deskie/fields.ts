import { DateTime } from 'luxon';
import type { EndpointName } from './endpoints.js';

/**
 * How each field of Deskie's records is cleaned up, by this schema, never by a value's look ("42" as a comment stays
 * text): `number`, `percent` ("21.9%") become numbers, "-" null; `date` (RFC 2822) ISO 8601; others as sent.
 */
export type FieldKind = 'number' | 'percent' | 'date' | 'text' | 'id';

export interface RecordSchema {
  /** The object inside each record that holds the fields (`staff`, `status_change`), or null for flat records. */
  readonly wrapper: string | null;
  readonly fields: Readonly<Record<string, FieldKind>>;
}

export const RECORD_SCHEMAS: Readonly<Record<EndpointName, RecordSchema>> = {
  leaderboard: {
    wrapper: 'staff',
    fields: {
      staff_id: 'id',
      staff_name: 'text',
      new_cases_in_total: 'number',
      new_user_cases: 'number',
      reopened_cases: 'number',
      cases_being_handled: 'number',
      cases_with_a_response: 'number',
      first_response_time: 'number',
      first_response_sla_violated: 'percent',
      response_time: 'number',
      response_sla_violated: 'percent',
      response_writing_time: 'number',
      total_number_of_responses: 'number',
      total_number_of_notes: 'number',
      number_of_responses_for_resolution: 'number',
      closed_cases: 'number',
      resolution_time: 'number',
      resolution_sla_violated: 'percent',
      ratings_of_responses: 'percent',
    },
  },
  staff_statuses: {
    wrapper: 'status_change',
    fields: { staff_id: 'id', timestamp: 'number', from: 'text', to: 'text' },
  },
  satisfaction: {
    wrapper: null,
    fields: {
      rating_id: 'id',
      rating: 'number',
      rating_comment: 'text',
      rated_staff_id: 'id',
      case_id: 'id',
      case_number: 'text',
      user_id: 'id',
      staff_id: 'id',
      group_id: 'id',
      created_at: 'date',
      updated_at: 'date',
    },
  },
};

/** Deskie's "no data" marker in numeric columns. */
const NO_DATA = '-';
const DECIMAL = /^-?\d+(\.\d+)?$/;
const PERCENT = /^(-?\d+(?:\.\d+)?)\s?%$/;

export function normalizeValue(kind: FieldKind, value: unknown): unknown {
  if (typeof value !== 'string') return value;
  switch (kind) {
    case 'number':
      if (value === NO_DATA) return null;
      return DECIMAL.test(value) ? Number(value) : value;
    case 'percent': {
      if (value === NO_DATA) return null;
      const match = PERCENT.exec(value);
      return match ? Number(match[1]) : value;
    }
    case 'date': {
      const date = DateTime.fromRFC2822(value, { setZone: true });
      return date.isValid ? date.toISO({ suppressMilliseconds: true }) : value;
    }
    case 'text':
    case 'id':
      return value;
  }
}

export type JsonObject = Record<string, unknown>;

const isObject = (value: unknown): value is JsonObject => typeof value === 'object' && value !== null && !Array.isArray(value);

/** A JSON value as an object, or an empty one when it is anything else. */
export const asObject = (value: unknown): JsonObject => (isObject(value) ? value : {});

/** Deskie's records sit under "0", "1", ... beside envelope keys such as last_page and total_count. */
export const isRecordKey = (key: string): boolean => /^\d+$/.test(key);

/** The fields object of one record (inside its wrapper), or null when the record is not shaped as expected. */
export function recordFields(schema: RecordSchema, record: unknown): JsonObject | null {
  if (!isObject(record)) return null;
  if (schema.wrapper === null) return record;
  const inner = record[schema.wrapper];
  return isObject(inner) ? inner : null;
}

/** Normalizes every record of a Deskie body, keeping its envelope (keys, last_page, total_count) as it was. */
export function normalizeBody(endpoint: EndpointName, body: unknown): unknown {
  if (!isObject(body)) return body;
  const schema = RECORD_SCHEMAS[endpoint];
  // Object.fromEntries defines own properties: a field named "__proto__" stays data, not a prototype.
  return Object.fromEntries(
    Object.entries(body).map(([key, record]) => {
      const fields = isRecordKey(key) ? recordFields(schema, record) : null;
      if (fields === null) return [key, record];
      const cleaned = Object.fromEntries(
        Object.entries(fields).map(([name, value]) => {
          const kind = schema.fields[name];
          return [name, kind === undefined ? value : normalizeValue(kind, value)];
        }),
      );
      return [key, schema.wrapper === null ? cleaned : { ...(record as JsonObject), [schema.wrapper]: cleaned }];
    }),
  );
}
