import { createHash, timingSafeEqual } from 'node:crypto';

const BEARER = /^bearer[ \t]+(\S+)[ \t]*$/i;

const digest = (value: string): Buffer => createHash('sha256').update(value).digest();

/**
 * Whether an Authorization header carries `token` as a bearer token,
 * compared in constant time: both sides are hashed first, so neither the
 * token's length nor the position of the first wrong character shows in the
 * time taken.
 */
export function bearerMatcher(token: string): (authorization: string | undefined) => boolean {
  const expected = digest(token);
  return (authorization) => {
    const given = authorization === undefined ? undefined : BEARER.exec(authorization)?.[1];
    // A missing token is still hashed and compared, so it takes the same time as a wrong one.
    return timingSafeEqual(digest(given ?? ''), expected) && given !== undefined;
  };
}
