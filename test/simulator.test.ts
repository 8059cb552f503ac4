import { createHash } from 'node:crypto';
import t, { type Test } from 'tap';
import { request } from 'undici';
import { CLI_USAGE, parseCliOptions } from '../src/simulator/cli-options.js';
import { seedFor } from '../src/simulator/data.js';
import { DEEP_JSON_DEPTH } from '../src/simulator/faults.js';
import { SIMULATOR_FAULTS, startSimulator, type Simulator, type SimulatorFault, type SimulatorOptions } from '../src/simulator/index.js';
import { DEFAULT_KNOBS, InvalidKnobError } from '../src/simulator/knobs.js';
import { PERIODS } from '../src/simulator/params.js';
import { RateLimitWindow } from '../src/simulator/rate-limit.js';

type JsonObject = Record<string, unknown>;

const DEMO_AUTH = `Basic ${Buffer.from('demo@example.com:demo').toString('base64')}`;
const LEADERBOARD = '/api/stats_leaderboard.json';
const STAFF_STATUSES = '/api/stats_staff_statuses.json';
const SATISFACTION = '/api/stats_satisfaction.json';
/** Short enough to keep the suite fast, long enough to tell "hung" from "slow". */
const HANG_TIMEOUT_MS = 200;
/** A fixed start for injected clocks, epoch ms (2023-11-14T22:13:20Z). */
const CLOCK_START_MS = 1_700_000_000_000;
const SECOND_MS = 1_000;
const MINUTE_MS = 60 * SECOND_MS;
const DAY_MS = 24 * 60 * MINUTE_MS;
/** A custom range, so answers do not move with the wall clock between two requests. */
const FIXED_QUERY = 'from_time=2024-03-01&to_time=2024-03-20&group_id=318';

const LEADERBOARD_FIELDS = [
  'staff_id',
  'staff_name',
  'new_cases_in_total',
  'new_user_cases',
  'reopened_cases',
  'cases_being_handled',
  'cases_with_a_response',
  'first_response_time',
  'first_response_sla_violated',
  'response_time',
  'response_sla_violated',
  'response_writing_time',
  'total_number_of_responses',
  'total_number_of_notes',
  'number_of_responses_for_resolution',
  'closed_cases',
  'resolution_time',
  'resolution_sla_violated',
  'ratings_of_responses',
];
const PERCENT_FIELDS = ['first_response_sla_violated', 'response_sla_violated', 'resolution_sla_violated', 'ratings_of_responses'];
const RATING_FIELDS = [
  'rating_id',
  'rating',
  'rating_comment',
  'rated_staff_id',
  'case_id',
  'case_number',
  'user_id',
  'staff_id',
  'group_id',
  'created_at',
  'updated_at',
];
const PERCENT_OR_NO_DATA = /^(?:\d+(?:\.\d)?%|-)$/;
const STATUS_NAME = /^\S.* \(\d+\)$/;
const RFC_2822 = /^(?:Mon|Tue|Wed|Thu|Fri|Sat|Sun), \d{2} [A-Z][a-z]{2} \d{4} \d{2}:\d{2}:\d{2} [+-]\d{4}$/;
const CASE_NUMBER = /^\d{3}-\d{6}$/;

interface Answer {
  statusCode: number;
  headers: Record<string, string | string[] | undefined>;
  text: string;
}

async function startSim(t: Test, options: SimulatorOptions = {}): Promise<Simulator> {
  const sim = await startSimulator(options);
  t.teardown(() => sim.close());
  return sim;
}

async function get(sim: Simulator, pathAndQuery: string, headers: Record<string, string> = { authorization: DEMO_AUTH }): Promise<Answer> {
  const res = await request(`${sim.url}${pathAndQuery}`, { headers });
  return { statusCode: res.statusCode, headers: res.headers, text: await res.body.text() };
}

function basicAuth(email: string, apiKey: string): string {
  return `Basic ${Buffer.from(`${email}:${apiKey}`).toString('base64')}`;
}

/** A request to the control routes; `method` lets a test try the wrong one. */
async function control(sim: Simulator, pathAndQuery: string, body?: string, method: 'POST' | 'GET' = 'POST'): Promise<Answer> {
  const res = await request(`${sim.url}${pathAndQuery}`, { method, ...(body !== undefined && { body }) });
  return { statusCode: res.statusCode, headers: res.headers, text: await res.body.text() };
}

/** A clock a test moves by hand, for the simulator's `clock` option. */
function manualClock(): { now: () => number; advance: (ms: number) => void } {
  let nowMs = CLOCK_START_MS;
  return {
    now: () => nowMs,
    advance: (ms) => {
      nowMs += ms;
    },
  };
}

async function getJson(sim: Simulator, pathAndQuery: string): Promise<JsonObject> {
  const answer = await get(sim, pathAndQuery);
  if (answer.statusCode !== 200) {
    throw new Error(`${pathAndQuery} answered ${answer.statusCode}: ${answer.text}`);
  }
  return JSON.parse(answer.text) as JsonObject;
}

/** The numbered records of a Deskie list body, in key order. */
function records(body: JsonObject): JsonObject[] {
  return Object.keys(body)
    .filter((key) => /^\d+$/.test(key))
    .map((key) => body[key] as JsonObject);
}

function statusChanges(body: JsonObject): JsonObject[] {
  return records(body).map((record) => record.status_change as JsonObject);
}

function errorBody(message: string): unknown {
  return { status: 'error', error: message };
}

t.test('authentication', async (t) => {
  const sim = await startSim(t);

  t.test('accepts the demo e-mail and API key', async (t) => {
    t.equal((await get(sim, `${LEADERBOARD}?period=today`)).statusCode, 200, 'valid credentials get 200');
  });

  t.test('answers 401 with the error body when credentials are missing', async (t) => {
    const answer = await get(sim, `${LEADERBOARD}?period=today`, {});
    t.equal(answer.statusCode, 401, 'no Authorization header gets 401');
    t.same(JSON.parse(answer.text), errorBody('authentication failed'), 'error body names the failure');
  });

  t.test('answers 401 for a wrong API key', async (t) => {
    const wrongKey = `Basic ${Buffer.from('demo@example.com:nope').toString('base64')}`;
    const answer = await get(sim, `${LEADERBOARD}?period=today`, { authorization: wrongKey });
    t.equal(answer.statusCode, 401, 'wrong key gets 401');
  });

  t.test('answers 401 for credentials without a colon or another scheme', async (t) => {
    const noColon = `Basic ${Buffer.from('demo@example.com').toString('base64')}`;
    t.equal((await get(sim, `${LEADERBOARD}?period=today`, { authorization: noColon })).statusCode, 401, 'no colon gets 401');
    t.equal((await get(sim, `${LEADERBOARD}?period=today`, { authorization: 'Bearer demo' })).statusCode, 401, 'Bearer gets 401');
  });

  t.test('accepts the users given in the options', async (t) => {
    const custom = await startSim(t, { users: { 'agent@example.com': 'key-1' } });
    const auth = `Basic ${Buffer.from('agent@example.com:key-1').toString('base64')}`;
    t.equal((await get(custom, `${LEADERBOARD}?period=today`, { authorization: auth })).statusCode, 200, 'configured user gets 200');
    t.equal((await get(custom, `${LEADERBOARD}?period=today`)).statusCode, 401, 'demo user is not configured there');
  });
});

t.test('unknown paths get 404 with the error body', async (t) => {
  const sim = await startSim(t);
  const answer = await get(sim, '/api/cases.json');
  t.equal(answer.statusCode, 404, 'unknown path gets 404');
  t.match(answer.headers['content-type'], /^application\/json; charset=utf-8$/, 'error is JSON');
  t.match(JSON.parse(answer.text), { status: 'error', error: String }, 'error body has the simulator shape');
});

t.test('leaderboard has the reference shape', async (t) => {
  const sim = await startSim(t);
  const answer = await get(sim, `${LEADERBOARD}?period=this_month`);
  t.equal(answer.headers['content-type'], 'application/json; charset=utf-8', 'JSON content type');
  const body = JSON.parse(answer.text) as JsonObject;
  const keys = Object.keys(body);
  t.ok(keys.length >= 3 && keys.length <= 6, `3–6 agents (got ${keys.length})`);
  t.same(keys, keys.map((_, index) => String(index)), 'keys are "0", "1", ... and nothing else');
  const rows = records(body).map((record) => record.staff as JsonObject);
  for (const row of rows) {
    t.same(Object.keys(row), LEADERBOARD_FIELDS, `agent ${String(row.staff_id)} has every reference field, in order`);
    t.type(row.staff_name, 'string', 'staff_name is a string');
    for (const field of PERCENT_FIELDS) {
      t.match(row[field], PERCENT_OR_NO_DATA, `${field} is a percent string or "-"`);
    }
  }
  t.ok(rows.some((row) => row.ratings_of_responses === '-'), 'at least one agent has no ratings ("-")');
});

t.test('staff statuses have the reference shape', async (t) => {
  const sim = await startSim(t);
  const answer = await get(sim, `${STAFF_STATUSES}?period=today`);
  const body = JSON.parse(answer.text) as JsonObject;
  const changes = statusChanges(body);
  t.ok(changes.length > 0 && changes.length < 100, `today fits one page (got ${changes.length})`);
  for (const change of changes) {
    t.same(Object.keys(change), ['staff_id', 'timestamp', 'from', 'to'], 'status_change fields in reference order');
    t.match(change, { staff_id: Number, timestamp: Number, from: STATUS_NAME, to: STATUS_NAME }, 'field types');
  }
  const timestamps = changes.map((change) => change.timestamp as number);
  t.same(timestamps, [...timestamps].sort((a, b) => a - b), 'timestamps ascend');
  t.ok(answer.text.endsWith('"last_page":true}'), 'body ends with last_page');
});

t.test('satisfaction ratings have the reference shape', async (t) => {
  const sim = await startSim(t);
  const answer = await get(sim, `${SATISFACTION}?period=last_7_days`);
  const body = JSON.parse(answer.text) as JsonObject;
  const ratings = records(body);
  t.ok(ratings.length > 0, 'some ratings');
  t.equal(body.total_count, ratings.length, 'total_count counts the ratings of a single page');
  t.ok(answer.text.endsWith(`"total_count":${ratings.length}}`), 'body ends with total_count');
  for (const rating of ratings) {
    t.same(Object.keys(rating), RATING_FIELDS, `rating ${String(rating.rating_id)} has the reference fields, in order`);
    t.match(
      rating,
      {
        rating_id: Number,
        rating: /^[1-5]$/,
        rating_comment: String,
        rated_staff_id: Number,
        case_id: Number,
        case_number: CASE_NUMBER,
        user_id: Number,
        staff_id: Number,
        group_id: Number,
        created_at: RFC_2822,
        updated_at: RFC_2822,
      },
      'field types and formats',
    );
  }
});

t.test('rating comments include free text that looks like numbers or markers', async (t) => {
  const sim = await startSim(t);
  const comments = new Set(records(await getJson(sim, `${SATISFACTION}?period=last_month`)).map((rating) => rating.rating_comment));
  for (const tricky of ['42', '100%', '-', '']) {
    t.ok(comments.has(tricky), `a comment is exactly ${JSON.stringify(tricky)}`);
  }
});

t.test('the same query gives the same bytes', async (t) => {
  const sim = await startSim(t);
  for (const path of [LEADERBOARD, STAFF_STATUSES, SATISFACTION]) {
    const query = 'from_time=2024-03-01&to_time=2024-03-20&group_id=318&channel=email';
    const first = await get(sim, `${path}?${query}`);
    const second = await get(sim, `${path}?${query}`);
    const reordered = await get(sim, `${path}?channel=email&group_id=318&to_time=2024-03-20&from_time=2024-03-01`);
    t.equal(second.text, first.text, `${path}: repeated query, same body`);
    t.equal(reordered.text, first.text, `${path}: parameter order does not matter`);
  }
});

t.test('a different filter gives different data', async (t) => {
  const sim = await startSim(t);
  const plain = await get(sim, `${LEADERBOARD}?period=last_month`);
  const filtered = await get(sim, `${LEADERBOARD}?period=last_month&group_id=318`);
  t.not(filtered.text, plain.text, 'filters feed the seed');
});

t.test('staff statuses page through last_page false, then true', async (t) => {
  const sim = await startSim(t);
  const all: JsonObject[] = [];
  let page = 1;
  let body: JsonObject;
  do {
    body = await getJson(sim, `${STAFF_STATUSES}?period=last_month&page=${page}`);
    const changes = statusChanges(body);
    if (body.last_page === false) {
      t.equal(changes.length, 100, `page ${page} is full and not the last`);
    }
    all.push(...changes);
    page += 1;
  } while (body.last_page === false && page < 20);
  t.equal(body.last_page, true, 'the walk ends on last_page: true');
  t.ok(page - 1 >= 3, `a month spans several pages (got ${page - 1})`);
  const timestamps = all.map((change) => change.timestamp as number);
  t.same(timestamps, [...timestamps].sort((a, b) => a - b), 'timestamps ascend across pages');
});

t.test('staff statuses: a page past the end is empty and last', async (t) => {
  const sim = await startSim(t);
  const answer = await get(sim, `${STAFF_STATUSES}?period=last_30_days&page=50`);
  t.equal(answer.text, '{"last_page":true}', 'no records, last_page true');
});

t.test('staff statuses: ranges of a week or more span pages, shorter ones do not', async (t) => {
  const sim = await startSim(t);
  const week = await getJson(sim, `${STAFF_STATUSES}?from_time=2024-03-01&to_time=2024-03-08`);
  t.equal(week.last_page, false, 'a 7-day range has a second page');
  const day = await getJson(sim, `${STAFF_STATUSES}?from_time=2024-03-01&to_time=2024-03-02`);
  t.equal(day.last_page, true, 'a 1-day range fits one page');
  t.ok(statusChanges(day).length < 100, 'fewer than 100 changes in a day');
});

t.test('staff statuses: the staffStatusChanges knob sets how many changes every window holds', async (t) => {
  const clock = manualClock();
  const sim = await startSim(t, { knobs: { staffStatusChanges: 750 }, clock: clock.now });
  const first = await getJson(sim, `${STAFF_STATUSES}?period=today&page=1`);
  t.equal(statusChanges(first).length, 100, 'a day now fills its first page');
  const eighth = await getJson(sim, `${STAFF_STATUSES}?period=today&page=8`);
  t.equal(statusChanges(eighth).length, 50, 'the eighth page holds the last 50');
  t.equal(eighth.last_page, true, 'and is the last');
  sim.set({ staffStatusChanges: null });
  clock.advance(5 * MINUTE_MS); // like any change to the data, it shows once Deskie's cache of today expires
  t.equal((await getJson(sim, `${STAFF_STATUSES}?period=today&page=1`)).last_page, true, 'null gives back the data of its own count');
});

t.test('satisfaction: total_count, limit and page', async (t) => {
  const sim = await startSim(t);
  const full = await getJson(sim, `${SATISFACTION}?period=last_month`);
  const total = full.total_count as number;
  t.ok(total > 100, `a month has more than 100 ratings (got ${total})`);
  t.equal(records(full).length, 100, 'default limit is 100');

  const page2 = await getJson(sim, `${SATISFACTION}?period=last_month&limit=10&page=2`);
  t.equal(page2.total_count, total, 'total_count does not depend on limit or page');
  t.same(records(page2), records(full).slice(10, 20), 'page 2 of 10 is records 10–19');

  const lastPage = Math.ceil(total / 100);
  t.equal(records(await getJson(sim, `${SATISFACTION}?period=last_month&page=${lastPage}`)).length, total - (lastPage - 1) * 100, 'last page holds the rest');
  t.equal(records(await getJson(sim, `${SATISFACTION}?period=last_month&page=${lastPage + 1}`)).length, 0, 'past the end: no records');
});

t.test('satisfaction: sort orders by date, newest first by default', async (t) => {
  const sim = await startSim(t);
  const newest = records(await getJson(sim, `${SATISFACTION}?period=yesterday`));
  const oldest = records(await getJson(sim, `${SATISFACTION}?period=yesterday&sort=added_at_asc`));
  t.same(oldest, [...newest].reverse(), 'added_at_asc is the reverse of the default');
  const ids = newest.map((rating) => rating.rating_id as number);
  t.same(ids, [...ids].sort((a, b) => b - a), 'default order is newest (highest id) first');
});

t.test('satisfaction: limit outside 1–100 and an unknown sort get 400', async (t) => {
  const sim = await startSim(t);
  for (const query of ['limit=0', 'limit=101', 'limit=abc', 'sort=rating_desc', 'page=0']) {
    const answer = await get(sim, `${SATISFACTION}?period=today&${query}`);
    t.equal(answer.statusCode, 400, `${query} gets 400`);
    t.match(JSON.parse(answer.text), { status: 'error', error: String }, `${query}: error body`);
  }
});

t.test('custom periods', async (t) => {
  const sim = await startSim(t);

  t.test('a 30-minute range gets 400', async (t) => {
    const answer = await get(sim, `${LEADERBOARD}?from_time=2024-03-01%2010:00:00&to_time=2024-03-01%2010:30:00`);
    t.equal(answer.statusCode, 400, '30 minutes is under the 1-hour minimum');
    t.same(JSON.parse(answer.text), errorBody('custom period is shorter than 1 hour'), 'error body says why');
  });

  t.test('no period and no range gets 400', async (t) => {
    t.equal((await get(sim, `${LEADERBOARD}?group_id=318`)).statusCode, 400, 'missing window gets 400');
    t.equal((await get(sim, `${LEADERBOARD}?from_time=2024-03-01`)).statusCode, 400, 'from_time alone gets 400');
  });

  t.test('an unknown period gets 400', async (t) => {
    t.equal((await get(sim, `${LEADERBOARD}?period=last_decade`)).statusCode, 400, 'unknown period gets 400');
  });

  t.test('longer than 3 months gets 400, or 1 month for staff statuses', async (t) => {
    const twoMonths = 'from_time=2024-01-01&to_time=2024-03-01';
    t.equal((await get(sim, `${LEADERBOARD}?${twoMonths}`)).statusCode, 200, 'leaderboard takes 2 months');
    t.equal((await get(sim, `${SATISFACTION}?from_time=2024-01-01&to_time=2024-05-01`)).statusCode, 400, 'satisfaction refuses 4 months');
    t.equal((await get(sim, `${STAFF_STATUSES}?${twoMonths}`)).statusCode, 400, 'staff statuses refuse 2 months');
  });

  t.test('accepts every documented time form', async (t) => {
    const forms = [
      'from_time=2024-03-01%2010:00:00%20%2B0400&to_time=2024-03-01%2012:00:00%20%2B0400',
      'from_time=2024-03-01%2010:00:00&to_time=2024-03-01%2012:00:00',
      'from_time=2024-03-01%2010:00&to_time=2024-03-01%2012:00',
      'from_time=2024-03-01&to_time=2024-03-02',
      'from_time=01.03.2024&to_time=02.03.2024',
      'from_time=1709287200&to_time=1709294400',
    ];
    for (const form of forms) {
      t.equal((await get(sim, `${LEADERBOARD}?${form}`)).statusCode, 200, `${form} is accepted`);
    }
    t.equal((await get(sim, `${LEADERBOARD}?from_time=yesterday&to_time=today`)).statusCode, 400, 'words are not dates');
  });

  t.test('every documented period is accepted', async (t) => {
    t.equal(PERIODS.length, 19, 'Deskie documents 19 periods');
    for (const period of PERIODS) {
      t.equal((await get(sim, `${SATISFACTION}?period=${period}`)).statusCode, 200, `${period} is accepted`);
    }
  });
});

t.test('every answer carries the rate-limit headers', async (t) => {
  const sim = await startSim(t);
  const first = await get(sim, `${LEADERBOARD}?period=today`);
  const second = await get(sim, '/nowhere');
  t.equal(first.headers.rate_limit_per_minute, '1500', 'default limit is 1500 a minute');
  t.equal(first.headers.api_calls_left, '1499', 'first call leaves 1499');
  t.equal(second.headers.api_calls_left, '1498', 'a 404 spends a call too');
});

t.test('over the limit gets 429 with retry_after', async (t) => {
  const sim = await startSim(t, { rateLimitPerMinute: 2 });
  await get(sim, `${LEADERBOARD}?period=today`);
  const last = await get(sim, `${LEADERBOARD}?period=today`);
  t.equal(last.headers.api_calls_left, '0', 'second call spends the budget');
  const refused = await get(sim, `${LEADERBOARD}?period=today`);
  t.equal(refused.statusCode, 429, 'third call in the minute gets 429');
  t.equal(refused.headers.api_calls_left, '0', 'the 429 says no calls are left');
  t.equal(refused.headers.rate_limit_per_minute, '2', 'the 429 names the limit');
  const retryAfter = Number(refused.headers.retry_after);
  t.ok(retryAfter >= 1 && retryAfter <= 60, `retry_after is within the minute (got ${retryAfter})`);
  t.match(JSON.parse(refused.text), { status: 'error', error: String }, 'error body');
});

t.test('the rate-limit window frees a call a minute after it was made', async (t) => {
  const window = new RateLimitWindow(2);
  t.match(window.take(0), { admitted: true, callsLeft: 1 }, 'first call at 0 s');
  t.match(window.take(10_000), { admitted: true, callsLeft: 0 }, 'second call at 10 s');
  t.match(window.take(30_000), { admitted: false, callsLeft: 0, retryAfterSeconds: 30 }, 'at 30 s: wait until the 0 s call is a minute old');
  t.match(window.take(60_000), { admitted: true, callsLeft: 0 }, 'at 60 s the first call has left the window');
  t.match(window.take(65_000), { admitted: false, retryAfterSeconds: 5 }, 'at 65 s: the 10 s call leaves at 70 s');
});

t.test('a lowered limit refuses calls until enough have left the window', async (t) => {
  const window = new RateLimitWindow(3);
  window.take(0);
  window.take(10_000);
  window.take(20_000);
  window.limitPerMinute = 1;
  t.match(window.take(30_000), { admitted: false, limitPerMinute: 1, callsLeft: 0, retryAfterSeconds: 50 }, 'waits for the 20 s call: all three must go');
  t.match(window.take(80_000), { admitted: true, limitPerMinute: 1, callsLeft: 0 }, 'at 80 s the window is empty again');
});

t.test('the injected clock moves the rate-limit window without sleeping', async (t) => {
  const clock = manualClock();
  const sim = await startSim(t, { rateLimitPerMinute: 2, clock: clock.now });
  await get(sim, `${LEADERBOARD}?period=today`);
  clock.advance(10 * SECOND_MS);
  await get(sim, `${LEADERBOARD}?period=today`);
  clock.advance(20 * SECOND_MS);
  const refused = await get(sim, `${LEADERBOARD}?period=today`);
  t.equal(refused.statusCode, 429, 'two calls in 30 s spend a budget of 2');
  t.equal(refused.headers.retry_after, '30', 'retry_after counts to the first call turning a minute old');
  clock.advance(30 * SECOND_MS);
  const admitted = await get(sim, `${LEADERBOARD}?period=today`);
  t.equal(admitted.statusCode, 200, 'a minute after the first call there is room again');
  t.equal(admitted.headers.api_calls_left, '0', 'the 10 s call still counts');
});

t.test('set({ rateLimitPerMinute }) changes the limit at run time', async (t) => {
  const clock = manualClock();
  const sim = await startSim(t, { rateLimitPerMinute: 2, clock: clock.now });
  await get(sim, `${LEADERBOARD}?period=today`);
  await get(sim, `${LEADERBOARD}?period=today`);
  t.equal((await get(sim, `${LEADERBOARD}?period=today`)).statusCode, 429, 'the third call is over a limit of 2');

  sim.set({ rateLimitPerMinute: 3 });
  const raised = await get(sim, `${LEADERBOARD}?period=today`);
  t.equal(raised.statusCode, 200, 'a raised limit admits the next call');
  t.equal(raised.headers.rate_limit_per_minute, '3', 'the header names the new limit');
  t.equal(raised.headers.api_calls_left, '0', 'and counts the calls already made');

  sim.set({ rateLimitPerMinute: 1 });
  const lowered = await get(sim, `${LEADERBOARD}?period=today`);
  t.equal(lowered.statusCode, 429, 'a lowered limit refuses');
  t.equal(lowered.headers.rate_limit_per_minute, '1', 'the 429 names the lowered limit');
  t.equal(sim.knobs.rateLimitPerMinute, 1, 'knobs report the limit in force');
});

t.test('knobs.rateLimitPerMinute wins over the rateLimitPerMinute option', async (t) => {
  const sim = await startSim(t, { rateLimitPerMinute: 5, knobs: { rateLimitPerMinute: 7 } });
  t.equal((await get(sim, `${LEADERBOARD}?period=today`)).headers.rate_limit_per_minute, '7', 'the knob sets the limit');
});

t.test('knob values are checked', async (t) => {
  const sim = await startSim(t);
  const bad: Record<string, unknown>[] = [
    { fault: 'nope' },
    { latencyMs: -1 },
    { latencyMs: 1.5 },
    { faultAfterCalls: '2' },
    { retryAfterSeconds: -5 },
    { retryAfter: 30 },
    { rateLimitPerMinute: 0 },
    { staffStatusChanges: 7.5 },
    { deskieCache: 'no' },
    { foreignClient: 1 },
    { foreignClientSeed: -1 },
    { foreignClientIntervalMs: 0 },
    { lantencyMs: 10 },
  ];
  for (const knobs of bad) {
    t.throws(() => sim.set(knobs), InvalidKnobError, `set(${JSON.stringify(knobs)}) throws`);
  }
  t.same(
    sim.knobs,
    { ...DEFAULT_KNOBS, rateLimitPerMinute: 1500 },
    'defaults untouched',
  );
  sim.set({ latencyMs: undefined, fault: 'error500' });
  t.match(sim.knobs, { latencyMs: 0, fault: 'error500' }, 'an undefined knob is left as it was');
  await t.rejects(startSimulator({ knobs: { fault: 'nope' as SimulatorFault } }), InvalidKnobError, 'startSimulator checks its knobs before listening');
  await t.rejects(startSimulator({ rateLimitPerMinute: 0 }), InvalidKnobError, 'and its rateLimitPerMinute option');
});

t.test('fault knobs', async (t) => {
  t.test('error500 answers 500 with the error body', async (t) => {
    const sim = await startSim(t, { knobs: { fault: 'error500' } });
    const answer = await get(sim, `${LEADERBOARD}?period=today`);
    t.equal(answer.statusCode, 500, 'status 500');
    t.match(JSON.parse(answer.text), { status: 'error', error: String }, 'error body');
  });

  t.test('rateLimited answers 429 with retry_after 30 and no calls left', async (t) => {
    const sim = await startSim(t, { knobs: { fault: 'rateLimited' } });
    const answer = await get(sim, `${LEADERBOARD}?period=today`);
    t.equal(answer.statusCode, 429, 'status 429');
    t.equal(answer.headers.retry_after, '30', 'retry_after: 30');
    t.equal(answer.headers.api_calls_left, '0', 'api_calls_left: 0');
  });

  t.test('malformed answers 200 JSON that does not parse', async (t) => {
    const sim = await startSim(t, { knobs: { fault: 'malformed' } });
    const answer = await get(sim, `${LEADERBOARD}?period=today`);
    t.equal(answer.statusCode, 200, 'status 200');
    t.match(answer.headers['content-type'], /^application\/json/, 'claims to be JSON');
    t.throws(() => JSON.parse(answer.text), SyntaxError, 'body is not valid JSON');
  });

  t.test('hang never answers', async (t) => {
    const sim = await startSim(t, { knobs: { fault: 'hang' } });
    await t.rejects(
      request(`${sim.url}${LEADERBOARD}?period=today`, { headers: { authorization: DEMO_AUTH }, headersTimeout: HANG_TIMEOUT_MS }),
      { code: 'UND_ERR_HEADERS_TIMEOUT' },
      'the client gives up waiting for headers',
    );
    t.equal(sim.calls, 1, 'the hung request still counts');
  });

  t.test('close() ends hung requests', async (t) => {
    const sim = await startSimulator({ knobs: { fault: 'hang' } });
    const pending = request(`${sim.url}${LEADERBOARD}?period=today`, { headers: { authorization: DEMO_AUTH } });
    while (sim.calls === 0) {
      await new Promise((resolve) => setImmediate(resolve));
    }
    await sim.close();
    await t.rejects(pending, 'the client sees the socket close');
  });

  t.test('close() ends delayed requests', async (t) => {
    const sim = await startSimulator({ knobs: { latencyMs: 60_000 } });
    const pending = request(`${sim.url}${LEADERBOARD}?period=today`, { headers: { authorization: DEMO_AUTH } });
    while (sim.calls === 0) {
      await new Promise((resolve) => setImmediate(resolve));
    }
    await sim.close();
    await t.rejects(pending, 'the client sees the socket close instead of waiting a minute');
  });

  t.test('redirect answers 301 elsewhere', async (t) => {
    const sim = await startSim(t, { knobs: { fault: 'redirect' } });
    const answer = await get(sim, `${LEADERBOARD}?period=today`);
    t.equal(answer.statusCode, 301, 'status 301');
    t.equal(answer.headers.location, 'https://elsewhere.example/api/', 'location points away from Deskie');
  });

  t.test('latencyMs delays the answer', async (t) => {
    const latencyMs = 150;
    const sim = await startSim(t, { knobs: { latencyMs } });
    const started = performance.now();
    const answer = await get(sim, `${LEADERBOARD}?period=today`);
    const elapsedMs = performance.now() - started;
    t.equal(answer.statusCode, 200, 'answers after the delay');
    t.ok(elapsedMs >= latencyMs - 5, `took at least ${latencyMs} ms (took ${elapsedMs.toFixed(0)})`);
  });

  t.test('rateLimited sends the retry_after of retryAfterSeconds, or retryAfter verbatim', async (t) => {
    const sim = await startSim(t, { knobs: { fault: 'rateLimited', retryAfterSeconds: 5 } });
    t.equal((await get(sim, `${LEADERBOARD}?period=today`)).headers.retry_after, '5', 'retryAfterSeconds: 5');
    for (const garbage of ['soon', '999999999', '-1', '']) {
      sim.set({ retryAfter: garbage });
      const answer = await get(sim, `${LEADERBOARD}?period=today`);
      t.equal(answer.headers.retry_after, garbage, `retryAfter ${JSON.stringify(garbage)} is sent as is`);
    }
    sim.set({ retryAfter: null });
    t.equal((await get(sim, `${LEADERBOARD}?period=today`)).headers.retry_after, '5', 'retryAfter null goes back to the seconds');
  });

  t.test('drop ends the connection without an answer', async (t) => {
    const sim = await startSim(t, { knobs: { fault: 'drop' } });
    await t.rejects(get(sim, `${LEADERBOARD}?period=today`), { code: 'UND_ERR_SOCKET' }, 'the client sees the socket close, no status');
    t.equal(sim.calls, 1, 'the dropped request still counts');
    sim.set({ fault: 'none' });
    t.equal((await get(sim, `${LEADERBOARD}?period=today`)).statusCode, 200, 'the next connection is answered');
  });

  t.test('drop after latencyMs still sends nothing', async (t) => {
    const sim = await startSim(t, { knobs: { fault: 'drop', latencyMs: 20 } });
    await t.rejects(get(sim, `${LEADERBOARD}?period=today`), { code: 'UND_ERR_SOCKET' }, 'the socket closes after the delay');
  });

  t.test('nonObject answers 200 with a JSON array', async (t) => {
    const sim = await startSim(t, { knobs: { fault: 'nonObject' } });
    const answer = await get(sim, `${LEADERBOARD}?period=today`);
    t.equal(answer.statusCode, 200, 'status 200');
    t.match(answer.headers['content-type'], /^application\/json/, 'claims to be JSON');
    t.equal(answer.text, '[1,2,3]', 'body is an array, not an object');
  });

  t.test('deepJson answers 200 with valid JSON nested 100000 deep', async (t) => {
    const sim = await startSim(t, { knobs: { fault: 'deepJson' } });
    const answer = await get(sim, `${LEADERBOARD}?period=today`);
    t.equal(answer.statusCode, 200, 'status 200');
    t.equal(DEEP_JSON_DEPTH, 100_000, 'depth is 100000');
    t.equal(answer.text, `{"0":${'['.repeat(DEEP_JSON_DEPTH)}${']'.repeat(DEEP_JSON_DEPTH)}}`, 'an object holding the nested arrays');
    t.equal(answer.headers['content-length'], String(answer.text.length), 'content-length matches');
    t.doesNotThrow(() => JSON.parse(answer.text), 'the body is valid JSON');
  });

  t.test('faultAfterCalls delays the new faults too', async (t) => {
    const sim = await startSim(t, { knobs: { fault: 'drop', faultAfterCalls: 2 } });
    t.equal((await get(sim, `${LEADERBOARD}?period=today`)).statusCode, 200, 'call 1 is answered');
    t.equal((await get(sim, `${LEADERBOARD}?period=today`)).statusCode, 200, 'call 2 is answered');
    await t.rejects(get(sim, `${LEADERBOARD}?period=today`), { code: 'UND_ERR_SOCKET' }, 'call 3 is dropped');
    sim.set({ fault: 'nonObject' });
    t.equal((await get(sim, `${LEADERBOARD}?period=today`)).text, '[1,2,3]', 'call 4 gets nonObject');
    sim.set({ fault: 'deepJson', faultAfterCalls: 4 });
    t.equal((await get(sim, `${LEADERBOARD}?period=today`)).text.length, 2 * DEEP_JSON_DEPTH + 6, 'call 5 gets deepJson');
    t.equal(sim.calls, 5, 'every call counts');
  });

  t.test('set() changes the fault for later requests', async (t) => {
    const sim = await startSim(t);
    sim.set({ fault: 'error500' });
    t.equal((await get(sim, `${LEADERBOARD}?period=today`)).statusCode, 500, 'fault applies');
    sim.set({ fault: 'none' });
    t.equal((await get(sim, `${LEADERBOARD}?period=today`)).statusCode, 200, 'back to normal');
  });
});

t.test('calls counts every request and requests records them', async (t) => {
  const sim = await startSim(t);
  await get(sim, `${LEADERBOARD}?period=today&group_id=318`);
  await get(sim, '/nowhere', {});
  sim.set({ fault: 'error500' });
  await get(sim, `${SATISFACTION}?period=today`);
  t.equal(sim.calls, 3, 'success, 404 and fault all count');
  t.match(
    sim.requests[0],
    { method: 'GET', path: LEADERBOARD, query: 'period=today&group_id=318', headers: { authorization: DEMO_AUTH } },
    'first request recorded with path, raw query and headers',
  );
  t.equal(sim.requests[1]?.headers.authorization, undefined, 'second request had no Authorization header');
  await control(sim, '/_simulator/knobs', '{}');
  t.equal(sim.calls, 3, 'a control request does not count');

  sim.resetCounters();
  t.equal(sim.calls, 0, 'resetCounters zeroes calls');
  t.same(sim.requests, [], 'resetCounters empties requests');
});

t.test('revoking and restoring keys', async (t) => {
  t.test('a revoked user gets 401 until restored', async (t) => {
    const sim = await startSim(t);
    t.equal(sim.revoke('demo@example.com'), true, 'revoke() knows the user');
    const revoked = await get(sim, `${LEADERBOARD}?period=today`);
    t.equal(revoked.statusCode, 401, 'the revoked key gets 401');
    t.same(JSON.parse(revoked.text), errorBody('authentication failed'), 'the usual 401 body');
    t.equal(sim.revoke('demo@example.com'), true, 'revoking twice is harmless');
    t.equal(sim.restore('demo@example.com'), true, 'restore() knows the user');
    t.equal((await get(sim, `${LEADERBOARD}?period=today`)).statusCode, 200, 'the restored key works again');
    t.equal(sim.restore('demo@example.com'), true, 'restoring a user who is not revoked is harmless');
  });

  t.test('revoke and restore report an unknown e-mail', async (t) => {
    const sim = await startSim(t);
    t.equal(sim.revoke('nobody@example.com'), false, 'revoke() of an unknown user');
    t.equal(sim.restore('nobody@example.com'), false, 'restore() of an unknown user');
  });

  t.test('addUser adds a user or gives one a new key', async (t) => {
    const sim = await startSim(t);
    sim.addUser('new@example.com', 'key-2');
    t.equal((await get(sim, `${LEADERBOARD}?period=today`, { authorization: basicAuth('new@example.com', 'key-2') })).statusCode, 200, 'the added user gets 200');
    sim.addUser('demo@example.com', 'rotated');
    t.equal((await get(sim, `${LEADERBOARD}?period=today`)).statusCode, 401, 'the old key stops working');
    t.equal((await get(sim, `${LEADERBOARD}?period=today`, { authorization: basicAuth('demo@example.com', 'rotated') })).statusCode, 200, 'the new key works');
    sim.revoke('new@example.com');
    sim.addUser('new@example.com', 'key-3');
    t.equal((await get(sim, `${LEADERBOARD}?period=today`, { authorization: basicAuth('new@example.com', 'key-3') })).statusCode, 200, 'addUser lifts a revocation');
  });
});

t.test('changing the numbers', async (t) => {
  t.test('a fresh simulator answers the bytes it always did (generation 0)', async (t) => {
    // Recorded before changeNumbers() existed: proxy tests compare bodies across runs.
    const golden: Record<string, { seed: number; sha256: string }> = {
      [LEADERBOARD]: { seed: 980_854_743, sha256: 'e83bf40211f1b91cab39f033c902d6371dae0a74775dd2a7a996ba2ea4ccaf9f' },
      [STAFF_STATUSES]: { seed: 2_875_551_805, sha256: '00a200441f7b4741a404c98065d283ce0a7439960af25cb507e17bac18837c84' },
      [SATISFACTION]: { seed: 4_193_020_589, sha256: '295dbe2bdb56970dd548fa96adee3fed79d924b983f61fdc3c15d7bb895252ca' },
    };
    const sim = await startSim(t);
    t.equal(sim.generation, 0, 'generation starts at 0');
    for (const [path, { seed, sha256 }] of Object.entries(golden)) {
      t.equal(seedFor(path, new URLSearchParams(FIXED_QUERY)), seed, `${path}: same seed`);
      const text = (await get(sim, `${path}?${FIXED_QUERY}`)).text;
      t.equal(createHash('sha256').update(text).digest('hex'), sha256, `${path}: same body`);
    }
  });

  t.test('changeNumbers() gives every endpoint new numbers, the same for every simulator', async (t) => {
    const clock = manualClock();
    const sim = await startSim(t, { clock: clock.now });
    const other = await startSim(t);
    for (const path of [LEADERBOARD, STAFF_STATUSES, SATISFACTION]) {
      const before = await get(sim, `${path}?${FIXED_QUERY}`);
      t.equal(sim.changeNumbers(), sim.generation, 'changeNumbers() answers the new generation');
      clock.advance(DAY_MS); // the new numbers come with the next compute, once the range's 1-day cache expires
      const after = await get(sim, `${path}?${FIXED_QUERY}`);
      t.equal(after.statusCode, 200, `${path}: still 200`);
      t.not(after.text, before.text, `${path}: new numbers after changeNumbers()`);
      t.equal((await get(sim, `${path}?${FIXED_QUERY}`)).text, after.text, `${path}: stable until the next change`);
      while (other.generation < sim.generation) other.changeNumbers();
      t.equal((await get(other, `${path}?${FIXED_QUERY}`)).text, after.text, `${path}: the generation decides the numbers`);
    }
    t.equal(sim.generation, 3, 'one generation per call');
  });

  t.test('pages of one query keep coming from one data set after a change', async (t) => {
    const sim = await startSim(t);
    sim.changeNumbers();
    const full = await getJson(sim, `${SATISFACTION}?${FIXED_QUERY}&limit=20`);
    const page2 = await getJson(sim, `${SATISFACTION}?${FIXED_QUERY}&limit=10&page=2`);
    t.same(records(page2), records(full).slice(10, 20), 'page 2 of 10 is records 10–19 of the same generation');
  });
});

t.test('control routes', async (t) => {
  t.test('POST /_simulator/knobs sets knobs and answers the knobs in force', async (t) => {
    const sim = await startSim(t, { rateLimitPerMinute: 10 });
    const answer = await control(sim, '/_simulator/knobs', JSON.stringify({ fault: 'rateLimited', retryAfter: 'soon' }));
    t.equal(answer.statusCode, 200, 'status 200');
    t.equal(answer.headers['content-type'], 'application/json; charset=utf-8', 'JSON content type');
    t.same(
      JSON.parse(answer.text),
      {
        knobs: {
          latencyMs: 0,
          fault: 'rateLimited',
          faultAfterCalls: 0,
          retryAfterSeconds: 30,
          retryAfter: 'soon',
          rateLimitPerMinute: 10,
          staffStatusChanges: null,
          deskieCache: true,
          foreignClient: false,
          foreignClientSeed: 1,
          foreignClientIntervalMs: 60_000,
        },
      },
      'answers every knob',
    );
    t.equal(answer.headers.rate_limit_per_minute, undefined, 'control answers carry no rate-limit headers');
    const faulted = await get(sim, `${LEADERBOARD}?period=today`);
    t.equal(faulted.headers.retry_after, 'soon', 'the fault applies to the next stats call');
    t.equal(sim.calls, 1, 'only the stats call counts');
    t.same(sim.requests.map((recorded) => recorded.path), [LEADERBOARD], 'only the stats call is recorded');
  });

  t.test('control requests do not spend the rate limit', async (t) => {
    const sim = await startSim(t, { rateLimitPerMinute: 2 });
    for (let i = 0; i < 3; i += 1) {
      t.equal((await control(sim, '/_simulator/knobs', '{}')).statusCode, 200, `control request ${i + 1} is answered`);
    }
    t.equal((await get(sim, `${LEADERBOARD}?period=today`)).headers.api_calls_left, '1', 'the first stats call still leaves 1 of 2');
  });

  t.test('an empty body changes nothing and shows the knobs', async (t) => {
    const sim = await startSim(t, { knobs: { latencyMs: 5 } });
    const answer = await control(sim, '/_simulator/knobs');
    t.match(JSON.parse(answer.text), { knobs: { latencyMs: 5, fault: 'none' } }, 'the knobs in force');
  });

  t.test('bad knob bodies get 400 and change nothing', async (t) => {
    const sim = await startSim(t);
    const bodies = ['{"fault":"nope"}', '{"lantencyMs":1}', '{"rateLimitPerMinute":0}', '[1]', 'null', 'not json'];
    for (const body of bodies) {
      const answer = await control(sim, '/_simulator/knobs', body);
      t.equal(answer.statusCode, 400, `${body} gets 400`);
      t.match(JSON.parse(answer.text), { status: 'error', error: String }, `${body}: error body`);
    }
    t.match(sim.knobs, { fault: 'none', rateLimitPerMinute: 1500 }, 'knobs unchanged');
  });

  t.test('a body over 16 KiB gets 413', async (t) => {
    const sim = await startSim(t);
    const answer = await control(sim, '/_simulator/knobs', JSON.stringify({ retryAfter: 'x'.repeat(16 * 1_024) }));
    t.equal(answer.statusCode, 413, 'status 413');
    t.equal(sim.knobs.retryAfter, null, 'knobs unchanged');
  });

  t.test('POST /_simulator/change-numbers answers the new generation', async (t) => {
    const sim = await startSim(t);
    const answer = await control(sim, '/_simulator/change-numbers');
    t.equal(answer.statusCode, 200, 'status 200');
    t.same(JSON.parse(answer.text), { generation: 1 }, 'generation 1');
    t.equal(sim.generation, 1, 'the simulator moved on');
  });

  t.test('POST /_simulator/revoke and /restore take ?user=', async (t) => {
    const sim = await startSim(t);
    const revoked = await control(sim, '/_simulator/revoke?user=demo%40example.com');
    t.same(JSON.parse(revoked.text), { user: 'demo@example.com', revoked: true }, 'revoke answers the user');
    t.equal((await get(sim, `${LEADERBOARD}?period=today`)).statusCode, 401, 'the key is revoked');
    const restored = await control(sim, '/_simulator/restore?user=demo@example.com');
    t.same(JSON.parse(restored.text), { user: 'demo@example.com', revoked: false }, 'restore answers the user');
    t.equal((await get(sim, `${LEADERBOARD}?period=today`)).statusCode, 200, 'the key works again');
    t.equal((await control(sim, '/_simulator/revoke?user=nobody@example.com')).statusCode, 404, 'unknown user gets 404');
    t.equal((await control(sim, '/_simulator/revoke')).statusCode, 400, 'missing user gets 400');
    t.equal((await control(sim, '/_simulator/restore?user=')).statusCode, 400, 'empty user gets 400');
  });

  t.test('wrong method gets 405, unknown route 404', async (t) => {
    const sim = await startSim(t);
    const wrongMethod = await control(sim, '/_simulator/knobs', undefined, 'GET');
    t.equal(wrongMethod.statusCode, 405, 'GET gets 405');
    t.equal(wrongMethod.headers.allow, 'POST', 'allow: POST');
    const unknown = await control(sim, '/_simulator/reboot');
    t.equal(unknown.statusCode, 404, 'unknown control route gets 404');
    t.match(JSON.parse(unknown.text), { status: 'error', error: /knobs, change-numbers, revoke, restore/ }, 'the error lists the routes');
    t.equal(sim.calls, 0, 'none of them counts');
  });

  t.test('control routes answer while the simulator hangs or lags', async (t) => {
    const sim = await startSim(t, { knobs: { fault: 'hang', latencyMs: 60_000 } });
    const answer = await control(sim, '/_simulator/knobs', '{"fault":"none","latencyMs":0}');
    t.equal(answer.statusCode, 200, 'the control request is neither hung nor delayed');
    t.equal((await get(sim, `${LEADERBOARD}?period=today`)).statusCode, 200, 'and the simulator recovered');
  });
});

t.test('command line', async (t) => {
  t.test('defaults', async (t) => {
    t.same(
      parseCliOptions([]),
      { host: '127.0.0.1', port: 3001, users: { 'demo@example.com': 'demo' }, rateLimitPerMinute: 1500, timezone: 'UTC', knobs: { latencyMs: 0, fault: 'none' } },
      'port 3001, the demo user, Deskie’s highest limit, no fault',
    );
  });

  t.test('every flag', async (t) => {
    const argv = ['--port', '0', '--host', '::1', '--latency-ms', '25', '--rate-limit', '20', '--timezone', 'Europe/Berlin', '--fault', 'deepJson', '--user', 'a@example.com:k1', '--user', 'b@example.com:k:2'];
    t.same(
      parseCliOptions(argv),
      { host: '::1', port: 0, users: { 'a@example.com': 'k1', 'b@example.com': 'k:2' }, rateLimitPerMinute: 20, timezone: 'Europe/Berlin', knobs: { latencyMs: 25, fault: 'deepJson' } },
      'each flag lands in its option',
    );
  });

  t.test('bad values name their flag', async (t) => {
    const cases: [string[], RegExp][] = [
      [['--port', '70000'], /^--port/],
      [['--latency-ms=-1'], /^--latency-ms/],
      [['--rate-limit', '0'], /^--rate-limit/],
      [['--rate-limit', 'many'], /^--rate-limit/],
      [['--rate-limit', '2.5'], /^--rate-limit/],
      [['--fault', 'nope'], /^--fault/],
      [['--user', 'nokey'], /^--user/],
      [['--speed', '3'], /speed/],
    ];
    for (const [argv, message] of cases) {
      t.throws(() => parseCliOptions(argv), { message }, `${argv.join(' ')} is refused`);
    }
  });

  t.test('usage lists --rate-limit and every fault', async (t) => {
    t.match(CLI_USAGE, /--rate-limit 1500/, 'mentions --rate-limit');
    for (const fault of SIMULATOR_FAULTS) {
      t.match(CLI_USAGE, fault, `mentions ${fault}`);
    }
  });
});

t.test('hold() keeps answers until release(), in arrival order', async (t) => {
  const sim = await startSim(t);
  sim.hold();
  const order: string[] = [];
  const first = get(sim, `/api/stats_leaderboard.json?${FIXED_QUERY}`).then((answer) => (order.push('first'), answer));
  const second = get(sim, '/api/stats_leaderboard.json?period=today').then((answer) => (order.push('second'), answer));
  while (sim.held < 2) await new Promise((resolve) => setImmediate(resolve));
  t.same(order, [], 'nothing answered while held');
  t.equal(sim.calls, 2, 'both were counted on arrival');
  sim.release();
  t.same([(await first).statusCode, (await second).statusCode], [200, 200]);
  t.equal(sim.held, 0);
  t.equal((await get(sim, '/api/stats_leaderboard.json?period=today')).statusCode, 200, 'after release, answers go out at once');
});

t.test('periods and offset-less times are read in the account zone, on the injected clock', async (t) => {
  const clock = manualClock();
  const berlin = await startSim(t, { timezone: 'Europe/Berlin', clock: clock.now });
  const utc = await startSim(t, { clock: clock.now });
  // 23:13:20 UTC on the 14th is already 00:13 on the 15th in Berlin: its today began at 23:00 UTC.
  clock.advance(3_600 * SECOND_MS);
  const berlinMidnight = Date.parse('2023-11-14T23:00:00Z') / 1000;
  const timestamps = async (sim: Simulator) =>
    Object.values(JSON.parse((await get(sim, '/api/stats_staff_statuses.json?period=today')).text) as Record<string, { status_change?: { timestamp: number } }>)
      .map((record) => record.status_change?.timestamp)
      .filter((timestamp): timestamp is number => timestamp !== undefined);
  const inBerlin = await timestamps(berlin);
  const inUtc = await timestamps(utc);
  t.ok(inBerlin.length > 0 && inBerlin.every((timestamp) => timestamp >= berlinMidnight), "Berlin's today starts at its midnight");
  t.ok(inUtc.some((timestamp) => timestamp < berlinMidnight), "UTC's today is still the 14th, most of it before then");
  t.equal((await get(berlin, '/api/stats_leaderboard.json?from_time=2024-03-01%2010:00&to_time=2024-03-01%2010:30')).statusCode, 400, 'shorter than an hour');
  t.equal((await get(berlin, '/api/stats_leaderboard.json?from_time=01.03.2024%2010:00%20%2B0100&to_time=2024-03-01%2011:00')).statusCode, 200, 'an offset and the zone agree on the hour');
  t.equal((await get(berlin, '/api/stats_leaderboard.json?from_time=2024-02-30&to_time=2024-03-20')).statusCode, 400, 'no 30 February');
  await t.rejects(startSimulator({ timezone: 'Mars/Olympus' }), /IANA time zone/);
});
