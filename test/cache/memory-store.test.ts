import t from 'tap';
import { MemoryStore } from '../../src/cache/memory-store.js';
import { answerOf, storeContract, textOf } from './store-contract.js';
import { latch } from '../helpers/latch.js';

const MIB = 1024 * 1024;

t.test('MemoryStore keeps the store contract', async (t) => {
  storeContract(t, (clock) => new MemoryStore({ maxBytes: 16 * MIB, clock }));
});

t.test('MemoryStore stays within its byte bound, dropping the least recently used', async (t) => {
  const now = 0;
  const store = new MemoryStore({ maxBytes: MIB, clock: () => now });
  t.teardown(() => store.close());
  const body = Buffer.alloc(100 * 1024, 'x');
  for (let i = 0; i < 20; i++) {
    await store.fetch(`k${i}`, async () => answerOf(`k${i}`, body, now, 60_000));
  }
  t.ok(store.bytes <= MIB, `${store.bytes} bytes held`);
  t.ok(store.entries < 20 && store.entries >= 9, `${store.entries} entries kept`);
  t.ok(store.get('k19'), 'the newest is kept');
  t.equal(store.get('k0'), undefined, 'the oldest went');
  t.equal(store.evictions, 20 - store.entries, 'each entry dropped for the bound is counted as an eviction');
});

t.test('an answer larger than the whole store is served but not stored', async (t) => {
  const store = new MemoryStore({ maxBytes: MIB, clock: () => 0 });
  t.teardown(() => store.close());
  const result = await store.fetch('big', async () => answerOf('big', Buffer.alloc(MIB * 2), 0, 60_000));
  t.equal(result.outcome, 'miss');
  t.equal(result.stored, false);
  t.equal(store.entries, 0);
});

t.test('a fetch whose placeholder is evicted still answers its callers', async (t) => {
  const store = new MemoryStore({ maxBytes: MIB, clock: () => 0 });
  t.teardown(() => store.close());
  const { opened: gate, open: release } = latch();
  const slow = store.fetch('slow', async () => (await gate, answerOf('slow', Buffer.from('{}'), 0, 60_000)));
  // Fill the cache past its bound while the slow fetch is in flight.
  for (let i = 0; i < 12; i++) await store.fetch(`k${i}`, async () => answerOf(`k${i}`, Buffer.alloc(100 * 1024), 0, 60_000));
  release();
  const result = await slow;
  t.equal(textOf(result.answer), '{}');
});
