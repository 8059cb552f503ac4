import t from 'tap';
import { DeskieAccount, type DeskieLimitHeaders, parseRetryAfter } from '../../../src/upstream/budget/account.js';
import { capturedLog } from '../../helpers/log.js';

const NOW = Date.parse('2026-11-28T12:00:00Z');

/** The account of a 20% reserve, its log lines captured. */
function accountWith() {
  const { logger, lines } = capturedLog('info');
  return { account: new DeskieAccount({ ratePerMinute: undefined, reserve: 0.2, log: logger }), lines };
}

const answer = (statusCode: number, rateLimitPerMinute?: string, callsLeft?: string, retryAfterSeconds?: number): DeskieLimitHeaders => ({
  statusCode,
  rateLimitPerMinute,
  callsLeft,
  retryAfterSeconds,
});

t.test('an answer is news for the other replicas when the limit, the pause or the circuit changes', async (t) => {
  const { account } = accountWith();
  t.equal(account.observe(answer(200, '100', '90'), NOW), true, 'a first limit is news');
  t.equal(account.observe(answer(200, '100', '80'), NOW), false, 'fewer calls left alone are not');
  t.equal(account.observe(answer(200, '100', '20'), NOW), true, 'calls down to the reserve pause for a minute');
  t.equal(account.observe(answer(429, undefined, '0', 5), NOW), true, 'a 429 opens the circuit');
  t.same(account.known, { accountLimit: 100, callsLeft: 0, pausedUntil: NOW + 60_000, circuitOpenUntil: NOW + 5_000 }, 'a 429 with no calls left does not pause again');
});

t.test("another replica's account is adopted; a pause or circuit only if it ends later", async (t) => {
  const { account } = accountWith();
  account.observe(answer(429, undefined, undefined, 30), NOW);
  account.adopt({ accountLimit: 50, callsLeft: 7, pausedUntil: NOW + 1_000, circuitOpenUntil: NOW + 10_000 });
  t.same(account.known, { accountLimit: 50, callsLeft: 7, pausedUntil: NOW + 1_000, circuitOpenUntil: NOW + 30_000 }, 'the limit and calls left as said, the later circuit kept');
  account.adopt({ accountLimit: null, callsLeft: null, pausedUntil: 0, circuitOpenUntil: 0 });
  t.match(account.known, { accountLimit: 50, callsLeft: 7 }, 'an account nobody has heard of changes nothing');
  t.equal(account.limitPerMinute, 40, '50 less a 20% reserve');
});

t.test('the state follows the clock, each change logged once', async (t) => {
  const { account, lines } = accountWith();
  account.observe(answer(429, undefined, undefined, 5), NOW);
  t.equal(account.update(NOW), 'circuit-open', 'a 429 opens the circuit');
  t.equal(account.update(NOW + 1_000), undefined, 'no change while it holds');
  account.adopt({ accountLimit: null, callsLeft: null, pausedUntil: NOW + 60_000, circuitOpenUntil: 0 });
  t.equal(account.update(NOW + 5_000), 'paused', 'then the pause another replica set');
  t.equal(account.closedUntil, NOW + 60_000, 'which ends a minute after it was set');
  t.equal(account.update(NOW + 60_000), 'open', 'then calls go again');
  t.same(
    lines.map((line) => line['budget']),
    ['circuit-open', 'paused', 'open'],
    'one line for each change',
  );
});

t.test('retry_after is taken only as a small whole number or an HTTP date', async (t) => {
  t.equal(parseRetryAfter('5', NOW), 5, 'a number of seconds');
  t.equal(parseRetryAfter(' 60 ', NOW), 60, 'with spaces around it');
  t.equal(parseRetryAfter('Sat, 28 Nov 2026 12:00:10 GMT', NOW), 10, 'an HTTP date, as seconds from now');
  t.equal(parseRetryAfter('Sat, 28 Nov 2026 11:00:00 GMT', NOW), 0, 'a date in the past is now');
  for (const junk of ['soon', '-5', '1.5', '999999999', '86401', 'Sun, 28 Nov 2027 12:00:00 GMT', '', undefined]) {
    t.equal(parseRetryAfter(junk, NOW), undefined, `${JSON.stringify(junk)} is ignored`);
  }
});
