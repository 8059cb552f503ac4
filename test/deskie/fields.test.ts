import t from 'tap';
import { normalizeBody, normalizeValue } from '../../src/deskie/fields.js';

t.test('percent fields become numbers in percent units', async (t) => {
  t.equal(normalizeValue('percent', '21.9%'), 21.9);
  t.equal(normalizeValue('percent', '0%'), 0);
  t.equal(normalizeValue('percent', '100%'), 100);
  t.equal(normalizeValue('percent', 72), 72, 'a number stays a number');
});

t.test('"-" in a numeric or percent field becomes null', async (t) => {
  t.equal(normalizeValue('percent', '-'), null);
  t.equal(normalizeValue('number', '-'), null);
});

t.test('numeric strings in numeric fields become numbers', async (t) => {
  t.equal(normalizeValue('number', '3'), 3);
  t.equal(normalizeValue('number', '4.5'), 4.5);
  t.equal(normalizeValue('number', 'n/a'), 'n/a', 'anything else is kept as sent');
});

t.test('dates become ISO 8601 with their offset', async (t) => {
  t.equal(normalizeValue('date', 'Thu, 16 Jul 2020 15:00:35 +0300'), '2020-07-16T15:00:35+03:00');
  t.equal(normalizeValue('date', 'yesterday'), 'yesterday', 'an unreadable date is kept as sent');
});

t.test('text and identifier fields are never touched', async (t) => {
  for (const value of ['42', '100%', '-', '', ' 7 ']) {
    t.equal(normalizeValue('text', value), value, `text ${JSON.stringify(value)}`);
    t.equal(normalizeValue('id', value), value, `id ${JSON.stringify(value)}`);
  }
});

t.test('a leaderboard keeps its envelope and cleans its staff fields', async (t) => {
  const body = {
    '0': { staff: { staff_id: 1, staff_name: '100%', response_sla_violated: '0.9%', ratings_of_responses: '-', closed_cases: 19, brand_new: '5%' } },
    '1': { staff: { staff_id: 2, staff_name: '-', resolution_sla_violated: '21.9%' }, extra: 'kept' },
  };
  t.same(normalizeBody('leaderboard', body), {
    '0': { staff: { staff_id: 1, staff_name: '100%', response_sla_violated: 0.9, ratings_of_responses: null, closed_cases: 19, brand_new: '5%' } },
    '1': { staff: { staff_id: 2, staff_name: '-', resolution_sla_violated: 21.9 }, extra: 'kept' },
  });
});

t.test('satisfaction ratings become numbers, comments stay text, total_count stays', async (t) => {
  const body = {
    '0': { rating_id: 79, rating: '3', rating_comment: '42', case_number: '882-935664', created_at: 'Thu, 16 Jul 2020 15:00:35 +0300' },
    '1': { rating_id: 78, rating: '2', rating_comment: '-', case_number: '898-213499', updated_at: 'Thu, 16 Jul 2020 14:54:50 +0300' },
    total_count: 8,
  };
  t.same(normalizeBody('satisfaction', body), {
    '0': { rating_id: 79, rating: 3, rating_comment: '42', case_number: '882-935664', created_at: '2020-07-16T15:00:35+03:00' },
    '1': { rating_id: 78, rating: 2, rating_comment: '-', case_number: '898-213499', updated_at: '2020-07-16T14:54:50+03:00' },
    total_count: 8,
  });
});

t.test('a field named __proto__ passes through as data', async (t) => {
  const body = JSON.parse('{"0":{"rating":"4","__proto__":{"x":1}},"total_count":1}') as unknown;
  const normalized = normalizeBody('satisfaction', body) as Record<string, Record<string, unknown>>;
  t.equal(JSON.stringify(normalized), '{"0":{"rating":4,"__proto__":{"x":1}},"total_count":1}');
});

t.test('bodies that are not records pass through', async (t) => {
  t.same(normalizeBody('leaderboard', []), [], 'an empty list');
  t.same(normalizeBody('staff_statuses', { '0': 'odd', last_page: true }), { '0': 'odd', last_page: true });
  t.equal(normalizeBody('satisfaction', null), null);
});
