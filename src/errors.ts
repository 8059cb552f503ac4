/**
 * Every error the proxy answers with has a stable code, an HTTP status and a
 * message that says what is wrong and what is accepted. The body is always
 * `{"status":"error","error":"<message>"}`.
 */
export type ErrorCode =
  | 'BAD_REQUEST'
  | 'UNAUTHORIZED'
  | 'NOT_FOUND'
  | 'TOO_MANY_PAGES'
  | 'UPSTREAM_UNREACHABLE'
  | 'UPSTREAM_INVALID'
  | 'UPSTREAM_TIMEOUT';

export class ProxyError extends Error {
  constructor(
    readonly code: ErrorCode,
    message: string,
    readonly statusCode: number,
    readonly headers: Readonly<Record<string, string>> = {},
  ) {
    super(message);
    this.name = 'ProxyError';
  }
}

export const badRequest = (message: string): ProxyError => new ProxyError('BAD_REQUEST', message, 400);

export const unauthorized = (message: string): ProxyError =>
  new ProxyError('UNAUTHORIZED', message, 401, { 'www-authenticate': 'Basic realm="deskie-stats-proxy"' });

export const notFound = (message: string): ProxyError => new ProxyError('NOT_FOUND', message, 404);

/** `page=all` would need more upstream pages than the operator allows; nothing is stored. */
export const tooManyPages = (maxPages: number): ProxyError =>
  new ProxyError(
    'TOO_MANY_PAGES',
    `page=all needs more than ${maxPages} pages from Deskie for this query; ask for a shorter period, ` +
      'page through it with page=1, 2, ..., or raise PAGE_ALL_MAX_PAGES',
    422,
  );

/** `page=all` ran past its deadline; nothing is stored. */
export const pagesTimedOut = (timeoutMs: number): ProxyError =>
  new ProxyError(
    'UPSTREAM_TIMEOUT',
    `page=all did not finish within ${timeoutMs} ms (PAGE_ALL_TIMEOUT_MS); ask for a shorter period or page through it`,
    504,
  );

/**
 * A complete answer from Deskie that is not a cacheable 200 (401, 429, 5xx, a
 * range Deskie refuses...). It is passed to the client as it came, status and
 * body, and never stored. It travels as a rejection so that every request
 * coalesced onto the same fetch receives it.
 */
export class UpstreamAnswer extends Error {
  constructor(
    readonly statusCode: number,
    readonly body: Buffer,
    readonly contentType: string | undefined,
    readonly retryAfterSeconds: string | undefined,
  ) {
    super(`Deskie answered ${statusCode}`);
    this.name = 'UpstreamAnswer';
  }
}

/** undici error codes that mean Deskie took too long (connect, headers or body). */
const TIMEOUT_CODES = new Set(['UND_ERR_CONNECT_TIMEOUT', 'UND_ERR_HEADERS_TIMEOUT', 'UND_ERR_BODY_TIMEOUT']);

/** Maps a failure to reach or read Deskie to the answer the client gets: 504 for a timeout, 502 otherwise. */
export function mapUpstreamFailure(error: unknown): ProxyError | UpstreamAnswer {
  if (error instanceof ProxyError || error instanceof UpstreamAnswer) return error;
  const { code, name } = (error ?? {}) as { code?: unknown; name?: unknown };
  if ((typeof code === 'string' && TIMEOUT_CODES.has(code)) || name === 'TimeoutError') {
    return new ProxyError('UPSTREAM_TIMEOUT', 'Deskie did not answer in time', 504);
  }
  const reason = typeof code === 'string' ? code : 'connection failed';
  return new ProxyError('UPSTREAM_UNREACHABLE', `Deskie could not be reached (${reason})`, 502);
}

export const upstreamInvalid = (message: string): ProxyError => new ProxyError('UPSTREAM_INVALID', message, 502);

export function errorBody(message: string): string {
  return JSON.stringify({ status: 'error', error: message });
}
