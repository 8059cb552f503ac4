import type { IncomingMessage } from 'node:http';
import { randomBytes } from 'node:crypto';

/** A client's X-Request-Id is kept when it is an id and nothing more: no escaping in a header or a JSON log line. */
const CLIENT_ID = /^[\w.:@/+=-]{1,128}$/;

/** genReqId: a well-formed X-Request-Id, else a 30-bit per-process random prefix (replicas differ) and a counter. */
export function requestIds(): (request: IncomingMessage) => string {
  const prefix = randomBytes(4).toString('base64url').slice(0, 5);
  let counter = 0;
  return (request) => {
    const given = request.headers['x-request-id'];
    if (typeof given === 'string' && CLIENT_ID.test(given)) return given;
    counter += 1;
    return `${prefix}-${counter.toString(36)}`;
  };
}
