import t, { type Test } from 'tap';
import { request } from 'undici';
import { startSimulator, type Simulator, type SimulatorOptions } from '../src/simulator/index.js';
import { PERIODS } from '../src/simulator/params.js';
import { RateLimitWindow } from '../src/simulator/rate-limit.js';

type JsonObject = Record<string, unknown>;

const DEMO_AUTH = `Basic ${Buffer.from('demo@example.com:demo').toString('base64')}`;
const LEADERBOARD = '/api/stats_leaderboard.json';
const STAFF_STATUSES = '/api/stats_staff_statuses.json';
const SATISFACTION = '/api/stats_satisfaction.json';
/** Short enough to keep the suite fast, long enough to tell "hung" from "slow". */
const HANG_TIMEOUT_MS = 200;

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

  t.test('latencyMs delays the answer', async (t) => {
    const latencyMs = 150;
    const sim = await startSim(t, { knobs: { latencyMs } });
    const started = performance.now();
    const answer = await get(sim, `${LEADERBOARD}?period=today`);
    const elapsedMs = performance.now() - started;
    t.equal(answer.statusCode, 200, 'answers after the delay');
    t.ok(elapsedMs >= latencyMs - 5, `took at least ${latencyMs} ms (took ${elapsedMs.toFixed(0)})`);
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

  sim.resetCounters();
  t.equal(sim.calls, 0, 'resetCounters zeroes calls');
  t.same(sim.requests, [], 'resetCounters empties requests');
});
