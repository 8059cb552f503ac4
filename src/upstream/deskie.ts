import type { FastifyBaseLogger } from 'fastify';
import type { EndpointName } from '../deskie/endpoints.js';
import type { StatsQuery } from '../deskie/query.js';
import type { JsonObject } from '../deskie/fields.js';
import { mapUpstreamFailure, pagesTimedOut, UpstreamAnswer, upstreamFailureOf, upstreamInvalid } from '../http/errors.js';
import { type DeskiePage, fetchAllPages } from './all-pages.js';
import { type BudgetGrant, type CallPriority, parseRetryAfter, type UpstreamBudget } from './budget/budget.js';
import type { DeskieClient } from './client.js';

/** Deepest nesting accepted in a Deskie body (its records are three deep): deeper would overflow the stack when rendered. */
export const MAX_BODY_DEPTH = 32;

export interface DeskieUpstreamOptions {
  readonly client: DeskieClient;
  readonly budget: UpstreamBudget;
  /** How long a client's call may wait for its turn in the budget. */
  readonly queueMs: number;
  readonly maxPages: number;
  /** Bound on one whole `page=all` merge, in real ms: no page starts after it. */
  readonly pagesTimeoutMs: number;
  readonly clock: () => number;
  readonly log: FastifyBaseLogger;
  /** Told of every call: the endpoint, Deskie's status (undefined when it gave none) and the real seconds it took. */
  readonly onCall?: (endpoint: EndpointName, status: number | undefined, seconds: number) => void;
}

/** Deskie's last answer, for /readyz: its status, or why there was none, and when (epoch ms). */
export interface LastUpstreamAnswer {
  readonly status: number | null;
  readonly failure: string | null;
  readonly atMs: number;
}

/** Who is asking, and how urgently. */
export interface UpstreamCall {
  readonly authorization: string;
  readonly priority: CallPriority;
  /** Whether Deskie has never accepted this credential: its calls then draw from a small share of the budget. */
  readonly isNewCredential: () => boolean;
  /** Deskie has just answered this credential with a 200. */
  readonly accepted: () => void;
  /** Deskie's refusal of this credential since the call was asked for, if any: then it is not sent. */
  readonly refusedSince?: () => UpstreamAnswer | undefined;
  /** Calls the previous answer for the same key took: a `page=all` reserves them before its first call. */
  readonly expectedCalls: number;
}

/** Deskie's answer, and the calls it took. */
export interface DeskieAnswer extends DeskiePage {
  readonly calls: number;
  /** Real ms spent waiting for Deskie's answers (all pages), not for a turn in the budget. */
  readonly upstreamMs: number;
}

/** A query (page=all merged), calls in budget turns; Deskie's non-200 throws UpstreamAnswer, a failure ProxyError. */
export class DeskieUpstream {
  readonly #options: DeskieUpstreamOptions;
  #last: LastUpstreamAnswer | null = null;

  constructor(options: DeskieUpstreamOptions) {
    this.#options = options;
  }

  async fetch(query: StatsQuery, call: UpstreamCall): Promise<DeskieAnswer> {
    const { budget, queueMs, pagesTimeoutMs, maxPages } = this.#options;
    const startedAt = performance.now();
    // Real time, not the injected clock (which is for freshness).
    const mergeDeadline = query.allPages ? startedAt + pagesTimeoutMs : Number.POSITIVE_INFINITY;
    const turnDeadline = () => Math.min(performance.now() + queueMs, mergeDeadline);
    // A merge reserves what it took last time, so one that no longer fits waits or is refused up front.
    const calls = query.allPages ? Math.min(Math.max(1, call.expectedCalls), maxPages) : 1;
    const request = { calls, priority: call.priority, isNewCredential: call.isNewCredential, deadline: turnDeadline(), merge: query.allPages };
    const grant = await budget.reserve(request);
    try {
      const { name, path } = query.endpoint;
      let upstreamMs = 0;
      const get = async (pageQuery: string): Promise<DeskiePage> => {
        const startedAt = performance.now();
        try {
          return await this.#get(name, path, pageQuery, call, grant);
        } finally {
          upstreamMs += performance.now() - startedAt;
        }
      };
      if (!query.allPages) return { ...(await get(query.canonicalQuery)), calls: 1, upstreamMs };
      // Later pages wait until the merge's deadline, not UPSTREAM_QUEUE_MS: holding the turn, a merge finishes within the
      // budget's next minute rather than waste the pages it has spent.
      const fetchPage = async (pageQuery: string): Promise<DeskiePage> => {
        if (performance.now() > mergeDeadline) throw pagesTimedOut(pagesTimeoutMs);
        if (grant.remaining === 0) await grant.extend(1, mergeDeadline);
        return get(pageQuery);
      };
      // Deskie told the total: the rest is reserved now, never refused halfway through.
      const reservePages = (pages: number): Promise<void> => grant.extend(Math.max(0, pages - grant.remaining), mergeDeadline);
      const merged = await fetchAllPages(query.endpoint, query.pageBase, maxPages, fetchPage, reservePages);
      return { ...merged, calls: grant.spent, upstreamMs };
    } finally {
      grant.release();
    }
  }

  /** Deskie's last answer (or failure to answer), null before the first call. */
  get lastAnswer(): LastUpstreamAnswer | null {
    return this.#last;
  }

  /** One GET to Deskie, spending one reserved call; Deskie's limit headers go to the budget. */
  async #get(endpoint: EndpointName, path: string, upstreamQuery: string, call: UpstreamCall, grant: BudgetGrant): Promise<DeskiePage> {
    const { client, budget, clock, log, onCall } = this.#options;
    // Refused while this call waited its turn (another key's call got the 401): that refusal is its answer, at no call.
    const refusal = call.refusedSince?.();
    if (refusal !== undefined) throw refusal;
    const startedAt = performance.now();
    grant.spend();
    const response = await client.get(path, upstreamQuery, call.authorization).catch((error: unknown) => {
      const failure = mapUpstreamFailure(error);
      this.#last = { status: null, failure: upstreamFailureOf(failure) ?? 'failed', atMs: clock() };
      onCall?.(endpoint, undefined, (performance.now() - startedAt) / 1000);
      log.warn({ path, query: upstreamQuery, err: error }, 'Deskie request failed');
      throw failure;
    });
    const { statusCode, body, contentType } = response;
    const upstreamMs = performance.now() - startedAt;
    this.#last = { status: statusCode, failure: null, atMs: clock() };
    onCall?.(endpoint, statusCode, upstreamMs / 1000);
    const retryAfterSeconds = parseRetryAfter(response.retryAfter, clock());
    budget.observe({ statusCode, rateLimitPerMinute: response.rateLimitPerMinute, callsLeft: response.callsLeft, retryAfterSeconds });
    log.info(
      { path, query: upstreamQuery, status: statusCode, upstreamMs: Math.round(upstreamMs * 100) / 100, callsLeft: response.callsLeft },
      'fetched from Deskie',
    );
    if (statusCode >= 300 && statusCode < 400) {
      // Passed through, a redirect would send the client to Deskie itself.
      throw upstreamInvalid(
        `Deskie answered ${statusCode} redirecting to ${response.location ?? 'nowhere'}; set DESKIE_URL to the account's address`,
      );
    }
    if (statusCode !== 200) throw new UpstreamAnswer(statusCode, body, contentType, retryAfterSeconds);
    // Deskie accepted the credential: its later calls are an ordinary client's.
    call.accepted();
    grant.trust();
    return { body, contentType, parsed: parseDeskieBody(body) };
  }
}

/** A 200's body as a JSON object; anything else is Deskie failing, not data (a 502, never stored). */
export function parseDeskieBody(body: Buffer): JsonObject {
  let parsed: unknown;
  try {
    parsed = JSON.parse(body.toString('utf8'));
  } catch {
    throw upstreamInvalid('Deskie answered 200 with a body that is not JSON');
  }
  if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed)) {
    const kind = parsed === null ? 'null' : Array.isArray(parsed) ? 'an array' : `a ${typeof parsed}`;
    throw upstreamInvalid(`Deskie answered 200 with ${kind} where a JSON object was expected`);
  }
  if (nestedDeeperThan(parsed, MAX_BODY_DEPTH)) {
    throw upstreamInvalid(`Deskie answered 200 with JSON nested deeper than ${MAX_BODY_DEPTH} levels`);
  }
  return parsed as JsonObject;
}

/** Walks the parsed value without recursion (a deep body must not overflow the stack here either). */
function nestedDeeperThan(value: object, maxDepth: number): boolean {
  const stack: Array<[unknown, number]> = [[value, 1]];
  while (stack.length > 0) {
    const [node, depth] = stack.pop() as [unknown, number];
    if (depth > maxDepth) return true;
    for (const child of Object.values(node as object)) {
      if (typeof child === 'object' && child !== null) stack.push([child, depth + 1]);
    }
  }
  return false;
}
