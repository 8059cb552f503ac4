import t from 'tap';
import { toCsv } from '../src/formats/csv.js';
import { answerSource, renderVariant } from '../src/formats/render.js';
import { chooseCoding, chooseFormat, describeVariant, variantOf } from '../src/formats/representations.js';
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

t.test('the coding comes from Accept-Encoding: br before gzip on a tie, the higher q-value first, identity otherwise', async (t) => {
  t.equal(chooseCoding(undefined), 'identity');
  t.equal(chooseCoding(''), 'identity');
  t.equal(chooseCoding('gzip, deflate, br, zstd'), 'br');
  t.equal(chooseCoding('gzip'), 'gzip');
  t.equal(chooseCoding('x-gzip'), 'gzip', 'the old name of gzip');
  t.equal(chooseCoding('br;q=0.2, gzip;q=0.8'), 'gzip');
  t.equal(chooseCoding('GZIP;Q=0.5'), 'gzip', 'names and parameters are case-insensitive');
  t.equal(chooseCoding('*;q=0.5, br;q=0'), 'gzip', '* stands for what is not named');
  t.equal(chooseCoding('gzip;q=0, br;q=0'), 'identity');
  t.equal(chooseCoding('deflate, identity'), 'identity', 'deflate is not kept: its two meanings confuse clients');
  for (let i = 0; i < 300; i++) chooseCoding(`gzip;q=0.${i}`);
  t.equal(chooseCoding('gzip, deflate, br, zstd'), 'br', 'still right once the remembered values were dropped');
});

t.test('every variant number names one format and coding', async (t) => {
  const seen = new Set<number>();
  for (const format of ['normalized', 'raw', 'rows', 'csv'] as const) {
    for (const bom of [false, true]) {
      for (const coding of ['identity', 'gzip', 'br'] as const) {
        const variant = variantOf(format, bom, coding);
        seen.add(variant);
        t.same(describeVariant(variant), { rendering: bom && format === 'csv' ? 'csv+bom' : format, coding });
      }
    }
  }
  t.equal(seen.size, 15);
  t.throws(() => describeVariant(15), RangeError);
});

t.test('a body that a coding would not make smaller is sent as it is', async (t) => {
  const source = answerSource('leaderboard', Buffer.from('{}'), undefined, { fromMs: 0, toMs: 0, zone: 'UTC' });
  const small = renderVariant(source, 'key', variantOf('normalized', false, 'gzip'));
  t.equal(small.contentEncoding, undefined);
  t.equal(small.body.toString(), '{}');
  const raw = renderVariant(source, 'key', variantOf('raw', false, 'gzip'));
  t.equal(raw.contentEncoding, 'gzip', 'raw in gzip is the stored source itself');
  t.equal(raw.body, source.gzipped);
});
