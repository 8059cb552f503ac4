import t from 'tap';
import { ProxyError } from '../../src/http/errors.js';
import { MAX_BODY_DEPTH, parseDeskieBody } from '../../src/upstream/deskie.js';

t.test('a 200 whose body is not a JSON object is Deskie failing, not data', async (t) => {
  const cases: Array<[string, RegExp]> = [
    ['[]', /an array where a JSON object was expected/],
    ['[1,2,3]', /an array/],
    ['null', /null where a JSON object/],
    ['"hello"', /a string where/],
    ['123', /a number where/],
    ['true', /a boolean where/],
    ['{"0":', /not JSON/],
    ['', /not JSON/],
    [`{"0":${'['.repeat(MAX_BODY_DEPTH)}${']'.repeat(MAX_BODY_DEPTH)}}`, /nested deeper than 32 levels/],
  ];
  for (const [body, message] of cases) {
    try {
      parseDeskieBody(Buffer.from(body));
      t.fail(`${body.slice(0, 20)} was accepted`);
    } catch (error) {
      t.ok(error instanceof ProxyError && error.statusCode === 502 && error.failure === 'invalid-answer', `${body.slice(0, 20)}: a 502 that stale-if-error may cover`);
      t.match((error as Error).message, message);
    }
  }
  t.same(parseDeskieBody(Buffer.from('{"0":{"staff":{"staff_id":1}},"last_page":true}')), { 0: { staff: { staff_id: 1 } }, last_page: true });
  t.same(parseDeskieBody(Buffer.from(`{"0":${'['.repeat(MAX_BODY_DEPTH - 1)}${']'.repeat(MAX_BODY_DEPTH - 1)}}`)), { 0: JSON.parse(`${'['.repeat(MAX_BODY_DEPTH - 1)}${']'.repeat(MAX_BODY_DEPTH - 1)}`) }, 'up to the bound is fine');
});
