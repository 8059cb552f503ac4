import { readFileSync } from 'node:fs';
import { unauthorized } from '../http/errors.js';
import { BearerTokens, type NamedToken } from './bearer.js';

/** Who asked: the Authorization sent to Deskie (it picks the partition), and in service mode the token's name (logged; the token never is). */
export interface Caller {
  readonly authorization: string;
  readonly client: string | undefined;
}

/** How a statistics request proves who it is: its Caller, or a 401 thrown. */
export type Authenticate = (authorization: string | undefined) => Caller;

/** pass-through: each dashboard's Deskie login, own cache; service: ours, one cache, tokens or none (trusted nets). */
export type Access =
  | { readonly mode: 'pass-through' }
  | {
      readonly mode: 'service';
      /** `Basic` and the base64 of DESKIE_EMAIL:DESKIE_API_KEY. */
      readonly authorization: string;
      readonly clients: 'none' | { readonly tokens: readonly NamedToken[]; readonly file: string | undefined };
    };

/** RFC 7617's scheme; the credentials themselves are Deskie's to judge. */
const BASIC = /^basic\s+\S/i;

const PASS_THROUGH_CHALLENGE = 'HTTP Basic credentials are required: your Deskie e-mail as user and API key as password';
const TOKEN_CHALLENGE = 'a client token is required: Authorization: Bearer <token>, as issued by whoever runs this proxy';

/** How a mode lets requests in, and with tokens the set a reload of PROXY_TOKENS_FILE swaps. */
export function clientAccess(access: Access): { readonly authenticate: Authenticate; readonly tokens: BearerTokens<Caller> | undefined } {
  if (access.mode === 'pass-through') {
    return {
      authenticate: (authorization) => {
        if (authorization === undefined || !BASIC.test(authorization)) throw unauthorized(PASS_THROUGH_CHALLENGE);
        return { authorization, client: undefined };
      },
      tokens: undefined,
    };
  }
  if (access.clients === 'none') {
    // The client's own Authorization, whatever it holds, is never forwarded.
    const everyone: Caller = { authorization: access.authorization, client: undefined };
    return { authenticate: () => everyone, tokens: undefined };
  }
  // Each token stands for its Caller: the proxy's credential and the token's name.
  const tokens = new BearerTokens(access.clients.tokens, (name): Caller => ({ authorization: access.authorization, client: name }));
  return {
    authenticate: (authorization) => {
      const caller = tokens.find(authorization);
      // One answer for no token, a Basic header and a wrong token: nothing tells which part was wrong.
      if (caller === undefined) throw unauthorized(TOKEN_CHALLENGE, 'Bearer realm="deskie-stats-proxy"');
      return caller;
    },
    tokens,
  };
}

/** Shortest client token accepted: 16 characters (`openssl rand -hex 32` makes 64). */
const MIN_TOKEN_LENGTH = 16;
/** A token's name, as logs and metric labels carry it. */
const TOKEN_NAME = /^[A-Za-z0-9][A-Za-z0-9_.-]{0,31}$/;
/** A name that looks like a token (`openssl rand -hex`): refused, so a line written the wrong way round cannot log its token. */
const TOKEN_LIKE_NAME = /^[0-9a-f]{16,}$/i;
/** RFC 6750 §2.1's b64token: what a bearer header carries as is. */
const TOKEN_CHARACTERS = /^[A-Za-z0-9\-._~+/]+=*$/;

export class TokenListError extends Error {
  override name = 'TokenListError';
}

/** PROXY_TOKENS: `name:token,name:token`. */
export function parseTokenList(text: string): NamedToken[] {
  const items = text
    .split(',')
    .map((item) => item.trim())
    .filter((item) => item !== '');
  return checkTokens(
    items.map((item, index) => {
      const colon = item.indexOf(':');
      const where = `PROXY_TOKENS item ${index + 1}`;
      if (colon <= 0) throw new TokenListError(`${where} must be name:token`);
      return { name: item.slice(0, colon), token: item.slice(colon + 1), where };
    }),
    'PROXY_TOKENS',
  );
}

/** PROXY_TOKENS_FILE: one `name token` a line, `#` comments. Empty is refused unless `allowEmpty` (a reload). */
export function parseTokenFile(text: string, path: string, { allowEmpty = false } = {}): NamedToken[] {
  const entries: Array<NamedToken & { where: string }> = [];
  for (const [index, line] of text.split(/\r?\n/).entries()) {
    const trimmed = line.trim();
    if (trimmed === '' || trimmed.startsWith('#')) continue;
    const where = `${path} line ${index + 1}`;
    const parts = trimmed.split(/\s+/);
    if (parts.length !== 2) throw new TokenListError(`${where} must be a name and a token, separated by a space (a comment takes a line of its own)`);
    entries.push({ name: parts[0] as string, token: parts[1] as string, where });
  }
  if (entries.length === 0 && allowEmpty) return [];
  return checkTokens(entries, path);
}

/** Reads and checks PROXY_TOKENS_FILE; a TokenListError says what is wrong, never quoting a token. */
export function readTokenFile(path: string, options: { allowEmpty?: boolean } = {}): NamedToken[] {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (error) {
    throw new TokenListError(`PROXY_TOKENS_FILE ${path} cannot be read (${(error as NodeJS.ErrnoException).code ?? (error as Error).message})`);
  }
  return parseTokenFile(text, path, options);
}

/** Names, lengths and uniqueness; neither is quoted, for a line written `token name` would print its token. */
function checkTokens(entries: ReadonlyArray<NamedToken & { readonly where: string }>, source: string): NamedToken[] {
  if (entries.length === 0) throw new TokenListError(`${source} holds no token`);
  const names = new Map<string, string>();
  const tokens = new Map<string, string>();
  for (const { name, token, where } of entries) {
    if (!TOKEN_NAME.test(name) || TOKEN_LIKE_NAME.test(name)) {
      throw new TokenListError(
        `${where}: the name must be up to 32 letters, digits, '_', '.' or '-', and not look like a token (is the order name, then token?)`,
      );
    }
    if (token.length < MIN_TOKEN_LENGTH) {
      throw new TokenListError(
        `${where}: the token has ${token.length} characters; a token needs at least ${MIN_TOKEN_LENGTH} (openssl rand -hex 32 makes one)`,
      );
    }
    if (!TOKEN_CHARACTERS.test(token)) {
      throw new TokenListError(`${where}: the token may hold letters, digits and -._~+/ only, with = at its end`);
    }
    const sameName = names.get(name);
    if (sameName !== undefined) throw new TokenListError(`${where}: the name is given again (first at ${sameName})`);
    const sameToken = tokens.get(token);
    if (sameToken !== undefined) throw new TokenListError(`${where}: the same token as ${sameToken}; give each client its own`);
    names.set(name, where);
    tokens.set(token, where);
  }
  return entries.map(({ name, token }) => ({ name, token }));
}
