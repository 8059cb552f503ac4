import { hash, timingSafeEqual } from 'node:crypto';

/** RFC 6750 §2.1's bearer Authorization header. */
const BEARER = /^bearer[ \t]+(\S+)[ \t]*$/i;

const digest = (value: string): Buffer => hash('sha256', value, 'buffer');

/** Whether an Authorization header carries `token` as a bearer token, compared in constant time (see BearerTokens). */
export function bearerMatcher(token: string): (authorization: string | undefined) => boolean {
  const tokens = new BearerTokens([{ name: 'token', token }]);
  return (authorization) => tokens.find(authorization) !== undefined;
}

const BASIC = /^basic[ \t]+([A-Za-z0-9+/=]+)[ \t]*$/i;

/** `token` as a bearer token, or the password of Basic credentials (a browser's login prompt, for /status, /metrics). */
export function tokenMatcher(token: string): (authorization: string | undefined) => boolean {
  const bearer = bearerMatcher(token);
  return (authorization) => {
    const basic = BASIC.exec(authorization ?? '')?.[1];
    if (basic === undefined) return bearer(authorization);
    const decoded = Buffer.from(basic, 'base64').toString('utf8');
    return bearer(`Bearer ${decoded.slice(decoded.indexOf(':') + 1)}`);
  };
}

/** A token as the operator named it: the name goes in logs and metrics, the token nowhere. */
export interface NamedToken {
  readonly name: string;
  readonly token: string;
}

/** Named tokens, holders made once; matching never stops early: timing shows neither which token nor how much. */
export class BearerTokens<Holder = string> {
  #entries: ReadonlyArray<{ readonly digest: Buffer; readonly name: string; readonly holder: Holder }> = [];
  readonly #holder: (name: string) => Holder;

  constructor(tokens: readonly NamedToken[], holder: (name: string) => Holder = (name) => name as Holder) {
    this.#holder = holder;
    this.replace(tokens);
  }

  /** Swaps the whole set at once (a reload): a request sees the old set or the new, never a mix. */
  replace(tokens: readonly NamedToken[]): void {
    this.#entries = tokens.map(({ name, token }) => ({ digest: digest(token), name, holder: this.#holder(name) }));
  }

  get names(): string[] {
    return this.#entries.map((entry) => entry.name);
  }

  find(authorization: string | undefined): Holder | undefined {
    const given = BEARER.exec(authorization ?? '')?.[1];
    const presented = digest(given ?? '');
    let found: Holder | undefined;
    for (const entry of this.#entries) {
      if (timingSafeEqual(presented, entry.digest) && found === undefined) found = entry.holder;
    }
    return given === undefined ? undefined : found;
  }
}
