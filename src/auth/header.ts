import type { IncomingMessage } from 'node:http';
import { badRequest } from '../http/errors.js';

/**
 * The longest Authorization header value accepted, in bytes. Basic
 * credentials of a Deskie e-mail and API key, or a bearer token, take a few
 * hundred; Node would otherwise take one up to its 16 kB of headers, and
 * every byte of it is hashed into the cache partition.
 */
export const MAX_AUTHORIZATION_BYTES = 4096;

/** The header's name as it is compared: a name of any other length is skipped without a look at its letters. */
const AUTHORIZATION = /^authorization$/i;
const AUTHORIZATION_LENGTH = 'authorization'.length;

/**
 * The request's one Authorization header, or undefined without one.
 *
 * More than one is a 400: Authorization is not a list (RFC 9110 §5.3, §11.6.2),
 * and Node keeps only the first in `request.headers`, so a proxy in front that
 * read the last would authorise one credential and this server use another.
 * One over MAX_AUTHORIZATION_BYTES is a 400 too. Both are refused before any
 * upstream call or cache lookup.
 *
 * Reads Node's `rawHeaders` (names at even indices, values as Latin-1 text,
 * one character a byte) and allocates nothing: it runs on every cache hit.
 */
export function authorizationOf(request: Pick<IncomingMessage, 'rawHeaders'>): string | undefined {
  const raw = request.rawHeaders;
  let found: string | undefined;
  for (let i = 0; i < raw.length; i += 2) {
    const name = raw[i] as string;
    if (name.length !== AUTHORIZATION_LENGTH || !AUTHORIZATION.test(name)) continue;
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
