// The three statistics endpoints: the window each accepts and how each turns a validated query into a body.
import type { DateTime } from 'luxon';
import {
  SATISFACTION_SORTS,
  createRng,
  leaderboardBody,
  satisfactionBody,
  satisfactionRatings,
  seedFor,
  staffStatusChanges,
  staffStatusesBody,
  type Rng,
  type SatisfactionSort,
} from './data.js';
import type { SimulatorKnobs } from './knobs.js';
import { BadRequestError, positiveIntegerParam, resolveWindow, SATISFACTION_MAX_LIMIT, type TimeWindow } from './params.js';

/** The knobs that shape the data rather than the answer. */
export type DataKnobs = Pick<SimulatorKnobs, 'staffStatusChanges'>;

/** What the simulator answers; the server adds content type and rate-limit headers. */
export interface SimulatorReply {
  readonly statusCode: number;
  readonly body: string;
  readonly headers?: Readonly<Record<string, string>>;
}

export interface Endpoint {
  readonly path: string;
  /** Longest custom period Deskie accepts here (deskie-api-stats.txt, "Time period"). */
  readonly maxRangeMonths: number;
  render(query: URLSearchParams, rng: Rng, window: TimeWindow, data: DataKnobs): string;
}

const ENDPOINTS: ReadonlyArray<Endpoint> = [
  {
    path: '/api/stats_leaderboard.json',
    maxRangeMonths: 3,
    render: (_query, rng) => leaderboardBody(rng),
  },
  {
    path: '/api/stats_staff_statuses.json',
    maxRangeMonths: 1,
    render: (query, rng, window, data) =>
      staffStatusesBody(staffStatusChanges(rng, window, data.staffStatusChanges), positiveIntegerParam(query, 'page', 1)),
  },
  {
    path: '/api/stats_satisfaction.json',
    maxRangeMonths: 3,
    render: (query, rng, window) =>
      satisfactionBody(satisfactionRatings(rng, window), {
        page: positiveIntegerParam(query, 'page', 1),
        limit: positiveIntegerParam(query, 'limit', SATISFACTION_MAX_LIMIT, SATISFACTION_MAX_LIMIT),
        sort: sortParam(query),
      }),
  },
];


/** The simulator's one error shape: Deskie's error body is unknown (deskie-api-notes.md, "Errors"). */
export function errorReply(statusCode: number, message: string, headers?: Record<string, string>): SimulatorReply {
  return { statusCode, body: JSON.stringify({ status: 'error', error: message }), ...(headers && { headers }) };
}

export function findEndpoint(path: string): Endpoint | undefined {
  return ENDPOINTS.find((endpoint) => endpoint.path === path);
}

/** The answer for an authenticated GET on a stats endpoint; `data.generation` picks the numbers (seedFor). */
export function answerStats(endpoint: Endpoint, query: URLSearchParams, now: DateTime, data: DataKnobs & { generation: number }): SimulatorReply {
  try {
    const window = resolveWindow(query, endpoint.maxRangeMonths, now);
    const rng = createRng(seedFor(endpoint.path, query, data.generation));
    return { statusCode: 200, body: endpoint.render(query, rng, window, data) };
  } catch (error) {
    if (error instanceof BadRequestError) return errorReply(400, error.message);
    throw error;
  }
}

function sortParam(query: URLSearchParams): SatisfactionSort {
  const sort = query.get('sort') ?? 'added_at_desc';
  if (!(SATISFACTION_SORTS as readonly string[]).includes(sort)) throw new BadRequestError(`sort must be one of ${SATISFACTION_SORTS.join(', ')}`);
  return sort as SatisfactionSort;
}
