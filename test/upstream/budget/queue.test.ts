import t, { type Test } from 'tap';
import { type Block, CallQueue } from '../../../src/upstream/budget/queue.js';
import type { CallPriority } from '../../../src/upstream/budget/types.js';
import { refusalOf } from '../../helpers/budget.js';

const NOW = Date.parse('2026-11-28T12:00:00Z');
/** Held back until a slot or a call is given back. */
const HELD: Block = { shareOnly: false, freesAt: Number.POSITIVE_INFINITY };
/** Held back by the new-credential share alone. */
const SHARE_SPENT: Block = { shareOnly: true, freesAt: Number.POSITIVE_INFINITY };

/** A queue of named calls, each blocked as `blocks` says when the queue is looked at; `wait` gives `granted` or the refusal. */
function queueOf(t: Test) {
  const blocks = new Map<string, Block>();
  const granted: string[] = [];
  const queue = new CallQueue<string>({ blocked: (call) => blocks.get(call), grant: (call) => void granted.push(call), wake: () => queue.dispatch(NOW) });
  t.teardown(() => queue.close(() => new Error('closed')));
  const wait = (call: string, line: CallPriority | 'first') => refusalOf(queue.wait(call, line, 60_000, () => new Error(`${call} waited too long`)));
  return { queue, blocks, granted, wait };
}

t.test('more calls for a merge under way go first, then client misses, then refreshes', async (t) => {
  const { queue, blocks, granted, wait } = queueOf(t);
  for (const call of ['refresh', 'client', 'merge']) blocks.set(call, HELD);
  const waits = [wait('refresh', 'refresh'), wait('client', 'client'), wait('merge', 'first')];
  queue.dispatch(NOW);
  t.same(granted, [], 'nothing goes while the first in line is held back');
  blocks.clear();
  queue.dispatch(NOW);
  t.same(await Promise.all(waits), ['granted', 'granted', 'granted'], 'every wait ends granted');
  t.same(granted, ['merge', 'client', 'refresh'], 'in that order, whatever the order they came in');
  t.equal(queue.length, 0, 'and none is left waiting');
});

t.test('a call held back only by the new-credential share lets the calls behind it pass; any other block stops the queue', async (t) => {
  const { queue, blocks, granted, wait } = queueOf(t);
  blocks.set('junk', SHARE_SPENT);
  void wait('junk', 'client');
  const passed = [wait('known', 'client'), wait('refresh', 'refresh')];
  queue.dispatch(NOW);
  t.same(await Promise.all(passed), ['granted', 'granted'], 'the known credential and the refresh passed the junk one');
  t.equal(queue.length, 1, 'which still waits');
  blocks.set('full', HELD);
  void wait('full', 'client');
  void wait('later', 'refresh');
  queue.dispatch(NOW);
  t.same(granted, ['known', 'refresh'], 'a call held back by the minute or a slot stops every call behind it, refreshes included');
  t.equal(queue.length, 3, 'all three wait');
});

t.test('every waiting or sleeping call is refused at once, each with an error of its own', async (t) => {
  const { queue, blocks, wait } = queueOf(t);
  blocks.set('client', HELD);
  blocks.set('refresh', HELD);
  const waits = [wait('client', 'client'), wait('refresh', 'refresh'), refusalOf(queue.sleep(60_000))];
  let made = 0;
  queue.refuseAll(() => new Error(`refusal ${(made += 1)}`));
  t.same(
    (await Promise.all(waits)).map((refusal) => (refusal as Error).message),
    ['refusal 1', 'refusal 2', 'refusal 3'],
    'both calls in line and the one sleeping before it asks the shared log again got their own error',
  );
  t.equal(queue.length, 0, 'none is left waiting');
});
