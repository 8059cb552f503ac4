import t from 'tap';
import { toCsv } from '../src/formats/csv.js';
import { chooseFormat } from '../src/formats/representations.js';
import { toRows } from '../src/formats/rows.js';

const window = { from: '2026-11-01T00:00:00.000Z', to: '2026-12-01T00:00:00.000Z', timezone: 'UTC' };

t.test('fields beside the wrapper are kept in the row', async (t) => {
  const doc = toRows('leaderboard', { '0': { staff: { staff_id: 1 }, team: 'A' } }, window);
  t.same(doc.rows, [{ team: 'A', staff_id: 1 }]);
});

t.test('leaderboard rows are the staff objects', async (t) => {
  const doc = toRows('leaderboard', { '0': { staff: { staff_id: 1, closed_cases: 3 } }, '1': { staff: { staff_id: 2 } } }, window);
  t.same(doc, { rows: [{ staff_id: 1, closed_cases: 3 }, { staff_id: 2 }], last_page: null, total_count: null, window });
});

t.test('a staff status also yields its name and numeric id', async (t) => {
  const doc = toRows('staff_statuses', { '0': { status_change: { staff_id: 14, timestamp: 1, from: 'Online (1)', to: 'Lunch break (113)' } }, last_page: true }, window);
  t.same(doc.rows, [{ staff_id: 14, timestamp: 1, from: 'Online (1)', to: 'Lunch break (113)', from_name: 'Online', from_id: 1, to_name: 'Lunch break', to_id: 113 }]);
  t.equal(doc.last_page, true);
  const odd = toRows('staff_statuses', { '0': { status_change: { from: 'Custom', to: null } } }, window);
  t.same(odd.rows[0], { from: 'Custom', to: null, from_name: 'Custom', from_id: null, to_name: null, to_id: null }, 'a status without an id keeps its text');
});

t.test('csv has a header row, quotes what needs quoting and leaves numbers alone', async (t) => {
  const csv = toCsv([
    { id: 1, comment: 'plain', score: 21.9 },
    { id: 2, comment: 'with, comma and "quotes"', score: null, extra: 'late column' },
    { id: 3, comment: 'line\nbreak', score: -5 },
  ]);
  t.equal(
    csv,
    'id,comment,score,extra\r\n1,plain,21.9,\r\n2,"with, comma and ""quotes""",,late column\r\n3,"line\nbreak",-5,\r\n',
  );
});

t.test('csv defuses cells a spreadsheet would run as formulas, but keeps "-"', async (t) => {
  const csv = toCsv([{ a: '=SUM(A1)', b: '+1', c: '@cmd', d: '-', e: '-2.5', f: '-cmd', g: "-2+3+cmd|' /C calc'!A0" }]);
  t.equal(csv, "a,b,c,d,e,f,g\r\n'=SUM(A1),'+1,'@cmd,-,-2.5,'-cmd,'-2+3+cmd|' /C calc'!A0\r\n");
});

t.test('the format comes from format=, else from Accept, else normalized', async (t) => {
  t.equal(chooseFormat('rows', undefined), 'rows');
  t.equal(chooseFormat(undefined, 'text/csv'), 'csv');
  t.equal(chooseFormat(undefined, 'application/json, text/csv;q=0.5'), 'normalized');
  t.equal(chooseFormat(undefined, undefined), 'normalized');
  t.equal(chooseFormat(undefined, 'text/csv;q=0, application/json;q=0.1'), 'normalized', 'q=0 refuses CSV');
  t.equal(chooseFormat(undefined, 'text/csv;q=0'), 'normalized');
  t.equal(chooseFormat(undefined, 'text/csv, */*;q=0.1'), 'csv', 'CSV preferred over anything');
  t.equal(chooseFormat(undefined, 'application/json;q=0.5, text/csv;q=0.9'), 'csv');
  t.throws(() => chooseFormat('xml', undefined), /format must be one of normalized, raw, rows, csv/);
});
