import t from 'tap';
import type { AnswerStore } from '../src/cache/store.js';
import { Readiness } from '../src/observability/readiness.js';

const store = (usable: boolean) => ({ usable }) as AnswerStore;

t.test('not ready while starting, ready once started, not ready again once draining', async (t) => {
  const readiness = new Readiness();
  t.same(readiness.check(store(true)), { ready: false, status: 'starting' });
  readiness.markReady();
  t.same(readiness.check(store(true)), { ready: true, status: 'ready' });
  readiness.startDraining();
  t.same(readiness.check(store(true)), { ready: false, status: 'draining' });
  readiness.markReady();
  t.equal(readiness.state, 'draining', 'a draining process never becomes ready again');
});

t.test('a started process whose store is unusable is not ready', async (t) => {
  const readiness = new Readiness();
  readiness.markReady();
  t.same(readiness.check(store(false)), { ready: false, status: 'store-unusable' });
});
