import t from 'tap';
import { CredentialStanding, RECHECK_AHEAD, RECHECK_RETRY_MS } from '../../src/cache/credential-standing.js';
import { UpstreamAnswer } from '../../src/http/errors.js';

const RECHECK_MS = 60_000;
const REFUSAL_TTL_MS = 30_000;
const DUE_SOON_MS = RECHECK_MS * (1 - RECHECK_AHEAD);

/** A standing on a manual clock that starts at `startMs`. */
function standingOn(refusalTtlMs = REFUSAL_TTL_MS, startMs = 1_000_000) {
  const clock = { nowMs: startMs };
  const credentials = new CredentialStanding({ clock: () => clock.nowMs, recheckMs: RECHECK_MS, refusalTtlMs });
  return { clock, credentials };
}

const refusal = (status = 401) => new UpstreamAnswer(status, Buffer.from('{"error":"unauthorized"}'), 'application/json', undefined);

t.test('a partition Deskie never accepted is due, and its calls are new-credential calls', async (t) => {
  const { clock, credentials } = standingOn();
  t.equal(credentials.standing('p', clock.nowMs), 'due', 'Deskie must be asked first');
  t.equal(credentials.call('p').isNewCredential(), true, 'a call for it draws from the new-credential share');
});

t.test("a call's 200 accepts the credential as of when the call was made", async (t) => {
  const { clock, credentials } = standingOn();
  const madeAtMs = clock.nowMs;
  const call = credentials.call('p');
  clock.nowMs += 5_000; // Deskie took 5 s to answer
  call.accepted();
  t.equal(credentials.call('p').isNewCredential(), false, 'its calls are no longer new-credential calls');
  t.equal(credentials.standing('p', madeAtMs + DUE_SOON_MS - 1), 'accepted', 'accepted until the last part of the recheck time, counted from the call');
  t.equal(credentials.standing('p', madeAtMs + DUE_SOON_MS), 'due soon', 'due soon in the last part');
  t.equal(credentials.standing('p', madeAtMs + RECHECK_MS - 1), 'due soon', 'up to the recheck time');
  t.equal(credentials.standing('p', madeAtMs + RECHECK_MS), 'due', 'due from the recheck time on');
  t.equal(credentials.standing('other', madeAtMs + 1), 'due', 'another partition is not accepted by it');
});

t.test('a clock set back before the acceptance makes the partition due', async (t) => {
  const { clock, credentials } = standingOn();
  credentials.call('p').accepted();
  t.equal(credentials.standing('p', clock.nowMs - 1), 'due', 'the time since is unknown');
});

t.test('a refusal makes the partition due at once', async (t) => {
  const { clock, credentials } = standingOn();
  credentials.call('p').accepted();
  credentials.refused('p', refusal(), clock.nowMs);
  t.equal(credentials.standing('p', clock.nowMs), 'due', 'no longer accepted');
  t.equal(credentials.call('p').isNewCredential(), true, 'and its calls are new-credential calls again');
});

t.test('a call made before a refusal learns of it, and its 200 does not accept the credential', async (t) => {
  const { clock, credentials } = standingOn();
  const sentBefore = credentials.call('p');
  const error = refusal(403);
  clock.nowMs += 1_000;
  credentials.refused('p', error, clock.nowMs);
  t.equal(sentBefore.refusedSince(), error, "refusedSince() is Deskie's refusal");
  sentBefore.accepted();
  t.equal(credentials.standing('p', clock.nowMs), 'due', 'the partition stays due');
});

t.test('a call made after a refusal is not refused by it, and its 200 accepts the credential', async (t) => {
  const { clock, credentials } = standingOn();
  credentials.refused('p', refusal(), clock.nowMs);
  const sentAfter = credentials.call('p');
  t.equal(sentAfter.refusedSince(), undefined, 'refusedSince() is undefined');
  sentAfter.accepted();
  t.equal(credentials.standing('p', clock.nowMs), 'accepted', 'the partition is accepted again');
});

t.test("a refusal of one partition is not another partition's", async (t) => {
  const { clock, credentials } = standingOn();
  const other = credentials.call('other');
  credentials.refused('p', refusal(), clock.nowMs);
  t.equal(other.refusedSince(), undefined, "the other partition's call is not refused");
  other.accepted();
  t.equal(credentials.standing('other', clock.nowMs), 'accepted', 'and its 200 accepts it');
});

t.test('a refusal is answered from memory for the refusal time after its call was made, then forgotten', async (t) => {
  const { clock, credentials } = standingOn();
  const askedAtMs = clock.nowMs;
  const error = refusal();
  clock.nowMs += 2_000;
  credentials.refused('p', error, askedAtMs);
  t.equal(credentials.rememberedRefusal('p', askedAtMs + REFUSAL_TTL_MS - 1), error, 'remembered until the refusal time is up');
  t.equal(credentials.rememberedRefusal('p', askedAtMs + REFUSAL_TTL_MS), undefined, 'forgotten from then on');
  t.equal(credentials.rememberedRefusal('p', askedAtMs), undefined, 'and stays forgotten');
  t.equal(credentials.rememberedRefusal('other', askedAtMs), undefined, 'another partition has none');
});

t.test('with a refusal time of 0 a refusal is not answered from memory', async (t) => {
  const { clock, credentials } = standingOn(0);
  credentials.refused('p', refusal(), clock.nowMs);
  t.equal(credentials.rememberedRefusal('p', clock.nowMs), undefined, 'no remembered refusal');
});

t.test('an acceptance forgets the remembered refusal', async (t) => {
  const { clock, credentials } = standingOn();
  credentials.refused('p', refusal(), clock.nowMs);
  credentials.call('p').accepted();
  t.equal(credentials.rememberedRefusal('p', clock.nowMs), undefined, 'no remembered refusal within its time');
});

t.test('an answer fetched elsewhere moves the acceptance forward, never back', async (t) => {
  const { clock, credentials } = standingOn();
  const acceptedAtMs = clock.nowMs;
  credentials.acceptedAt('p', acceptedAtMs);
  t.equal(credentials.standing('p', acceptedAtMs + DUE_SOON_MS - 1), 'accepted', 'a first answer accepts the credential as of its call');
  credentials.acceptedAt('p', acceptedAtMs + 10_000);
  t.equal(credentials.standing('p', acceptedAtMs + RECHECK_MS), 'due soon', 'a newer one moves the acceptance forward');
  credentials.acceptedAt('p', acceptedAtMs);
  t.equal(credentials.standing('p', acceptedAtMs + RECHECK_MS), 'due soon', 'an older one leaves it where it was');
});

t.test('a due partition whose recheck Deskie could not answer is deferred until the retry time', async (t) => {
  const { clock, credentials } = standingOn();
  credentials.call('p').accepted();
  clock.nowMs += RECHECK_MS;
  credentials.recheckFailed('p');
  t.equal(credentials.standing('p', clock.nowMs + RECHECK_RETRY_MS - 1), 'deferred', 'answered from the cache, with no call, until the retry');
  t.equal(credentials.standing('p', clock.nowMs + RECHECK_RETRY_MS), 'due', 'due again at the retry');
});

t.test('a failed recheck does not defer a partition Deskie never accepted', async (t) => {
  const { clock, credentials } = standingOn();
  credentials.recheckFailed('p');
  t.equal(credentials.standing('p', clock.nowMs), 'due', 'Deskie must be asked first');
});

t.test('an acceptance, here or elsewhere, ends the wait for a retry', async (t) => {
  const { clock, credentials } = standingOn();
  credentials.call('p').accepted();
  credentials.call('q').accepted();
  clock.nowMs += RECHECK_MS;
  credentials.recheckFailed('p');
  credentials.recheckFailed('q');
  credentials.call('p').accepted();
  credentials.acceptedAt('q', clock.nowMs);
  clock.nowMs += RECHECK_MS;
  t.equal(credentials.standing('p', clock.nowMs), 'due', "p's new acceptance ran out, and no retry defers it");
  t.equal(credentials.standing('q', clock.nowMs), 'due', 'nor q, accepted by an answer fetched elsewhere');
});

t.test('a refusal ends the wait for a retry', async (t) => {
  const { clock, credentials } = standingOn();
  credentials.call('p').accepted();
  clock.nowMs += RECHECK_MS;
  credentials.recheckFailed('p');
  credentials.refused('p', refusal(), clock.nowMs);
  t.equal(credentials.standing('p', clock.nowMs), 'due', 'due, not deferred');
});

t.test("another replica's answer vouches for the partition within the recheck time of its call", async (t) => {
  const { clock, credentials } = standingOn();
  const askedAtMs = clock.nowMs;
  t.equal(credentials.vouchesFor('p', askedAtMs, askedAtMs + RECHECK_MS - 1), true, 'its call counts as an acceptance, though none is known here');
  t.equal(credentials.vouchesFor('p', askedAtMs, askedAtMs + RECHECK_MS), false, 'not past the recheck time');
  t.equal(credentials.vouchesFor('p', askedAtMs + 1, askedAtMs), false, 'nor for a call made after now (a clock set back)');
});

t.test("an old answer vouches for the partition while this process's own acceptance is recent", async (t) => {
  const { clock, credentials } = standingOn();
  const oldAskedAtMs = clock.nowMs - 2 * RECHECK_MS;
  credentials.call('p').accepted();
  t.equal(credentials.vouchesFor('p', oldAskedAtMs, clock.nowMs + RECHECK_MS - 1), true, 'vouches until the recheck time of the acceptance here');
});

t.test('an answer to a call made no later than a refusal here does not vouch for the partition', async (t) => {
  const { clock, credentials } = standingOn();
  const refusedAtMs = clock.nowMs;
  credentials.refused('p', refusal(), refusedAtMs);
  t.equal(credentials.vouchesFor('p', refusedAtMs, refusedAtMs + 1), false, 'a call made at the refusal proves nothing');
  t.equal(credentials.vouchesFor('p', refusedAtMs + 1, refusedAtMs + 2), true, 'a call made after it does');
});

t.test('a recheck ahead runs one at a time per partition', async (t) => {
  const { clock, credentials } = standingOn();
  t.equal(credentials.startRecheckAhead('p', clock.nowMs), true, 'the first starts');
  t.equal(credentials.startRecheckAhead('p', clock.nowMs), false, 'a second waits for it');
  t.equal(credentials.startRecheckAhead('q', clock.nowMs), true, "another partition's starts");
  credentials.recheckAheadEnded('p', false);
  t.equal(credentials.startRecheckAhead('p', clock.nowMs), true, 'the next starts once the first ended');
});

t.test('a recheck ahead Deskie could not answer is tried again after the retry time', async (t) => {
  const { clock, credentials } = standingOn();
  const startedAtMs = clock.nowMs;
  credentials.startRecheckAhead('p', startedAtMs);
  clock.nowMs += 2_000;
  credentials.recheckAheadEnded('p', true);
  t.equal(credentials.startRecheckAhead('p', clock.nowMs + RECHECK_RETRY_MS - 1), false, 'not before, counted from its end');
  t.equal(credentials.startRecheckAhead('p', clock.nowMs + RECHECK_RETRY_MS), true, 'again from then on');
});

t.test("a recheck ahead is answered by another replica's call made after the accepted part of the recheck time", async (t) => {
  const { clock, credentials } = standingOn();
  t.equal(credentials.recheckAheadAskedAfter(clock.nowMs), clock.nowMs - DUE_SOON_MS, 'a call made then leaves the credential accepted until now');
});
