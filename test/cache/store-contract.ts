import type { Test } from 'tap';
import type { AnswerStore, CachedAnswer } from '../../src/cache/store.js';

/** Builds a store reading the given clock; the contract closes it. */
export type StoreFactory = (clock: () => number) => AnswerStore | Promise<AnswerStore>;

/** A stored answer whose every format is the given body. */
export function answerOf(body: Buffer, fetchedAtMs: number, ttlMs: number): CachedAnswer {
  const representation = { body, contentType: 'application/json', etag: '"test"' };
  return {
    representations: { normalized: representation, raw: representation, rows: representation, csv: representation },
    lastModified: new Date(fetchedAtMs).toUTCString(),
    fetchedAtMs,
    expiresAtMs: fetchedAtMs + ttlMs,
  };
}

const answer = (text: string, fetchedAtMs: number, ttlMs: number): CachedAnswer =>
  answerOf(Buffer.from(JSON.stringify({ text })), fetchedAtMs, ttlMs);
const bodyOf = (result: { answer: CachedAnswer }): string => result.answer.representations.raw.body.toString();

/** What every AnswerStore must do; run against each implementation. */
export function storeContract(t: Test, makeStore: StoreFactory): void {
  const setup = async (t: Test) => {
    let now = 1_000_000;
    const store = await makeStore(() => now);
    t.teardown(() => store.close());
    return { store, advance: (ms: number) => (now += ms), now: () => now };
  };

  t.test('a miss loads and stores; the next fetch is a hit without loading', async (t) => {
    const { store, now } = await setup(t);
    let loads = 0;
    const load = async () => (loads++, answer('a', now(), 60_000));
    t.match(await store.fetch('k', load), { outcome: 'miss', stored: true });
    const hit = await store.fetch('k', load);
    t.equal(hit.outcome, 'hit');
    t.equal(bodyOf(hit), '{"text":"a"}');
    t.equal(loads, 1);
    t.equal(store.entries, 1);
    t.ok(store.bytes >= 4 * bodyOf(hit).length, 'bytes count every format');
  });

  t.test('concurrent fetches of one key share a single load', async (t) => {
    const { store, now } = await setup(t);
    let loads = 0;
    let release: () => void = () => {};
    const gate = new Promise<void>((resolve) => (release = resolve));
    const load = async () => {
      loads++;
      await gate;
      return answer('shared', now(), 60_000);
    };
    const pending = Array.from({ length: 10 }, () => store.fetch('k', load));
    release();
    const results = await Promise.all(pending);
    t.equal(loads, 1);
    t.same(results.map((r) => r.outcome).sort(), [...Array(9).fill('collapsed'), 'miss'], 'one load, nine waiters');
  });

  t.test('a failed load reaches every waiter and stores nothing', async (t) => {
    const { store, now } = await setup(t);
    let loads = 0;
    const failing = async () => {
      loads++;
      await new Promise((resolve) => setImmediate(resolve));
      throw new Error('deskie said no');
    };
    const results = await Promise.allSettled([store.fetch('k', failing), store.fetch('k', failing)]);
    t.same(results.map((r) => r.status), ['rejected', 'rejected']);
    t.equal(loads, 1, 'the waiter did not load again');
    t.equal(store.entries, 0);
    t.match(await store.fetch('k', async () => answer('later', now(), 1000)), { outcome: 'miss' });
  });

  t.test('an entry is fresh until its expiry and then loaded again', async (t) => {
    const { store, advance, now } = await setup(t);
    await store.fetch('k', async () => answer('first', now(), 10_000));
    advance(9_999);
    t.equal((await store.fetch('k', async () => answer('second', now(), 10_000))).outcome, 'hit');
    advance(1);
    const refreshed = await store.fetch('k', async () => answer('second', now(), 10_000));
    t.equal(refreshed.outcome, 'stale', 'expired exactly at expiresAtMs');
    t.equal(bodyOf(refreshed), '{"text":"second"}');
  });

  t.test('keys are independent', async (t) => {
    const { store, now } = await setup(t);
    await store.fetch('a', async () => answer('a', now(), 60_000));
    const b = await store.fetch('b', async () => answer('b', now(), 60_000));
    t.equal(b.outcome, 'miss');
    t.equal(bodyOf(b), '{"text":"b"}');
  });
}
