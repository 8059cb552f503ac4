import t from 'tap';
import { type Collect, HeapGuard } from '../src/heap-guard.js';

/** A stand-in for V8's gc(): counts its calls and finishes when told. */
function fakeCollect() {
  const calls: unknown[] = [];
  let finish: () => void = () => {};
  const collect = ((options: unknown) => {
    calls.push(options);
    return new Promise<void>((resolve) => (finish = resolve));
  }) as Collect;
  return { collect, calls, finish: () => finish() };
}

t.test('a fetch past the headroom starts one asynchronous major collection, and none while it runs', async (t) => {
  const { collect, calls, finish } = fakeCollect();
  const guard = new HeapGuard(0, collect);
  t.equal(guard.active, true);
  guard.afterFetch();
  t.same(calls, [{ type: 'major', execution: 'async' }], 'the heap is past a headroom of 0');
  guard.afterFetch();
  guard.afterFetch();
  t.equal(calls.length, 1, 'not again while one runs');
  finish();
  await new Promise((resolve) => setImmediate(resolve));
  guard.afterFetch();
  t.equal(calls.length, 2, 'once it is done, the next fetch past the headroom starts another');
});

t.test('within the headroom nothing is collected', async (t) => {
  const { collect, calls } = fakeCollect();
  const guard = new HeapGuard(1024 * 1024 * 1024, collect);
  for (let i = 0; i < 100; i++) guard.afterFetch();
  t.equal(calls.length, 0);
});

t.test('without --expose-gc the guard does nothing', async (t) => {
  const guard = new HeapGuard(0, undefined);
  t.equal(guard.active, false);
  t.doesNotThrow(() => guard.afterFetch());
});
