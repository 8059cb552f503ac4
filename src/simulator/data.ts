// Fake statistics shaped like Deskie's (deskie-api-stats.txt), seeded by the query: the same query, the same records.
import { createHash } from 'node:crypto';
import { DateTime } from 'luxon';
import { SATISFACTION_MAX_LIMIT, STAFF_STATUS_PAGE_SIZE, type TimeWindow } from './params.js';

/** A source of numbers in [0, 1), like Math.random but reproducible. */
export type Rng = () => number;

/** How many of something a window holds: from min to max, both included. */
type CountRange = readonly [min: number, max: number];

const SECONDS_PER_DAY = 86_400;
/** Windows of a week or more hold several pages of staff status changes. */
const WEEK_SPAN_SECONDS = 7 * SECONDS_PER_DAY;
/** Month-long windows (the shortest month and up) hold several pages of ratings. */
const MONTH_SPAN_SECONDS = 28 * SECONDS_PER_DAY;

export const SATISFACTION_SORTS = ['added_at_desc', 'added_at_asc'] as const;
export type SatisfactionSort = (typeof SATISFACTION_SORTS)[number];

const LEADERBOARD_AGENTS: CountRange = [3, 6];
const STATUS_CHANGES_UNDER_A_WEEK: CountRange = [5, STAFF_STATUS_PAGE_SIZE - 1];
const STATUS_CHANGES_WEEK_OR_MORE: CountRange = [2 * STAFF_STATUS_PAGE_SIZE + 1, 350];
const STATUS_AGENTS: CountRange = [2, 5];
const RATINGS_UNDER_A_WEEK: CountRange = [10, 40];
const RATINGS_UNDER_A_MONTH: CountRange = [40, SATISFACTION_MAX_LIMIT];
const RATINGS_MONTH_OR_MORE: CountRange = [150, 300];

/** Deskie's marker for "nothing to measure", used in place of a percentage. */
const NO_DATA = '-';

const STAFF: ReadonlyArray<{ readonly id: number; readonly name: string }> = [
  { id: 42047, name: 'John Snow' },
  { id: 50482, name: 'Jack Sparrow' },
  { id: 193, name: 'Анна Смирнова' },
  { id: 11, name: "Siobhán O'Connor" },
  { id: 14, name: 'Li Wei' },
  { id: 16, name: 'María José García' },
  { id: 61230, name: 'Ivan Petrov' },
];

const GROUP_IDS: readonly number[] = [318, 746, 25403];

const OFFLINE = 'Offline (2)';
/** Status names as Deskie writes them: the custom name, then the status id. */
const STAFF_STATUSES: readonly string[] = ['Online (1)', OFFLINE, 'Lunch (113)', 'Calls (104)', 'Meeting (115)'];

/** Free text a proxy must pass as is, even "42", "100%" or "-"; cycled, so any 10 ratings in a row hold every one. */
const RATING_COMMENTS: readonly string[] = [
  '',
  'Thank you, solved in five minutes!',
  '42',
  'Waited two days for an answer.',
  '100%',
  '',
  NO_DATA,
  'Спасибо, всё заработало',
  'cool123',
  'Said "restart it", and it worked; 5/5',
];

/** Deskie renders rating dates in the account's zone; its sample shows +0300. */
const RATING_DATE_ZONE = 'UTC+3';

/** Query parameters that choose a slice or an order of the data, not the data itself. */
const PRESENTATION_PARAMS: ReadonlySet<string> = new Set(['page', 'limit', 'sort']);

/** From endpoint and data query: all pages, one data set; each `generation` (changeNumbers()) gives new numbers. */
export function seedFor(endpoint: string, query: URLSearchParams, generation = 0): number {
  const hash = createHash('sha256').update(`${endpoint}?${queryPart(query, 'data')}`);
  // Generation 0 keeps a fresh simulator's bytes; '#' cannot occur in the encoded pairs.
  if (generation > 0) hash.update(`#${generation}`);
  return hash.digest().readUInt32BE(0);
}

/** Encoded, sorted: the data parameters (seed, Deskie's cache key) or the paging and sorting that pick one answer. */
export function queryPart(query: URLSearchParams, part: 'data' | 'presentation'): string {
  return [...query]
    .filter(([name]) => PRESENTATION_PARAMS.has(name) === (part === 'presentation'))
    .map(([name, value]) => `${encodeURIComponent(name)}=${encodeURIComponent(value)}`)
    .sort()
    .join('&');
}

/** mulberry32: a small, well-known 32-bit generator; plenty for fake statistics. */
export function createRng(seed: number): Rng {
  let state = seed >>> 0;
  return () => {
    state = (state + 0x6d2b79f5) >>> 0;
    let t = state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 0x1_0000_0000;
  };
}

/** The leaderboard body: `{"0":{"staff":{...}},"1":...}`, 3–6 agents. */
export function leaderboardBody(rng: Rng): string {
  const agents = shuffled(rng, STAFF).slice(0, randomIn(rng, LEADERBOARD_AGENTS));
  // The last agent has received no ratings, so `"-"` is in every answer.
  const rows = agents.map((member, index) => ({ staff: leaderboardRow(rng, member, index === agents.length - 1) }));
  return recordsBody(rows, {});
}

function leaderboardRow(rng: Rng, member: (typeof STAFF)[number], unrated: boolean): Record<string, number | string> {
  const newUserCases = randomInt(rng, 0, 80);
  const newCasesInTotal = newUserCases + randomInt(rng, 0, 3);
  const casesBeingHandled = newCasesInTotal + randomInt(rng, 0, 60);
  const casesWithAResponse = randomInt(rng, 0, casesBeingHandled);
  // Field order follows Deskie's sample answer.
  return {
    staff_id: member.id,
    staff_name: member.name,
    new_cases_in_total: newCasesInTotal,
    new_user_cases: newUserCases,
    reopened_cases: randomInt(rng, 0, 10),
    cases_being_handled: casesBeingHandled,
    cases_with_a_response: casesWithAResponse,
    first_response_time: randomInt(rng, 10, 600),
    first_response_sla_violated: slaViolated(rng),
    response_time: randomInt(rng, 20, 900),
    response_sla_violated: slaViolated(rng),
    response_writing_time: randomInt(rng, 5, 120),
    total_number_of_responses: casesWithAResponse + randomInt(rng, 0, 150),
    total_number_of_notes: randomInt(rng, 0, 30),
    number_of_responses_for_resolution: randomInt(rng, 1, 5),
    closed_cases: randomInt(rng, 0, casesBeingHandled),
    resolution_time: randomInt(rng, 100, 5_000),
    resolution_sla_violated: slaViolated(rng),
    ratings_of_responses: unrated || rng() < 0.15 ? NO_DATA : formatPercent(40 + rng() * 60),
  };
}

/** A share of cases over the SLA: often "0%", sometimes "-" when nothing was measured. */
function slaViolated(rng: Rng): string {
  const roll = rng();
  if (roll < 0.1) return NO_DATA;
  return roll < 0.45 ? '0%' : formatPercent(rng() * 40);
}

/** Deskie's percent strings: one decimal at most, no trailing ".0" ("21.9%", "0%", "72%"). */
function formatPercent(value: number): string {
  return `${Number(value.toFixed(1))}%`;
}

/** Every status change in the window, oldest first: `count` of them, or as many as the window's length makes likely. */
export function staffStatusChanges(rng: Rng, window: TimeWindow, count: number | null = null) {
  const range = window.spanSeconds >= WEEK_SPAN_SECONDS ? STATUS_CHANGES_WEEK_OR_MORE : STATUS_CHANGES_UNDER_A_WEEK;
  const agents = shuffled(rng, STAFF).slice(0, randomIn(rng, STATUS_AGENTS));
  const currentStatus = new Map<number, string>(agents.map((agent) => [agent.id, OFFLINE]));
  return sortedTimestamps(rng, window, count ?? randomIn(rng, range)).map((timestamp) => {
    const agent = pick(rng, agents);
    const from = currentStatus.get(agent.id) ?? OFFLINE;
    const to = pick(rng, STAFF_STATUSES.filter((status) => status !== from));
    currentStatus.set(agent.id, to);
    return { staff_id: agent.id, timestamp, from, to };
  });
}

/** One page of status changes; a page past the end has no records and `last_page: true`. */
export function staffStatusesBody(changes: ReturnType<typeof staffStatusChanges>, page: number): string {
  const start = (page - 1) * STAFF_STATUS_PAGE_SIZE;
  const end = start + STAFF_STATUS_PAGE_SIZE;
  const records = changes.slice(start, end).map((change) => ({ status_change: change }));
  return recordsBody(records, { last_page: end >= changes.length });
}

/** Every rating in the window, oldest first (rating ids grow with time). */
export function satisfactionRatings(rng: Rng, window: TimeWindow) {
  const range =
    window.spanSeconds >= MONTH_SPAN_SECONDS
      ? RATINGS_MONTH_OR_MORE
      : window.spanSeconds >= WEEK_SPAN_SECONDS
        ? RATINGS_UNDER_A_MONTH
        : RATINGS_UNDER_A_WEEK;
  const firstRatingId = randomInt(rng, 1, 90_000);
  const firstComment = randomInt(rng, 0, RATING_COMMENTS.length - 1);
  return sortedTimestamps(rng, window, randomIn(rng, range)).map((createdAt, index) => {
    const assignee = pick(rng, STAFF);
    // A third of ratings were edited later by the customer.
    const updatedAt = rng() < 0.3 ? createdAt + randomInt(rng, 1, 3_600) : createdAt;
    return {
      rating_id: firstRatingId + index,
      rating: String(randomInt(rng, 1, 5)),
      rating_comment: RATING_COMMENTS[(firstComment + index) % RATING_COMMENTS.length] ?? '',
      // 0 when the rating is for the case as a whole, not one agent's response.
      rated_staff_id: rng() < 0.3 ? 0 : assignee.id,
      case_id: randomInt(rng, 40_000, 99_999),
      case_number: `${randomInt(rng, 100, 999)}-${randomInt(rng, 100_000, 999_999)}`,
      user_id: randomInt(rng, 200_000, 299_999),
      staff_id: assignee.id,
      group_id: pick(rng, GROUP_IDS),
      created_at: ratingDate(createdAt),
      updated_at: ratingDate(updatedAt),
    };
  });
}

/** One page of ratings in the requested order, with the total over all pages. */
export function satisfactionBody(
  ratings: ReturnType<typeof satisfactionRatings>,
  { page, limit, sort }: { page: number; limit: number; sort: SatisfactionSort },
): string {
  const ordered = sort === 'added_at_asc' ? ratings : [...ratings].reverse();
  const start = (page - 1) * limit;
  return recordsBody(ordered.slice(start, start + limit), { total_count: ratings.length });
}

/** RFC 2822, as in Deskie's sample: "Thu, 16 Jul 2020 15:00:35 +0300". */
function ratingDate(unixSeconds: number): string {
  return DateTime.fromSeconds(unixSeconds, { zone: RATING_DATE_ZONE }).toRFC2822() ?? '';
}

/** Records keyed "0", "1", ... then the trailer, as Deskie: JSON.stringify puts integer-like keys first, ascending. */
function recordsBody(records: readonly unknown[], trailer: Record<string, unknown>): string {
  const body: Record<string, unknown> = {};
  records.forEach((record, index) => (body[String(index)] = record));
  return JSON.stringify(Object.assign(body, trailer));
}

/** `count` whole seconds inside the window, ascending. */
function sortedTimestamps(rng: Rng, window: TimeWindow, count: number): number[] {
  const first = Math.ceil(window.fromSeconds);
  const last = Math.max(first, Math.ceil(window.toSeconds) - 1);
  return Array.from({ length: count }, () => randomInt(rng, first, last)).sort((a, b) => a - b);
}

/** A whole number from min to max, both included. */
function randomInt(rng: Rng, min: number, max: number): number {
  return min + Math.floor(rng() * (max - min + 1));
}

function randomIn(rng: Rng, [min, max]: CountRange): number {
  return randomInt(rng, min, max);
}

function pick<T>(rng: Rng, items: readonly T[]): T {
  const item = items[randomInt(rng, 0, items.length - 1)];
  if (item === undefined) throw new Error('pick() needs at least one item');
  return item;
}

/** Fisher–Yates on a copy. */
function shuffled<T>(rng: Rng, items: readonly T[]): T[] {
  const copy = [...items];
  for (let i = copy.length - 1; i > 0; i -= 1) {
    const j = randomInt(rng, 0, i);
    [copy[i], copy[j]] = [copy[j] as T, copy[i] as T];
  }
  return copy;
}
