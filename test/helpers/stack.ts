import type { FastifyBaseLogger, FastifyInstance } from 'fastify';
import type { Test } from 'tap';
import { request } from 'undici';
import { buildApp } from '../../src/app.js';
import type { Scheduler } from '../../src/cache/scheduler.js';
import type { AnswerStore } from '../../src/cache/store.js';
import { loadConfig } from '../../src/config/config.js';
import { startSimulator, type Simulator, type SimulatorOptions } from '../../src/simulator/index.js';

export const DEMO = 'Basic ' + Buffer.from('demo@example.com:demo').toString('base64');
export const OTHER = 'Basic ' + Buffer.from('other@example.com:secret').toString('base64');
export const WRONG = 'Basic ' + Buffer.from('demo@example.com:wrong').toString('base64');

/** A clock the test moves by hand; the proxy reads it instead of Date.now. */
export class ManualClock {
  constructor(public nowMs: number) {}
  readonly now = (): number => this.nowMs;
  set(iso: string): void {
    this.nowMs = Date.parse(iso);
  }
  advance(ms: number): void {
    this.nowMs += ms;
  }
}

export interface StackOptions {
  /** Environment for loadConfig; DESKIE_URL points at the simulator. */
  readonly env?: Record<string, string>;
  /** The proxy's clock starts here (ISO instant). */
  readonly now?: string;
  readonly simulator?: SimulatorOptions;
  /** Replaces the manual clock for a test that ties time to events. */
  readonly clock?: () => number;
  /** The simulator's rate-limit minute runs on the proxy's manual clock too. */
  readonly simulatorOnProxyClock?: boolean;
  /** Replaces the default memory store, given the proxy's clock. */
  readonly store?: (clock: () => number) => AnswerStore;
  readonly logger?: FastifyBaseLogger;
  /** Replaces the proxy's timers, given the manual clock (a ManualScheduler fires due refreshes as the test moves it). */
  readonly scheduler?: (clock: ManualClock) => Scheduler;
}

export interface Answer {
  readonly status: number;
  readonly headers: Record<string, string | string[] | undefined>;
  readonly text: string;
}

export interface Stack {
  readonly app: FastifyInstance;
  /** Requests the proxy has received so far (any route), to prove requests overlapped. */
  readonly arrivals: number;
  readonly proxyUrl: string;
  readonly simulator: Simulator;
  readonly clock: ManualClock;
  get(path: string, options?: { authorization?: string | null; headers?: Record<string, string>; method?: 'GET' | 'HEAD' }): Promise<Answer>;
}

/** The proxy and a Deskie simulator, both listening on loopback ports, closed when the test ends. */
export async function startStack(t: Test, options: StackOptions = {}): Promise<Stack> {
  const clock = new ManualClock(Date.parse(options.now ?? '2026-11-28T12:00:00Z'));
  const simulator = await startSimulator({
    users: { 'demo@example.com': 'demo', 'other@example.com': 'secret' },
    ...(options.simulatorOnProxyClock ? { clock: clock.now } : {}),
    // The account's zone, as the proxy is told it.
    ...(options.env?.['DESKIE_TIMEZONE'] ? { timezone: options.env['DESKIE_TIMEZONE'] } : {}),
    ...options.simulator,
  });
  t.teardown(() => simulator.close());
  const config = loadConfig({ CACHE_KEY_SECRET: 'test-secret-of-16-bytes', ...options.env, DESKIE_URL: simulator.url });
  const proxyClock = options.clock ?? clock.now;
  const app = buildApp(
    { ...config, deskieUrl: simulator.url },
    {
      clock: proxyClock,
      store: options.store?.(proxyClock),
      ...(options.logger ? { logger: options.logger } : {}),
      ...(options.scheduler ? { scheduler: options.scheduler(clock) } : {}),
    },
  );
  await app.listen({ port: 0, host: '127.0.0.1' });
  let arrivals = 0;
  app.server.on('request', () => {
    arrivals += 1;
  });
  t.teardown(() => app.close());
  const address = app.server.address();
  if (address === null || typeof address === 'string') throw new Error('proxy did not listen on a port');
  const proxyUrl = `http://127.0.0.1:${address.port}`;

  return {
    app,
    get arrivals() {
      return arrivals;
    },
    proxyUrl,
    simulator,
    clock,
    async get(path, { authorization = DEMO, headers = {}, method = 'GET' } = {}) {
      const response = await request(`${proxyUrl}${path}`, {
        method,
        headers: { ...(authorization === null ? {} : { authorization }), ...headers },
      });
      return { status: response.statusCode, headers: response.headers, text: await response.body.text() };
    },
  };
}

/** The `ttl` parameter of a Cache-Status header, or NaN. */
export function ttlOf(answer: Answer): number {
  const match = /ttl=(\d+)/.exec(String(answer.headers['cache-status']));
  return match ? Number(match[1]) : Number.NaN;
}

/** Waits, turn by turn of the event loop, until no call to Deskie is in flight or queued (a background refresh has landed). */
export async function settled(stack: Stack, maxTurns = 10_000): Promise<void> {
  for (let turn = 0; turn < maxTurns; turn++) {
    const health = JSON.parse((await stack.get('/healthz', { authorization: null })).text) as { upstream: { inFlight: number; queued: number } };
    if (health.upstream.inFlight === 0 && health.upstream.queued === 0) return;
    await new Promise((resolve) => setImmediate(resolve));
  }
  throw new Error('calls to Deskie did not settle');
}

/** Waits, turn by turn of the event loop, until `condition` holds (bounded, never by the clock). */
export async function until(condition: () => boolean, maxTurns = 100_000): Promise<void> {
  for (let turn = 0; turn < maxTurns; turn++) {
    if (condition()) return;
    await new Promise((resolve) => setImmediate(resolve));
  }
  throw new Error('the condition never held');
}
