/** Every error answered has a stable code, a status and a message saying what is wrong and what is accepted (body: error-replies.ts). */
export type ErrorCode =
  | 'BAD_REQUEST'
  | 'URI_TOO_LONG'
  | 'UNAUTHORIZED'
  | 'NOT_FOUND'
  | 'TOO_MANY_PAGES'
  | 'OVER_BUDGET'
  | 'UPSTREAM_UNREACHABLE'
  | 'UPSTREAM_INVALID'
  | 'UPSTREAM_TIMEOUT'
  | 'UPSTREAM_BUSY'
  | 'SHUTTING_DOWN'
  | 'STORE_UNAVAILABLE';

/** Why a failed call may be answered by a stale entry, as RFC 9211 Cache-Status `detail`; errors without one are answers in their own right. */
export type UpstreamFailure =
  | 'connection-failed'
  | 'timeout'
  | 'invalid-answer'
  | 'deskie-error'
  | 'rate-limited'
  | 'circuit-open'
  | 'budget-exhausted'
  | 'shutting-down';

export class ProxyError extends Error {
  constructor(
    readonly code: ErrorCode,
    message: string,
    readonly statusCode: number,
    readonly headers: Readonly<Record<string, string>> = {},
    /** Set when Deskie failed (or could not be asked): a stale entry may answer instead. */
    readonly failure?: UpstreamFailure,
    /** Answered from this proxy's memory of an earlier answer, without a call. */
    readonly remembered = false,
  ) {
    super(message);
    this.name = 'ProxyError';
  }

  asRemembered(): ProxyError {
    return new ProxyError(this.code, this.message, this.statusCode, this.headers, this.failure, true);
  }
}

export const badRequest = (message: string): ProxyError => new ProxyError('BAD_REQUEST', message, 400);

export const uriTooLong = (message: string): ProxyError => new ProxyError('URI_TOO_LONG', message, 414);

/** A 401 with its challenge (RFC 9110 §11.6.1): HTTP Basic for Deskie's credentials, Bearer for a client token. */
export const unauthorized = (message: string, challenge = 'Basic realm="deskie-stats-proxy"'): ProxyError =>
  new ProxyError('UNAUTHORIZED', message, 401, { 'www-authenticate': challenge });

export const notFound = (message: string): ProxyError => new ProxyError('NOT_FOUND', message, 404);

/** `page=all` would need more upstream pages than the operator allows; nothing is stored. */
export const tooManyPages = (maxPages: number): ProxyError =>
  new ProxyError(
    'TOO_MANY_PAGES',
    `page=all needs more than ${maxPages} pages from Deskie for this query; ask for a shorter period, ` +
      'page through it with page=1, 2, ..., or raise PAGE_ALL_MAX_PAGES',
    422,
  );

export const overBudget = (calls: number, perMinute: number): ProxyError =>
  new ProxyError(
    'OVER_BUDGET',
    `page=all needs ${calls} calls to Deskie, more than the ${perMinute} a minute this proxy may spend; ` +
      'ask for a shorter period, page through it, or raise UPSTREAM_RATE_PER_MIN',
    422,
  );

/** `page=all` ran past its deadline; nothing is stored. */
export const pagesTimedOut = (timeoutMs: number): ProxyError =>
  new ProxyError(
    'UPSTREAM_TIMEOUT',
    `page=all did not finish within ${timeoutMs} ms (PAGE_ALL_TIMEOUT_MS); ask for a shorter period or page through it`,
    504,
    {},
    'timeout',
  );

/** No call could go to Deskie in time (budget spent or paused, 429 circuit open); Retry-After says when one can. */
export const upstreamBusy = (message: string, retryAfterSeconds: number, failure: UpstreamFailure): ProxyError =>
  new ProxyError('UPSTREAM_BUSY', message, 503, { 'retry-after': String(retryAfterSeconds) }, failure);

/** The shared store (Redis) cannot be reached, and the replicas' entries could not be `action` (listed, purged) without it. */
export const storeUnreachable = (action: string): ProxyError =>
  new ProxyError(
    'STORE_UNAVAILABLE',
    `Redis cannot be reached, so the replicas' entries cannot be ${action}; retry once it is back (see /readyz)`,
    503,
    { 'retry-after': '5' },
  );

export const shuttingDown = (): ProxyError =>
  new ProxyError('SHUTTING_DOWN', 'the proxy is shutting down; retry against another instance', 503, { 'retry-after': '1' });

/** A wait for Deskie cut short so that the process exits within SHUTDOWN_TIMEOUT_MS: a stale entry may answer instead. */
export const cutAtShutdown = (): ProxyError =>
  new ProxyError('SHUTTING_DOWN', 'the proxy is shutting down and cannot wait for Deskie any longer; retry against another instance', 503, { 'retry-after': '1' }, 'shutting-down');

/** Deskie's answer other than a 200: passed on as it came, never stored; a rejection, so every request coalesced onto the fetch gets it. */
export class UpstreamAnswer extends Error {
  constructor(
    readonly statusCode: number,
    readonly body: Buffer,
    readonly contentType: string | undefined,
    /** Deskie's retry_after or Retry-After, when it was a usable number of seconds. */
    readonly retryAfterSeconds: number | undefined,
    /** Answered from this proxy's memory of Deskie's earlier answer, without a call. */
    readonly remembered = false,
  ) {
    super(`Deskie answered ${statusCode}`);
    this.name = 'UpstreamAnswer';
  }

  /** A 429 or 5xx: Deskie failed, so a stale entry may answer instead. Never a 401 or 403. */
  get failure(): UpstreamFailure | undefined {
    if (this.statusCode === 429) return 'rate-limited';
    return this.statusCode >= 500 ? 'deskie-error' : undefined;
  }

  get refusesCredential(): boolean {
    return this.statusCode === 401 || this.statusCode === 403;
  }

  asRemembered(): UpstreamAnswer {
    return new UpstreamAnswer(this.statusCode, this.body, this.contentType, this.retryAfterSeconds, true);
  }
}

/** undici error codes that mean Deskie took too long (connect, headers or body). */
const TIMEOUT_CODES = new Set(['UND_ERR_CONNECT_TIMEOUT', 'UND_ERR_HEADERS_TIMEOUT', 'UND_ERR_BODY_TIMEOUT']);

/** Maps a failure to reach or read Deskie to the answer the client gets: 504 for a timeout, 502 otherwise. */
export function mapUpstreamFailure(error: unknown): ProxyError | UpstreamAnswer {
  if (error instanceof ProxyError || error instanceof UpstreamAnswer) return error;
  const { code, name } = (error ?? {}) as { code?: unknown; name?: unknown };
  if ((typeof code === 'string' && TIMEOUT_CODES.has(code)) || name === 'TimeoutError') {
    return new ProxyError('UPSTREAM_TIMEOUT', 'Deskie did not answer in time', 504, {}, 'timeout');
  }
  const reason = typeof code === 'string' ? code : 'connection failed';
  return new ProxyError('UPSTREAM_UNREACHABLE', `Deskie could not be reached (${reason})`, 502, {}, 'connection-failed');
}

export const upstreamInvalid = (message: string): ProxyError =>
  new ProxyError('UPSTREAM_INVALID', message, 502, {}, 'invalid-answer');

/** Why Deskie failed, when a stale entry may answer in its place; undefined for anything else. */
export function upstreamFailureOf(error: unknown): UpstreamFailure | undefined {
  return error instanceof ProxyError || error instanceof UpstreamAnswer ? error.failure : undefined;
}

export function errorBody(message: string): string {
  return JSON.stringify({ status: 'error', error: message });
}
