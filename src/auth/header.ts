import type { IncomingMessage } from 'node:http';
import { badRequest } from '../http/errors.js';

/** The longest Authorization value accepted, in bytes: real credentials take a few hundred, and every byte is hashed into the partition. */
export const MAX_AUTHORIZATION_BYTES = 4096;

const AUTHORIZATION = /^authorization$/i;

/** Several Authorization headers are a 400 (RFC 9110 §5.3): Node keeps the first, a proxy in front may use the last. */
export function authorizationOf(request: Pick<IncomingMessage, 'rawHeaders'>): string | undefined {
  const raw = request.rawHeaders;
  let found: string | undefined;
  for (let i = 0; i < raw.length; i += 2) {
    const name = raw[i] as string;
    if (!AUTHORIZATION.test(name)) continue;
    if (found !== undefined) {
      throw badRequest(`the request has more than one Authorization header; send exactly one, of at most ${MAX_AUTHORIZATION_BYTES} bytes`);
    }
    found = raw[i + 1] as string;
  }
  if (found !== undefined && found.length > MAX_AUTHORIZATION_BYTES) {
    throw badRequest(`the Authorization header is ${found.length} bytes long; at most ${MAX_AUTHORIZATION_BYTES} are accepted`);
  }
  return found;
}
