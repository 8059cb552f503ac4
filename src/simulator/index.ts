// A stand-in for Deskie's stats API on node:http (real sockets, Basic auth, rate-limit headers, deterministic data,
// fault knobs), so a test can count the calls that reached "Deskie"; it shares no code with the proxy on purpose.
import { once } from 'node:events';
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { DateTime, IANAZone } from 'luxon';
import { answerControl, CONTROL_PATH_PREFIX, type SimulatorControls } from './control.js';
import { cacheIdentity, type CacheIdentity, type CacheReport, type CacheSettings, DeskieCache, type QueryComputes } from './deskie-cache.js';
import { answerStats, errorReply, findEndpoint, type SimulatorReply } from './endpoints.js';
import { faultReply } from './faults.js';
import { DEFAULT_KNOBS, checkKnobs, type SimulatorKnobs } from './knobs.js';
import { BadRequestError } from './params.js';
import { RateLimitWindow, type RateLimitQuota } from './rate-limit.js';

export { SIMULATOR_FAULTS, type SimulatorFault, type SimulatorKnobs } from './knobs.js';
export { CONTROL_PATH_PREFIX } from './control.js';
export type { CacheReport, ComputeRecord, ComputedBy, QueryComputes } from './deskie-cache.js';

export interface SimulatorOptions {
  host?: string; // default '127.0.0.1'
  port?: number; // default 0 (any free port)
  users?: Record<string, string>; // e-mail -> API key; default { 'demo@example.com': 'demo' }
  rateLimitPerMinute?: number; // default 1500; `knobs.rateLimitPerMinute` wins when both are given
  knobs?: Partial<SimulatorKnobs>;
  /** Epoch ms for the rate-limit window, Deskie's cache lifetimes and what "now" means to the periods, so a test moves time instead of sleeping; default Date.now. */
  clock?: () => number;
  /** The account's time zone (an IANA name): periods and times without an offset are read in it; default UTC. */
  timezone?: string;
}

export interface RecordedRequest {
  method: string;
  path: string; // path without query
  query: string; // raw query string without '?'
  headers: Record<string, string | string[] | undefined>;
}

/** A running simulator; its knobs, set(), changeNumbers(), revoke() and restore() are described on SimulatorControls. */
export interface Simulator extends SimulatorControls {
  readonly url: string; // e.g. 'http://127.0.0.1:40123'
  /** Number of HTTP requests that reached the simulator (any path, any outcome), control routes under /_simulator/ excepted. */
  readonly calls: number;
  readonly requests: readonly RecordedRequest[];
  /** How many times changeNumbers() was called; 0 gives the same data as every fresh simulator. */
  readonly generation: number;
  /** Adds a user, or gives one a new key; either way the user is not revoked. */
  addUser(email: string, apiKey: string): void;
  /** Later answers wait until release(), so a test can prove requests overlapped instead of hoping a latency is long enough. */
  hold(): void;
  /** Sends every held answer, in arrival order, and stops holding. */
  release(): void;
  /** Later answers go out at once again; those already held still wait for release(). */
  stopHolding(): void;
  /** Requests waiting for release(). */
  readonly held: number;
  resetCounters(): void; // calls = 0, requests = []
  close(): Promise<void>; // also ends hung requests and open sockets
}

export const DEMO_EMAIL = 'demo@example.com';
export const DEMO_API_KEY = 'demo';

/** Deskie's highest account-wide limit (deskie-api-notes.md, "Rate limits"). */
export const DEFAULT_RATE_LIMIT_PER_MINUTE = 1_500;

/** Headers on every statistics answer (not Deskie's): when its numbers were computed and expire, and whether this call computed them. */
export const COMPUTED_AT_HEADER = 'x-simulator-computed-at';
export const EXPIRES_AT_HEADER = 'x-simulator-expires-at';
export const CACHE_HEADER = 'x-simulator-cache';
/** changeNumbers() instants kept to tell the foreign client's past computes their generation. */
const MAX_GENERATION_TIMES = 10_000;
const BASIC_AUTH = /^Basic\s+(\S+)\s*$/i;

export async function startSimulator(options: SimulatorOptions = {}): Promise<Simulator> {
  const timezone = options.timezone ?? 'UTC';
  if (!IANAZone.isValidZone(timezone)) throw new TypeError(`timezone must be an IANA time zone name such as Europe/Berlin; got "${timezone}"`);
  const knobs: SimulatorKnobs = {
    ...DEFAULT_KNOBS,
    rateLimitPerMinute: DEFAULT_RATE_LIMIT_PER_MINUTE,
    ...checkKnobs({ rateLimitPerMinute: options.rateLimitPerMinute }),
    ...checkKnobs(options.knobs ?? {}),
  };
  const users = new Map(Object.entries(options.users ?? { [DEMO_EMAIL]: DEMO_API_KEY }));
  const simulator = new SimulatedDeskie(users, knobs, options.clock ?? Date.now, timezone);
  await simulator.listen(options.port ?? 0, options.host ?? '127.0.0.1');
  return simulator;
}

/** The simulator's state and HTTP server, whole before a request; callers see its fields readonly. */
class SimulatedDeskie implements Simulator {
  url = '';
  calls = 0;
  requests: RecordedRequest[] = [];
  knobs: SimulatorKnobs;
  generation = 0;
  /** Clock instants of the changeNumbers() calls, oldest first (the last MAX_GENERATION_TIMES). */
  readonly #generationTimes: number[] = [];
  readonly #deskieCache: DeskieCache;
  /** When the foreign client was last turned on: it has made no call before. */
  #foreignSinceMs: number;
  /** Answers waiting for release(), and whether new answers join them. */
  #heldAnswers: Array<() => void> = [];
  #holding = false;
  /** E-mail -> API key of the users whose calls are accepted. */
  readonly #users: Map<string, string>;
  /** Keys of revoked users, kept so restore() can give them back. */
  readonly #revokedKeys = new Map<string, string>();
  readonly #clock: () => number;
  readonly #timezone: string;
  readonly #rateLimit: RateLimitWindow;
  readonly #latencyTimers = new Set<NodeJS.Timeout>();
  readonly #server = createServer((req, res) => this.#handle(req, res));

  constructor(users: Map<string, string>, knobs: SimulatorKnobs, clock: () => number, timezone: string) {
    this.#users = users;
    this.knobs = knobs;
    this.#clock = clock;
    this.#timezone = timezone;
    this.#rateLimit = new RateLimitWindow(knobs.rateLimitPerMinute);
    this.#deskieCache = new DeskieCache(timezone);
    this.#foreignSinceMs = clock();
  }

  get held(): number {
    return this.#heldAnswers.length;
  }

  set(changes: Partial<SimulatorKnobs>): void {
    const foreignClientWasOn = this.knobs.foreignClient;
    this.knobs = { ...this.knobs, ...checkKnobs(changes) };
    this.#rateLimit.limitPerMinute = this.knobs.rateLimitPerMinute;
    if (this.knobs.foreignClient && !foreignClientWasOn) this.#foreignSinceMs = this.#clock();
  }

  changeNumbers(): number {
    this.generation += 1;
    this.#generationTimes.push(this.#clock());
    if (this.#generationTimes.length > MAX_GENERATION_TIMES) this.#generationTimes.shift();
    return this.generation;
  }

  computes(pathAndQuery: string): QueryComputes {
    const { path, query } = splitUrl(pathAndQuery);
    const endpoint = findEndpoint(path);
    if (endpoint === undefined) throw new BadRequestError(`no such endpoint: ${path}`);
    const nowMs = this.#clock();
    const identity = cacheIdentity(endpoint, new URLSearchParams(query), this.#at(nowMs));
    return this.#deskieCache.query(identity, nowMs, this.#cacheSettings());
  }

  cacheReport(): CacheReport {
    return this.#deskieCache.report(this.#clock(), this.#cacheSettings());
  }

  revoke(email: string): boolean {
    const apiKey = this.#users.get(email);
    if (apiKey !== undefined) {
      this.#revokedKeys.set(email, apiKey);
      this.#users.delete(email);
    }
    return this.#revokedKeys.has(email);
  }

  restore(email: string): boolean {
    const apiKey = this.#revokedKeys.get(email);
    if (apiKey !== undefined) {
      this.#users.set(email, apiKey);
      this.#revokedKeys.delete(email);
    }
    return this.#users.has(email);
  }

  addUser(email: string, apiKey: string): void {
    this.#revokedKeys.delete(email);
    this.#users.set(email, apiKey);
  }

  hold(): void {
    this.#holding = true;
  }

  release(): void {
    const answers = this.#heldAnswers;
    this.#heldAnswers = [];
    this.#holding = false;
    for (const send of answers) send();
  }

  stopHolding(): void {
    this.#holding = false;
  }

  resetCounters(): void {
    this.calls = 0;
    this.requests = [];
  }

  async listen(port: number, host: string): Promise<void> {
    // once() rejects when 'error' comes first (a port in use, say).
    await once(this.#server.listen(port, host), 'listening');
    const { address, family, port: boundPort } = this.#server.address() as AddressInfo;
    this.url = `http://${family === 'IPv6' ? `[${address}]` : address}:${boundPort}`;
  }

  async close(): Promise<void> {
    for (const timer of this.#latencyTimers) clearTimeout(timer);
    this.#latencyTimers.clear();
    await new Promise<void>((resolve) => {
      // The callback's error only says the server was already closed.
      this.#server.close(() => resolve());
      // Hung and delayed requests keep their sockets open; close() alone would wait for them.
      this.#server.closeAllConnections();
    });
  }

  #handle(req: IncomingMessage, res: ServerResponse): void {
    const { path, query } = splitUrl(req.url);
    if (path.startsWith(CONTROL_PATH_PREFIX)) {
      void answerControl(req, path, query, this).then((reply) => send(res, reply));
      return;
    }
    // Counted before anything can fail: the proxy's tests assert on it.
    this.calls += 1;
    this.requests.push({ method: req.method ?? '', path, query, headers: { ...req.headers } });
    const quota = this.#rateLimit.take(this.#clock());
    // Decided on arrival: a key revoked while its held answer waits still gets that answer.
    const authenticated = isAuthenticated(req.headers.authorization, this.#users);
    const current = this.knobs;
    const fault = this.calls > current.faultAfterCalls ? current.fault : 'none';
    if (fault === 'hang') return; // never answered; close() ends the socket
    this.#respondLater(res, current.latencyMs, () => {
      if (fault === 'drop') {
        // No status, no headers: the client sees the connection end, as when Deskie's side dies.
        req.socket.destroy();
        return;
      }
      let reply: SimulatorReply;
      try {
        reply = faultReply(fault, current) ?? this.#answer(req, path, query, quota, authenticated);
      } catch {
        // It may run inside the proxy's process (no DESKIE_URL): a bug here answers 500, not ends the process.
        reply = errorReply(500, 'internal server error');
      }
      // Deskie's rate-limit headers, on every answer but those of the control routes.
      send(res, reply, { rate_limit_per_minute: String(quota.limitPerMinute), api_calls_left: String(quota.callsLeft) });
    });
  }

  /** Runs `respond` after the latency, or once released when answers are held. */
  #respondLater(res: ServerResponse, latencyMs: number, respond: () => void): void {
    if (this.#holding) this.#heldAnswers.push(() => this.#afterLatency(res, latencyMs, respond));
    else this.#afterLatency(res, latencyMs, respond);
  }

  /** The timer goes when the client leaves or the simulator closes. */
  #afterLatency(res: ServerResponse, latencyMs: number, respond: () => void): void {
    if (latencyMs <= 0) {
      respond();
      return;
    }
    const timer = setTimeout(() => {
      this.#latencyTimers.delete(timer);
      respond();
    }, latencyMs);
    timer.unref();
    this.#latencyTimers.add(timer);
    res.once('close', () => {
      clearTimeout(timer);
      this.#latencyTimers.delete(timer);
    });
  }

  #answer(req: IncomingMessage, path: string, query: string, quota: RateLimitQuota, authenticated: boolean): SimulatorReply {
    if (!quota.admitted) return errorReply(429, 'rate limit exceeded', { retry_after: String(quota.retryAfterSeconds) });
    const endpoint = req.method === 'GET' ? findEndpoint(path) : undefined;
    if (endpoint === undefined) return errorReply(404, `no such endpoint: ${req.method ?? ''} ${path}`);
    if (!authenticated) return errorReply(401, 'authentication failed');
    const params = new URLSearchParams(query);
    const nowMs = this.#clock();
    let identity: CacheIdentity;
    try {
      identity = cacheIdentity(endpoint, params, this.#at(nowMs));
    } catch (error) {
      if (error instanceof BadRequestError) return errorReply(400, error.message);
      throw error;
    }
    // The numbers are those of their compute: its generation and data, and the window as it was then.
    const served = this.#deskieCache.serve(identity, nowMs, this.#cacheSettings(), (compute) =>
      answerStats(endpoint, params, this.#at(compute.computedAtMs), compute),
    );
    if (served.reply.statusCode !== 200) return served.reply;
    const computeHeaders = {
      [COMPUTED_AT_HEADER]: new Date(served.compute.computedAtMs).toISOString(),
      [EXPIRES_AT_HEADER]: new Date(served.compute.expiresAtMs).toISOString(),
      [CACHE_HEADER]: served.cached ? 'hit' : 'miss',
    };
    return { ...served.reply, headers: { ...served.reply.headers, ...computeHeaders } };
  }

  #at(epochMs: number): DateTime {
    return DateTime.fromMillis(epochMs, { zone: this.#timezone });
  }

  #cacheSettings(): CacheSettings {
    const { staffStatusChanges } = this.knobs;
    const numbersAt = (atMs: number) => ({ generation: this.#generationAt(atMs), staffStatusChanges });
    return { ...this.knobs, foreignSinceMs: this.#foreignSinceMs, numbersAt };
  }

  /** The generation in force at `atMs`: a foreign compute replayed later must not see a change made after it. */
  #generationAt(atMs: number): number {
    let generation = this.generation;
    if (atMs >= this.#clock()) return generation;
    for (let index = this.#generationTimes.length - 1; index >= 0 && (this.#generationTimes[index] ?? 0) > atMs; index--) generation--;
    return generation;
  }
}

/** Every answer is JSON; the reply's own headers win over the rate-limit ones. */
function send(res: ServerResponse, reply: SimulatorReply, rateLimit: Record<string, string> = {}): void {
  res.writeHead(reply.statusCode, {
    'content-type': 'application/json; charset=utf-8',
    'content-length': Buffer.byteLength(reply.body),
    ...rateLimit,
    ...reply.headers,
  });
  res.end(reply.body);
}

function splitUrl(url = '/'): { path: string; query: string } {
  const mark = url.indexOf('?');
  return mark === -1 ? { path: url, query: '' } : { path: url.slice(0, mark), query: url.slice(mark + 1) };
}

/** HTTP Basic with the staff e-mail as user and the API key as password. */
function isAuthenticated(authorization: string | undefined, users: ReadonlyMap<string, string>): boolean {
  const token = BASIC_AUTH.exec(authorization ?? '')?.[1];
  if (token === undefined) return false;
  const credentials = Buffer.from(token, 'base64').toString('utf8');
  const colon = credentials.indexOf(':');
  if (colon === -1) return false;
  const apiKey = users.get(credentials.slice(0, colon));
  return apiKey !== undefined && apiKey === credentials.slice(colon + 1);
}
