import { gunzipSync, gzipSync } from 'node:zlib';
import type { Test } from 'tap';
import type { AnswerStore, CachedAnswer } from '../../src/cache/store.js';
import { latch } from '../helpers/latch.js';

/** Builds a store reading the given clock; the contract closes it. */
export type StoreFactory = (clock: () => number) => AnswerStore | Promise<AnswerStore>;

/** A stored answer of `key` whose source is the given body, with no variant rendered, fresh for `ttlMs` and kept `keepMs` past that. */
export function answerOf(key: string, body: Buffer, fetchedAtMs: number, ttlMs: number, keepMs = 0): CachedAnswer {
  return {
    key,
    freshness: 'today',
    // Level 0: stored, not compressed, so a test's body size is what the store counts.
    source: { gzipped: gzipSync(body, { level: 0 }), contentType: 'application/json', endpoint: 'leaderboard', fromMs: 0, toMs: 0, zone: 'UTC' },
    variants: [],
    lastModified: new Date(fetchedAtMs).toUTCString(),
    fetchedAtMs,
    askedAtMs: fetchedAtMs,
    lastAskedAtMs: fetchedAtMs,
    hits: 0,
    upstreamMs: 0,
    expiresAtMs: fetchedAtMs + ttlMs,
    refreshAtMs: Number.POSITIVE_INFINITY,
    keepUntilMs: fetchedAtMs + ttlMs + keepMs,
    upstreamCalls: 1,
  };
}

const answer = (text: string, fetchedAtMs: number, ttlMs: number, keepMs = 0, key = 'k'): CachedAnswer =>
  answerOf(key, Buffer.from(JSON.stringify({ text })), fetchedAtMs, ttlMs, keepMs);
export const textOf = (held: CachedAnswer | undefined): string | undefined => (held ? gunzipSync(held.source.gzipped).toString() : undefined);
const bodyOf = (result: { answer: CachedAnswer }): string | undefined => textOf(result.answer);

/** What every AnswerStore must do; run against each implementation. */
export function storeContract(t: Test, makeStore: StoreFactory): void {
  const setup = async (t: Test) => {
    let now = 1_000_000;
    const store = await makeStore(() => now);
    t.teardown(() => store.close());
    return { store, advance: (ms: number) => (now += ms), now: () => now };
  };

  t.test('a fetch loads and holds the answer; get returns it without loading', async (t) => {
    const { store, now } = await setup(t);
    t.equal(store.get('k'), undefined, 'nothing held yet');
    let loads = 0;
    const load = async () => (loads++, answer('a', now(), 60_000));
    t.match(await store.fetch('k', load), { outcome: 'miss', stored: true });
    t.equal(textOf(store.get('k')), '{"text":"a"}');
    t.equal(loads, 1);
    t.equal(store.entries, 1);
    t.ok(store.bytes >= (bodyOf({ answer: store.get('k') as CachedAnswer }) ?? '').length, 'bytes count the body');
  });

  t.test('a variant added to a held answer is counted once resized, and the answer is kept as long as before', async (t) => {
    const { store, now, advance } = await setup(t);
    await store.fetch('k', async () => answer('grows', now(), 10_000));
    const held = store.get('k') as CachedAnswer;
    const before = store.bytes;
    held.variants.push({ variant: 0, body: Buffer.alloc(5_000), contentType: 'application/json', contentEncoding: undefined, contentDisposition: undefined, etag: '"v"' });
    store.resize(held);
    t.ok(store.bytes >= before + 5_000, `${before} bytes, then ${store.bytes}`);
    t.equal(store.get('k'), held, 'the same answer is held');
    advance(9_999);
    t.equal(store.get('k'), held);
    advance(1);
    t.equal(store.get('k'), undefined, 'gone when it was due to go');
    store.resize(held);
    t.equal(store.entries, 0, 'resizing an answer no longer held does not bring it back');
  });

  t.test('an answer that grows while a load for its key runs is counted when the load ends, and the load is not disturbed', async (t) => {
    const { store, now } = await setup(t);
    // Fresh: reloaded while fresh, as for a credential's recheck.
    await store.fetch('k', async () => answer('old', now(), 10_000, 60_000));
    const { opened: gate, open: release } = latch();
    const failing = store.fetch('k', async () => {
      await gate;
      throw new Error('deskie is down');
    });
    const held = store.get('k') as CachedAnswer;
    const before = store.bytes;
    held.variants.push({ variant: 0, body: Buffer.alloc(5_000), contentType: 'application/json', contentEncoding: undefined, contentDisposition: undefined, etag: '"v"' });
    store.resize(held);
    release();
    await t.rejects(failing, /deskie is down/, 'the load ran to its end');
    t.equal(store.get('k'), held, 'the answer is still held');
    t.ok(store.bytes >= before + 5_000, `${before} bytes, then ${store.bytes}`);
  });

  t.test('concurrent fetches of one key share a single load', async (t) => {
    const { store, now } = await setup(t);
    let loads = 0;
    const { opened: gate, open: release } = latch();
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
    t.ok(results.every((r) => r.stored), 'every waiter is told the answer was stored');
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

  t.test('a failed load over a held answer keeps it, and get returns it while the load runs', async (t) => {
    const { store, now, advance } = await setup(t);
    await store.fetch('k', async () => answer('old', now(), 10_000, 60_000));
    advance(20_000);
    const { opened: gate, open: release } = latch();
    const failing = store.fetch('k', async () => {
      await gate;
      throw new Error('deskie is down');
    });
    t.equal(textOf(await store.peek('k')), '{"text":"old"}', 'held while the load runs');
    release();
    await t.rejects(failing, /deskie is down/);
    t.equal(textOf(await store.peek('k')), '{"text":"old"}', 'still held after it failed');
  });

  t.test('a fetch over a held answer replaces it', async (t) => {
    const { store, now, advance } = await setup(t);
    await store.fetch('k', async () => answer('first', now(), 10_000, 60_000));
    advance(10_000);
    const refreshed = await store.fetch('k', async () => answer('second', now(), 10_000));
    t.equal(refreshed.outcome, 'refreshed');
    t.equal(bodyOf(refreshed), '{"text":"second"}');
    t.equal(textOf(store.get('k')), '{"text":"second"}');
  });

  t.test('an answer is held until its keepUntilMs, not merely its freshness', async (t) => {
    const { store, advance, now } = await setup(t);
    await store.fetch('k', async () => answer('kept', now(), 10_000, 5_000));
    advance(14_999);
    t.equal(textOf(await store.peek('k')), '{"text":"kept"}', 'expired but kept');
    advance(1);
    t.equal(await store.peek('k'), undefined, 'gone at keepUntilMs');
  });

  t.test('an answer already past its keepUntilMs is handed to its callers and not stored', async (t) => {
    const { store, now } = await setup(t);
    const result = await store.fetch('k', async () => answer('late', now() - 10, 5));
    t.equal(bodyOf(result), '{"text":"late"}');
    t.equal(result.stored, false);
    t.equal(store.get('k'), undefined);
    t.equal(await store.peek('k'), undefined);
  });

  t.test('keys are independent', async (t) => {
    const { store, now } = await setup(t);
    await store.fetch('a', async () => answer('a', now(), 60_000, 0, 'a'));
    const b = await store.fetch('b', async () => answer('b', now(), 60_000, 0, 'b'));
    t.equal(b.outcome, 'miss');
    t.equal(bodyOf(b), '{"text":"b"}');
  });

  t.test('list gives the answers held; delete drops one, and the next fetch loads again', async (t) => {
    const { store, now } = await setup(t);
    await store.fetch('a', async () => answer('a', now(), 60_000, 0, 'a'));
    await store.fetch('b', async () => answer('b', now(), 60_000, 0, 'b'));
    t.same((await store.list()).map((held) => held.key).sort(), ['a', 'b']);
    t.equal(await store.delete('a'), true, 'a held answer is deleted');
    t.equal(await store.delete('a'), false, 'nothing is held any more');
    t.equal(store.get('a'), undefined);
    t.equal(await store.peek('a'), undefined);
    t.same((await store.list()).map((held) => held.key), ['b']);
    const again = await store.fetch('a', async () => answer('a2', now(), 60_000, 0, 'a'));
    t.equal(again.outcome, 'miss', 'the deleted key is loaded anew');
  });

  t.test("dropEnding drops one partition's answers, whatever characters the keys hold", async (t) => {
    const { store, now } = await setup(t);
    for (const key of ['a?period=today#p1', 'b*[x]#p[2]', 'c?q=*#p1', 'd#p1x']) await store.fetch(key, async () => answer(key, now(), 60_000, 0, key));
    t.equal(await store.dropEnding('#none'), 0);
    t.equal(await store.dropEnding('#p1'), 2);
    t.same((await store.list()).map((held) => held.key).sort(), ['b*[x]#p[2]', 'd#p1x'], "another partition's answers stay");
    t.equal(await store.dropEnding('#p[2]'), 1, 'glob characters are matched as themselves');
    t.same((await store.list()).map((held) => held.key), ['d#p1x']);
  });

  t.test('dropEnding drops an answer while a reload of it runs, and the reload is not kept', async (t) => {
    const { store, now, advance } = await setup(t);
    await store.fetch('k#p1', async () => answer('old', now(), 60_000, 0, 'k#p1'));
    const { opened: gate, open: release } = latch();
    const reload = store.fetch('k#p1', async () => (await gate, answer('reloaded', now(), 60_000, 0, 'k#p1')));
    t.equal(await store.dropEnding('#p1'), 1, 'the answer held during its reload is dropped');
    release();
    await reload;
    advance(1);
    t.equal(store.get('k#p1'), undefined);
    t.equal(await store.peek('k#p1'), undefined, 'nor kept anywhere');
  });

  t.test('a load under way when its key is deleted answers its callers and is not kept', async (t) => {
    const { store, now } = await setup(t);
    const { opened: gate, open: release } = latch();
    const slow = store.fetch('k', async () => (await gate, answer('late', now(), 60_000)));
    await store.delete('k');
    release();
    t.equal(bodyOf(await slow), '{"text":"late"}', 'its caller gets the answer');
    t.equal(store.get('k'), undefined, 'the purged key stays empty');
    t.equal(await store.peek('k'), undefined, 'nowhere');
  });

  t.test('an answer being reloaded is still listed; deleted then, a failing reload does not bring it back', async (t) => {
    const { store, now } = await setup(t);
    await store.fetch('k', async () => answer('old', now(), 60_000, 60_000));
    let fail: (error: Error) => void = () => {};
    const reload = store.fetch('k', () => new Promise<CachedAnswer>((_resolve, reject) => (fail = reject)));
    t.same((await store.list()).map(textOf), ['{"text":"old"}'], 'the held answer is listed while its reload runs');
    t.equal(await store.delete('k'), true);
    fail(new Error('Deskie failed'));
    await t.rejects(reload);
    t.equal(store.get('k'), undefined, 'the purged answer stays purged');
    t.equal(await store.peek('k'), undefined, 'nowhere');
  });

  t.test('a store is usable until it is closed', async (t) => {
    const { store } = await setup(t);
    t.equal(store.usable, true);
    t.equal(store.evictions, 0, 'nothing evicted yet');
    await store.close();
    t.equal(store.usable, false);
  });
}
