import t from 'tap';
import { DateTime } from 'luxon';
import { periodWindow, PeriodWindows, PERIODS, type Period, type Weekday } from '../../src/deskie/periods.js';

const at = (iso: string, zone: string): number => DateTime.fromISO(iso, { zone }).toMillis();
const window = (period: Period, iso: string, zone = 'UTC', weekStart: Weekday = 1) => {
  const w = periodWindow(period, at(iso, zone), zone, weekStart);
  return { from: w.from.toISO(), to: w.to.toISO(), changesAt: w.changesAt?.toISO() ?? null };
};

t.test('every documented period resolves to a window that ends after it starts', async (t) => {
  for (const period of PERIODS) {
    const w = periodWindow(period, at('2026-11-28T12:00:00', 'UTC'), 'UTC', 1);
    t.ok(w.to > w.from, `${period} ends after it starts`);
  }
});

t.test('today and yesterday turn over at midnight in the account zone', async (t) => {
  t.same(window('today', '2026-11-28T23:59:50'), {
    from: '2026-11-28T00:00:00.000Z',
    to: '2026-11-29T00:00:00.000Z',
    changesAt: '2026-11-29T00:00:00.000Z',
  });
  t.same(window('yesterday', '2026-11-29T00:00:30').from, '2026-11-28T00:00:00.000Z', 'yesterday after midnight is the day before');
  t.same(window('yesterday', '2026-11-28T23:59:50').from, '2026-11-27T00:00:00.000Z', 'yesterday before midnight is two days back');
});

t.test('weeks start on Monday unless configured otherwise', async (t) => {
  // 2026-11-29 is a Sunday.
  t.equal(window('this_week', '2026-11-29T12:00:00').from, '2026-11-23T00:00:00.000Z', 'Monday start');
  t.equal(window('this_week', '2026-11-29T12:00:00', 'UTC', 7).from, '2026-11-29T00:00:00.000Z', 'Sunday start');
  t.same(window('last_week', '2026-11-30T00:00:01'), {
    from: '2026-11-23T00:00:00.000Z',
    to: '2026-11-30T00:00:00.000Z',
    changesAt: '2026-12-07T00:00:00.000Z',
  });
});

t.test('months count back in calendar months', async (t) => {
  t.same(window('last_month', '2026-11-30T23:59:59'), {
    from: '2026-10-01T00:00:00.000Z',
    to: '2026-11-01T00:00:00.000Z',
    changesAt: '2026-12-01T00:00:00.000Z',
  });
  t.equal(window('last_month', '2026-12-01T00:00:00').from, '2026-11-01T00:00:00.000Z', 'December asks for November');
  t.equal(window('month_2', '2023-11-15T00:00:00').from, '2023-09-01T00:00:00.000Z', 'in November month_2 is September');
  t.equal(window('month_6', '2023-11-15T00:00:00').from, '2023-05-01T00:00:00.000Z', 'in November month_6 is May');
  t.same(window('3_previous_months', '2026-02-10T00:00:00'), {
    from: '2025-11-01T00:00:00.000Z',
    to: '2026-02-01T00:00:00.000Z',
    changesAt: '2026-03-01T00:00:00.000Z',
  });
  t.equal(window('6_previous_months', '2026-02-10T00:00:00').from, '2025-08-01T00:00:00.000Z');
});

t.test('years turn over on 1 January', async (t) => {
  t.same(window('this_year', '2026-12-31T23:59:30'), {
    from: '2026-01-01T00:00:00.000Z',
    to: '2027-01-01T00:00:00.000Z',
    changesAt: '2027-01-01T00:00:00.000Z',
  });
  t.equal(window('last_year', '2027-01-01T00:00:10').from, '2026-01-01T00:00:00.000Z');
});

t.test('last_N_days are the N calendar days ending today; last_24_hours rolls', async (t) => {
  t.same(window('last_7_days', '2026-11-28T10:00:00'), {
    from: '2026-11-22T00:00:00.000Z',
    to: '2026-11-29T00:00:00.000Z',
    changesAt: '2026-11-29T00:00:00.000Z',
  });
  t.same(window('last_24_hours', '2026-11-28T10:00:00'), {
    from: '2026-11-27T10:00:00.000Z',
    to: '2026-11-28T10:00:00.000Z',
    changesAt: null,
  });
});

t.test('the day of the October DST change in Europe/Berlin is 25 hours long', async (t) => {
  const w = periodWindow('today', at('2026-10-25T12:00:00', 'Europe/Berlin'), 'Europe/Berlin', 1);
  t.equal(w.from.toISO(), '2026-10-25T00:00:00.000+02:00');
  t.equal(w.to.toISO(), '2026-10-26T00:00:00.000+01:00');
  t.equal(w.to.toMillis() - w.from.toMillis(), 25 * 3600_000, '25 hours');
});

t.test('Pacific/Kiritimati (UTC+14) has its own midnight', async (t) => {
  // 09:59:50 UTC is 23:59:50 in Kiritimati; 10:00:30 UTC is already tomorrow there.
  t.equal(window('today', '2026-11-28T23:59:50', 'Pacific/Kiritimati').from, '2026-11-28T00:00:00.000+14:00');
  const after = periodWindow('today', Date.parse('2026-11-28T10:00:30Z'), 'Pacific/Kiritimati', 1);
  t.equal(after.from.toISO(), '2026-11-29T00:00:00.000+14:00');
  const utc = periodWindow('today', Date.parse('2026-11-28T10:00:30Z'), 'UTC', 1);
  t.equal(utc.from.toISO(), '2026-11-28T00:00:00.000Z', 'the same instant is still 28 November in UTC');
});

t.test('PeriodWindows remembers a window until it changes, and never across a change', async (t) => {
  const windows = new PeriodWindows('Europe/Berlin', 1);
  const before = windows.at('today', at('2026-11-28T23:59:59', 'Europe/Berlin'));
  t.equal(windows.at('today', at('2026-11-28T08:00:00', 'Europe/Berlin')).from.toISO(), '2026-11-28T00:00:00.000+01:00', 'an earlier instant the same day');
  t.equal(windows.at('today', at('2026-11-28T23:59:59.999', 'Europe/Berlin')), windows.at('today', at('2026-11-28T23:59:59.999', 'Europe/Berlin')), 'the same object while it holds');
  t.equal(before.from.toISO(), '2026-11-28T00:00:00.000+01:00');
  t.equal(windows.at('today', at('2026-11-29T00:00:00', 'Europe/Berlin')).from.toISO(), '2026-11-29T00:00:00.000+01:00', 'midnight starts a new one');
  t.equal(windows.at('today', at('2026-11-27T12:00:00', 'Europe/Berlin')).from.toISO(), '2026-11-27T00:00:00.000+01:00', 'a clock set back gets its own day');
  const rolling = windows.at('last_24_hours', at('2026-11-28T12:00:00', 'Europe/Berlin'));
  t.equal(rolling.to.toISO(), '2026-11-28T12:00:00.000+01:00', 'the rolling window follows the clock');
});

t.test('a day without a midnight (America/Santiago, 2026-09-06) ends at the next midnight, and every calendar period stays on day boundaries', async (t) => {
  const zone = 'America/Santiago';
  t.same(window('today', '2026-09-06T12:00:00', zone), {
    from: '2026-09-06T01:00:00.000-03:00',
    to: '2026-09-07T00:00:00.000-03:00',
    changesAt: '2026-09-07T00:00:00.000-03:00',
  }, 'the day starts at 01:00, when the clocks jump, and ends at the next midnight');
  t.same(window('yesterday', '2026-09-07T00:30:00', zone), {
    from: '2026-09-06T01:00:00.000-03:00',
    to: '2026-09-07T00:00:00.000-03:00',
    changesAt: '2026-09-08T00:00:00.000-03:00',
  }, 'at 00:30 on 7 September, yesterday is the 23-hour 6 September');
  t.equal(window('today', '2026-09-05T12:00:00', zone).to, '2026-09-06T01:00:00.000-03:00', 'the day before ends when the next one starts');
  const isDayStart = (iso: string | null) => iso === null || DateTime.fromISO(iso, { zone }).startOf('day').toISO() === DateTime.fromISO(iso, { zone }).toISO();
  for (const iso of ['2026-09-05T23:30:00', '2026-09-06T01:30:00', '2026-09-06T23:59:00', '2026-09-07T00:30:00', '2026-09-13T12:00:00', '2026-10-01T00:30:00']) {
    for (const period of PERIODS.filter((p) => p !== 'last_24_hours')) {
      const w = window(period, iso, zone);
      t.ok(isDayStart(w.from) && isDayStart(w.to) && isDayStart(w.changesAt), `${period} at ${iso} in Santiago: ${w.from} .. ${w.to}`);
      t.ok((w.to ?? '') > (w.from ?? ''), `${period} at ${iso} ends after it starts`);
    }
  }
  t.equal(window('this_week', '2026-09-06T12:00:00', zone).from, '2026-08-31T00:00:00.000-04:00', 'the week began on Monday, in winter time');
  t.equal(window('this_week', '2026-09-06T12:00:00', zone).to, '2026-09-07T00:00:00.000-03:00', 'and ends at Monday midnight in summer time');
});

t.test('the 23-hour March day in Berlin ends at midnight', async (t) => {
  t.same(window('today', '2026-03-29T12:00:00', 'Europe/Berlin'), {
    from: '2026-03-29T00:00:00.000+01:00',
    to: '2026-03-30T00:00:00.000+02:00',
    changesAt: '2026-03-30T00:00:00.000+02:00',
  });
});
