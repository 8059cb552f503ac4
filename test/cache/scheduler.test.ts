import t from 'tap';
import { timerScheduler } from '../../src/cache/scheduler.js';
import { eventually } from '../helpers/eventually.js';

t.test('a task runs once the clock reaches its time, and not at all once cancelled', async (t) => {
  const scheduler = timerScheduler(Date.now);
  let ran = 0;
  scheduler.at(Date.now() + 5, () => (ran += 1));
  let cancelledRan = false;
  const cancel = scheduler.at(Date.now() + 5, () => (cancelledRan = true));
  cancel();
  t.ok(await eventually(() => ran === 1), 'the task ran');
  await new Promise((resolve) => setTimeout(resolve, 30));
  t.equal(ran, 1, 'once');
  t.notOk(cancelledRan, 'the cancelled task did not run');
});

t.test('a timer that fires before the clock says so (a wall clock set back) is armed again', async (t) => {
  let offsetMs = 0;
  const clock = (): number => Date.now() + offsetMs;
  const scheduler = timerScheduler(clock);
  let ranAtMs: number | undefined;
  const atMs = clock();
  scheduler.at(atMs, () => (ranAtMs = clock()));
  offsetMs = -40;
  t.ok(await eventually(() => ranAtMs !== undefined), 'it ran in the end');
  t.ok((ranAtMs as number) >= atMs, 'not before its time on the clock');
});
