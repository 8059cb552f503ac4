import type { IncomingMessage } from 'node:http';
import { randomBytes } from 'node:crypto';

/**
 * A client's X-Request-Id is kept when it is an id and nothing more: up to
 * 128 characters that need no escaping in a header or a JSON log line.
 */
const CLIENT_ID = /^[\w.:@/+=-]{1,128}$/;

const ARRIVED_AT = Symbol('arrivedAt');
type ArrivedRequest = IncomingMessage & { [ARRIVED_AT]?: number };

/**
 * Fastify's genReqId: the client's X-Request-Id when well-formed, otherwise
 * this process's random prefix and a counter (unique across replicas without
 * a random number per request). It is called as the request arrives, so it
 * also notes the time for the access log's duration.
 */
export function requestIds(): (request: IncomingMessage) => string {
  const prefix = randomBytes(6).toString('base64url');
  let counter = 0;
  return (request) => {
    (request as ArrivedRequest)[ARRIVED_AT] = performance.now();
    const given = request.headers['x-request-id'];
    if (typeof given === 'string' && CLIENT_ID.test(given)) return given;
    counter += 1;
    return `${prefix}-${counter.toString(36)}`;
  };
}

/** Milliseconds since the request arrived, to 0.01 ms. */
export function elapsedMs(request: IncomingMessage): number {
  const arrivedAt = (request as ArrivedRequest)[ARRIVED_AT];
  return arrivedAt === undefined ? 0 : Math.round((performance.now() - arrivedAt) * 100) / 100;
}
