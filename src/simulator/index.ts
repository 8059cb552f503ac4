// A stand-in for Deskie's statistics API on plain node:http: real sockets,
// Basic auth, rate-limit headers, deterministic data and fault knobs, so the
// proxy can be tested end to end and a test can count the calls that reached
// "Deskie". It shares no code with the proxy on purpose.
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { DateTime } from 'luxon';
import { answerStats, errorReply, findEndpoint, type SimulatorReply } from './endpoints.js';
import { RateLimitWindow, type RateLimitQuota } from './rate-limit.js';

export const SIMULATOR_FAULTS = ['none', 'error500', 'rateLimited', 'hang', 'malformed', 'redirect'] as const;
export type SimulatorFault = (typeof SIMULATOR_FAULTS)[number];

export interface SimulatorKnobs {
  latencyMs: number; // delay before answering, default 0
  fault: SimulatorFault; // default 'none'
  /** The fault starts only after this many calls have been answered normally (a failure on page 3, say); default 0. */
  faultAfterCalls: number;
}

export interface SimulatorOptions {
  host?: string; // default '127.0.0.1'
  port?: number; // default 0 (any free port)
  users?: Record<string, string>; // e-mail -> API key; default { 'demo@example.com': 'demo' }
  rateLimitPerMinute?: number; // default 1500
  knobs?: Partial<SimulatorKnobs>;
}

export interface RecordedRequest {
  method: string;
  path: string; // path without query
  query: string; // raw query string without '?'
  headers: Record<string, string | string[] | undefined>;
}

export interface Simulator {
  readonly url: string; // e.g. 'http://127.0.0.1:40123'
  readonly calls: number; // number of HTTP requests that reached the simulator (any path, any outcome)
  readonly requests: readonly RecordedRequest[];
  set(knobs: Partial<SimulatorKnobs>): void;
  resetCounters(): void; // calls = 0, requests = []
  close(): Promise<void>; // also ends hung requests and open sockets
}

export const DEMO_EMAIL = 'demo@example.com';
export const DEMO_API_KEY = 'demo';

const DEFAULT_HOST = '127.0.0.1';
/** Port 0 lets the OS pick a free port, so parallel tests never collide. */
const DEFAULT_PORT = 0;
/** Deskie's highest account-wide limit (deskie-api-notes.md, "Rate limits"). */
const DEFAULT_RATE_LIMIT_PER_MINUTE = 1_500;
const DEFAULT_KNOBS: Readonly<SimulatorKnobs> = { latencyMs: 0, fault: 'none', faultAfterCalls: 0 };
/** `retry_after` sent by the `rateLimited` fault, in seconds. */
const FAULT_RETRY_AFTER_SECONDS = 30;

const JSON_CONTENT_TYPE = 'application/json; charset=utf-8';
/** What the `malformed` fault sends: the start of a leaderboard, cut mid-string. */
const MALFORMED_BODY = '{"0":{"staff":{"staff_id":42047,"staff_name":"John Sn';
const BASIC_AUTH = /^Basic\s+(\S+)\s*$/i;

export async function startSimulator(options: SimulatorOptions = {}): Promise<Simulator> {
  const users = new Map(Object.entries(options.users ?? { [DEMO_EMAIL]: DEMO_API_KEY }));
  const rateLimit = new RateLimitWindow(options.rateLimitPerMinute ?? DEFAULT_RATE_LIMIT_PER_MINUTE);
  const latencyTimers = new Set<NodeJS.Timeout>();
  let knobs: SimulatorKnobs = { ...DEFAULT_KNOBS, ...options.knobs };
  let calls = 0;
  let requests: RecordedRequest[] = [];

  const server = createServer((req, res) => {
    // Counted before anything can fail: the number of calls that reached
    // Deskie is what the proxy's tests assert on.
    calls += 1;
    requests.push(recordRequest(req));
    const quota = rateLimit.take(Date.now());
    const { latencyMs, faultAfterCalls } = knobs;
    const fault = calls > faultAfterCalls ? knobs.fault : 'none';
    if (fault === 'hang') {
      return; // never answered; close() ends the socket
    }
    afterLatency(res, latencyMs, () => {
      let reply: SimulatorReply;
      try {
        reply = faultReply(fault) ?? answer(req, quota);
      } catch {
        // The simulator may run inside the proxy's process (npm start without
        // DESKIE_URL): a bug here must answer 500, not end the process.
        reply = errorReply(500, 'internal server error');
      }
      send(res, reply, rateLimit.limitPerMinute, quota);
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

  function answer(req: IncomingMessage, quota: RateLimitQuota): SimulatorReply {
    if (!quota.admitted) {
      return errorReply(429, 'rate limit exceeded', { retry_after: String(quota.retryAfterSeconds) });
    }
    const { path, query } = splitUrl(req.url);
    const endpoint = req.method === 'GET' ? findEndpoint(path) : undefined;
    if (endpoint === undefined) {
      return errorReply(404, `no such endpoint: ${req.method ?? ''} ${path}`);
    }
    if (!isAuthenticated(req.headers.authorization, users)) {
      return errorReply(401, 'authentication failed');
    }
    return answerStats(endpoint, new URLSearchParams(query), DateTime.utc());
  }

  await listen(server, options.port ?? DEFAULT_PORT, options.host ?? DEFAULT_HOST);
  const url = serverUrl(server.address() as AddressInfo);

  return {
    url,
    get calls() {
      return calls;
    },
    get requests() {
      return requests;
    },
    set(changes) {
      knobs = { ...knobs, ...changes };
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
}

/** The answer a fault knob forces, or undefined to answer normally. */
function faultReply(fault: SimulatorFault): SimulatorReply | undefined {
  switch (fault) {
    case 'error500':
      return errorReply(500, 'internal server error (simulated)');
    case 'rateLimited':
      return errorReply(429, 'rate limit exceeded (simulated)', {
        retry_after: String(FAULT_RETRY_AFTER_SECONDS),
        api_calls_left: '0',
      });
    case 'malformed':
      return { statusCode: 200, body: MALFORMED_BODY };
    case 'redirect':
      return errorReply(301, 'moved (simulated)', { location: 'https://elsewhere.example/api/' });
    case 'none':
    case 'hang':
      return undefined;
  }
}

/** Every answer carries Deskie's rate-limit headers; a reply's own headers win. */
function send(res: ServerResponse, reply: SimulatorReply, limitPerMinute: number, quota: RateLimitQuota): void {
  res.writeHead(reply.statusCode, {
    'content-type': JSON_CONTENT_TYPE,
    'content-length': Buffer.byteLength(reply.body),
    rate_limit_per_minute: String(limitPerMinute),
    api_calls_left: String(quota.callsLeft),
    ...reply.headers,
  });
  res.end(reply.body);
}

function recordRequest(req: IncomingMessage): RecordedRequest {
  const { path, query } = splitUrl(req.url);
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
