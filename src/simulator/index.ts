// A stand-in for Deskie's statistics API on plain node:http: real sockets,
// Basic auth, rate-limit headers, deterministic data and fault knobs, so the
// proxy can be tested end to end and a test can count the calls that reached
// "Deskie". It shares no code with the proxy on purpose.
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { DateTime, IANAZone } from 'luxon';
import { answerControl, isControlPath } from './control.js';
import { answerStats, errorReply, findEndpoint, type SimulatorReply } from './endpoints.js';
import { faultReply } from './faults.js';
import { DEFAULT_KNOBS, checkKnobs, type SimulatorKnobs } from './knobs.js';
import { RateLimitWindow, type RateLimitQuota } from './rate-limit.js';

export { SIMULATOR_FAULTS, type SimulatorFault, type SimulatorKnobs } from './knobs.js';
export { CONTROL_PATH_PREFIX } from './control.js';

export interface SimulatorOptions {
  host?: string; // default '127.0.0.1'
  port?: number; // default 0 (any free port)
  users?: Record<string, string>; // e-mail -> API key; default { 'demo@example.com': 'demo' }
  rateLimitPerMinute?: number; // default 1500; `knobs.rateLimitPerMinute` wins when both are given
  knobs?: Partial<SimulatorKnobs>;
  /** Epoch ms for the rate-limit window and for what "now" means to the periods, so a test moves time instead of sleeping; default Date.now. */
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

export interface Simulator {
  readonly url: string; // e.g. 'http://127.0.0.1:40123'
  /** Number of HTTP requests that reached the simulator (any path, any outcome), control routes under /_simulator/ excepted. */
  readonly calls: number;
  readonly requests: readonly RecordedRequest[];
  readonly knobs: Readonly<SimulatorKnobs>;
  /** How many times changeNumbers() was called; 0 gives the same data as every fresh simulator. */
  readonly generation: number;
  /** Changes the knobs for later requests; throws InvalidKnobError for a value it cannot run with. */
  set(knobs: Partial<SimulatorKnobs>): void;
  /** Every later answer has new numbers (a refresh is visible); returns the new generation. */
  changeNumbers(): number;
  /** The user's calls get 401 until restore() or addUser(); false when no user has that e-mail. */
  revoke(email: string): boolean;
  /** Undoes revoke(); false when no user has that e-mail. */
  restore(email: string): boolean;
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

const DEFAULT_HOST = '127.0.0.1';
/** Port 0 lets the OS pick a free port, so parallel tests never collide. */
const DEFAULT_PORT = 0;
/** Deskie's highest account-wide limit (deskie-api-notes.md, "Rate limits"). */
export const DEFAULT_RATE_LIMIT_PER_MINUTE = 1_500;

const JSON_CONTENT_TYPE = 'application/json; charset=utf-8';
const BASIC_AUTH = /^Basic\s+(\S+)\s*$/i;

export async function startSimulator(options: SimulatorOptions = {}): Promise<Simulator> {
  const users = new Map(Object.entries(options.users ?? { [DEMO_EMAIL]: DEMO_API_KEY }));
  /** Keys of revoked users, kept so restore() can give them back. */
  const revokedKeys = new Map<string, string>();
  const clock = options.clock ?? Date.now;
  const timezone = options.timezone ?? 'UTC';
  if (!IANAZone.isValidZone(timezone)) throw new TypeError(`timezone must be an IANA time zone name such as Europe/Berlin; got "${timezone}"`);
  let knobs: SimulatorKnobs = {
    ...DEFAULT_KNOBS,
    rateLimitPerMinute: DEFAULT_RATE_LIMIT_PER_MINUTE,
    ...checkKnobs({ rateLimitPerMinute: options.rateLimitPerMinute }),
    ...checkKnobs(options.knobs ?? {}),
  };
  const rateLimit = new RateLimitWindow(knobs.rateLimitPerMinute);
  const latencyTimers = new Set<NodeJS.Timeout>();
  let calls = 0;
  let requests: RecordedRequest[] = [];
  let generation = 0;
  let url = '';
  /** Answers waiting for release(); null when not holding. */
  let heldAnswers: Array<() => void> | null = null;
  /** Whether new answers join heldAnswers. */
  let holding = false;

  // Built before the server so control requests can never reach it half-made.
  const simulator: Simulator = {
    get url() {
      return url;
    },
    get calls() {
      return calls;
    },
    get requests() {
      return requests;
    },
    get knobs() {
      return knobs;
    },
    get generation() {
      return generation;
    },
    set(changes) {
      knobs = { ...knobs, ...checkKnobs(changes) };
      rateLimit.limitPerMinute = knobs.rateLimitPerMinute;
    },
    changeNumbers() {
      generation += 1;
      return generation;
    },
    revoke(email) {
      const apiKey = users.get(email);
      if (apiKey !== undefined) {
        revokedKeys.set(email, apiKey);
        users.delete(email);
      }
      return revokedKeys.has(email);
    },
    restore(email) {
      const apiKey = revokedKeys.get(email);
      if (apiKey !== undefined) {
        users.set(email, apiKey);
        revokedKeys.delete(email);
      }
      return users.has(email);
    },
    addUser(email, apiKey) {
      revokedKeys.delete(email);
      users.set(email, apiKey);
    },
    hold() {
      holding = true;
      heldAnswers ??= [];
    },
    release() {
      const answers = heldAnswers ?? [];
      heldAnswers = null;
      holding = false;
      for (const send of answers) send();
    },
    stopHolding() {
      holding = false;
    },
    get held() {
      return heldAnswers?.length ?? 0;
    },
    resetCounters() {
      calls = 0;
      requests = [];
    },
    async close() {
      for (const timer of latencyTimers) {
        clearTimeout(timer);
      }
      latencyTimers.clear();
      await new Promise<void>((resolve) => {
        // The callback's error only says the server was already closed.
        server.close(() => resolve());
        // Hung and delayed requests keep their sockets open; close() alone would wait for them.
        server.closeAllConnections();
      });
    },
  };

  const server = createServer((req, res) => {
    const { path, query } = splitUrl(req.url);
    if (isControlPath(path)) {
      void answerControl(req, path, query, simulator).then((reply) => send(res, reply));
      return;
    }
    // Counted before anything can fail: the number of calls that reached
    // Deskie is what the proxy's tests assert on.
    calls += 1;
    requests.push(recordRequest(req, path, query));
    const quota = rateLimit.take(clock());
    // Decided as the request arrives, as a server authenticates a request before working on it:
    // a key revoked while a held answer waits still gets that answer.
    const authenticated = isAuthenticated(req.headers.authorization, users);
    const current = knobs;
    const fault = calls > current.faultAfterCalls ? current.fault : 'none';
    if (fault === 'hang') {
      return; // never answered; close() ends the socket
    }
    const respondLater = (respond: () => void): void => {
      if (heldAnswers === null || !holding) afterLatency(res, current.latencyMs, respond);
      else heldAnswers.push(() => afterLatency(res, current.latencyMs, respond));
    };
    respondLater(() => {
      if (fault === 'drop') {
        // No status, no headers: the client sees the connection end, as when Deskie's side dies.
        req.socket.destroy();
        return;
      }
      let reply: SimulatorReply;
      try {
        reply = faultReply(fault, current) ?? answer(req, path, query, quota, authenticated);
      } catch {
        // The simulator may run inside the proxy's process (npm start without
        // DESKIE_URL): a bug here must answer 500, not end the process.
        reply = errorReply(500, 'internal server error');
      }
      send(res, reply, rateLimitHeaders(quota));
    });
  });

  /** Run `respond` after `latencyMs`; the timer goes when the client leaves or the simulator closes. */
  function afterLatency(res: ServerResponse, latencyMs: number, respond: () => void): void {
    if (latencyMs <= 0) {
      respond();
      return;
    }
    const timer = setTimeout(() => {
      latencyTimers.delete(timer);
      respond();
    }, latencyMs);
    timer.unref();
    latencyTimers.add(timer);
    res.once('close', () => {
      clearTimeout(timer);
      latencyTimers.delete(timer);
    });
  }

  function answer(req: IncomingMessage, path: string, query: string, quota: RateLimitQuota, authenticated: boolean): SimulatorReply {
    if (!quota.admitted) {
      return errorReply(429, 'rate limit exceeded', { retry_after: String(quota.retryAfterSeconds) });
    }
    const endpoint = req.method === 'GET' ? findEndpoint(path) : undefined;
    if (endpoint === undefined) {
      return errorReply(404, `no such endpoint: ${req.method ?? ''} ${path}`);
    }
    if (!authenticated) {
      return errorReply(401, 'authentication failed');
    }
    return answerStats(endpoint, new URLSearchParams(query), DateTime.fromMillis(clock(), { zone: timezone }), generation);
  }

  await listen(server, options.port ?? DEFAULT_PORT, options.host ?? DEFAULT_HOST);
  url = serverUrl(server.address() as AddressInfo);
  return simulator;
}

/** Deskie's rate-limit headers, on every answer but those of the control routes. */
function rateLimitHeaders(quota: RateLimitQuota): Record<string, string> {
  return { rate_limit_per_minute: String(quota.limitPerMinute), api_calls_left: String(quota.callsLeft) };
}

/** Every answer is JSON; the reply's own headers win over the rate-limit ones. */
function send(res: ServerResponse, reply: SimulatorReply, rateLimit: Record<string, string> = {}): void {
  res.writeHead(reply.statusCode, {
    'content-type': JSON_CONTENT_TYPE,
    'content-length': Buffer.byteLength(reply.body),
    ...rateLimit,
    ...reply.headers,
  });
  res.end(reply.body);
}

function recordRequest(req: IncomingMessage, path: string, query: string): RecordedRequest {
  return { method: req.method ?? '', path, query, headers: { ...req.headers } };
}

function splitUrl(url = '/'): { path: string; query: string } {
  const mark = url.indexOf('?');
  return mark === -1 ? { path: url, query: '' } : { path: url.slice(0, mark), query: url.slice(mark + 1) };
}

/** HTTP Basic with the staff e-mail as user and the API key as password. */
function isAuthenticated(authorization: string | undefined, users: ReadonlyMap<string, string>): boolean {
  const token = BASIC_AUTH.exec(authorization ?? '')?.[1];
  if (token === undefined) {
    return false;
  }
  const credentials = Buffer.from(token, 'base64').toString('utf8');
  const colon = credentials.indexOf(':');
  if (colon === -1) {
    return false;
  }
  const apiKey = users.get(credentials.slice(0, colon));
  return apiKey !== undefined && apiKey === credentials.slice(colon + 1);
}

function listen(server: ReturnType<typeof createServer>, port: number, host: string): Promise<void> {
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, host, () => {
      server.off('error', reject);
      resolve();
    });
  });
}

function serverUrl(address: AddressInfo): string {
  const host = address.family === 'IPv6' ? `[${address.address}]` : address.address;
  return `http://${host}:${address.port}`;
}
