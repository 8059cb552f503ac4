import t from 'tap';
import { BUDGET_WINDOW_MS, CallWindow, forgetExpired } from '../../../src/upstream/budget/window.js';

const NOW = Date.parse('2026-11-28T12:00:00Z');
const never = Number.POSITIVE_INFINITY;

t.test('a call counts from when it is reserved until a minute after it was sent', async (t) => {
  const window = new CallWindow(4);
  window.hold(1, 2);
  t.equal(window.used(NOW), 2, 'two calls reserved');
  window.send(NOW);
  t.equal(window.used(NOW + BUDGET_WINDOW_MS - 1), 2, 'one sent and one reserved, within the minute');
  t.equal(window.freesAt(NOW), NOW + BUDGET_WINDOW_MS, 'the call sent leaves the minute 60 s after it went');
  t.equal(window.used(NOW + BUDGET_WINDOW_MS), 1, 'then only the reserved call counts');
  t.equal(window.freesAt(NOW + BUDGET_WINDOW_MS), undefined, 'and no call sent is left to leave');
  window.free(1, 1);
  t.equal(window.used(NOW + BUDGET_WINDOW_MS), 0, 'a released grant gives back its unsent call');
  t.equal(window.inFlight, 0, 'and its slot');
});

t.test('more calls wait for the oldest to leave the minute, or for a slot or a reserved call given back', async (t) => {
  const window = new CallWindow(2);
  window.hold(1, 1);
  window.send(NOW);
  t.equal(window.waitsUntil(1, true, 2, NOW), undefined, 'a second call fits in two a minute and two at once');
  t.equal(window.waitsUntil(2, true, 2, NOW), NOW + BUDGET_WINDOW_MS, 'two more wait for the first to leave the minute');
  window.hold(1, 1);
  t.equal(window.waitsUntil(1, true, 5, NOW), never, 'with both slots held, a new grant waits for one to be given back');
  t.equal(window.waitsUntil(1, false, 5, NOW), undefined, 'a grant that holds its slot asks only for calls');
  const reservedOnly = new CallWindow(2);
  reservedOnly.hold(1, 3);
  t.equal(reservedOnly.waitsUntil(1, false, 3, NOW), never, 'a minute full of reserved calls waits for them to be given back');
});

t.test('entries leave a log kept oldest first once a minute has passed since they were sent', async (t) => {
  const log = [NOW - BUDGET_WINDOW_MS, NOW - BUDGET_WINDOW_MS + 1, NOW];
  forgetExpired(log, NOW, (at) => at);
  t.same(log, [NOW - BUDGET_WINDOW_MS + 1, NOW], 'the entry sent exactly a minute ago is gone, the younger ones stay');
});
