// What each fault knob sends instead of Deskie's data; `hang` and `drop` send nothing (the server acts on the socket).
import { errorReply, type SimulatorReply } from './endpoints.js';
import type { SimulatorFault, SimulatorKnobs } from './knobs.js';

/** What the `malformed` fault sends: the start of a leaderboard, cut mid-string. */
const MALFORMED_BODY = '{"0":{"staff":{"staff_id":42047,"staff_name":"John Sn';
/** What the `nonObject` fault sends: valid JSON, but not the object every Deskie answer is. */
const NON_OBJECT_BODY = '[1,2,3]';
/** Nesting of the `deepJson` body (about 200 KB): too deep for a recursive parser's stack. */
export const DEEP_JSON_DEPTH = 100_000;

/** The answer `fault` forces, or undefined to answer normally (also for `hang` and `drop`, which never answer). */
export function faultReply(fault: SimulatorFault, knobs: Pick<SimulatorKnobs, 'retryAfterSeconds' | 'retryAfter'>): SimulatorReply | undefined {
  switch (fault) {
    case 'error500':
      return errorReply(500, 'internal server error (simulated)');
    case 'rateLimited':
      return errorReply(429, 'rate limit exceeded (simulated)', {
        retry_after: knobs.retryAfter ?? String(knobs.retryAfterSeconds),
        api_calls_left: '0',
      });
    case 'malformed':
      return { statusCode: 200, body: MALFORMED_BODY };
    case 'redirect':
      return errorReply(301, 'moved (simulated)', { location: 'https://elsewhere.example/api/' });
    case 'nonObject':
      return { statusCode: 200, body: NON_OBJECT_BODY };
    case 'deepJson':
      // A Deskie-like object whose first record is nested arrays: {"0":[[[...]]]}.
      return { statusCode: 200, body: `{"0":${'['.repeat(DEEP_JSON_DEPTH)}${']'.repeat(DEEP_JSON_DEPTH)}}` };
    case 'none':
    case 'hang':
    case 'drop':
      return undefined;
  }
}
