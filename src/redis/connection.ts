import { randomUUID } from 'node:crypto';
import type { FastifyBaseLogger } from 'fastify';
import { createRequire } from 'node:module';
import type * as Ioredis from 'ioredis';
import type { Redis, RedisOptions } from 'ioredis';

/** Longest pause between two attempts to reconnect: a Redis back up is found within it. */
const MAX_RECONNECT_DELAY_MS = 2_000;
/** After a command fails on a live connection (Redis too slow), how long Redis is left alone: one request pays the timeout, not all. */
const SKIP_AFTER_FAILURE_MS = 1_000;

export interface SharedRedisOptions {
  /** REDIS_URL: `redis://[user:password@]host:port[/db]` or `rediss://` for TLS. */
  readonly url: string;
  /** REDIS_PREFIX: every key this proxy writes starts with it (and the format's version, `v1:`). */
  readonly prefix: string;
  /** REDIS_TIMEOUT_MS: no command is waited for longer. */
  readonly timeoutMs: number;
  readonly log: FastifyBaseLogger;
}

/** Redis as this process sees it: connected and answering, or not (then nothing waits on it). */
export type RedisState = 'connecting' | 'up' | 'down' | 'closed';

class RedisTimeout extends Error {
  override name = 'RedisTimeout';
  constructor() {
    super('Redis did not answer within REDIS_TIMEOUT_MS');
  }
}

/** ioredis, loaded by the first SharedRedis, so a proxy without REDIS_URL never holds it in memory. */
const loadIoredis = (): typeof Ioredis => createRequire(import.meta.url)('ioredis') as typeof Ioredis;

/** A message's JSON, or undefined when it is not JSON (another format: a rolling upgrade). */
export function parseMessage(message: string): unknown {
  try {
    return JSON.parse(message);
  } catch {
    return undefined;
  }
}

/** Version of what is written to Redis: a rolling upgrade that changes it cannot read the other's entries. */
const REDIS_FORMAT_VERSION = 'v1';

/** A command and a subscriber connection (it can do nothing else); commands fail after timeoutMs, at once if down. */
export class SharedRedis {
  readonly command: Redis;
  readonly subscriber: Redis;
  /** This process among the replicas: lease holders and heartbeats are told apart by it. */
  readonly replicaId = randomUUID();
  /** REDIS_TIMEOUT_MS: the longest a command, or a request's commands together (within()), are waited for. */
  readonly timeoutMs: number;
  readonly #prefix: string;
  readonly #log: FastifyBaseLogger;
  /** The connection's state: `up` once ready, `down` from its loss until it is ready again. */
  #state: RedisState = 'connecting';
  /** performance.now() until which Redis is not asked, after a command failed on a live connection. */
  #skipUntil = 0;
  #errors = 0;
  readonly #channels = new Map<string, (message: string) => void>();
  readonly #subscribed: Array<() => void> = [];
  #scripts = 0;

  constructor({ url, prefix, timeoutMs, log }: SharedRedisOptions) {
    this.#prefix = `${prefix}${REDIS_FORMAT_VERSION}:`;
    this.timeoutMs = timeoutMs;
    this.#log = log;
    const options: RedisOptions = {
      commandTimeout: timeoutMs,
      connectTimeout: Math.max(timeoutMs, 1_000),
      enableOfflineQueue: false,
      maxRetriesPerRequest: 0,
      retryStrategy: (times) => Math.min(50 * 2 ** Math.min(times, 6), MAX_RECONNECT_DELAY_MS),
    };
    const { Redis: Connection } = loadIoredis();
    this.command = new Connection(url, options);
    // No ready check: INFO is refused on a subscribed connection. Channels are subscribed on each
    // ready (#subscribeAll), not by ioredis, which drops a SUBSCRIBE sent before the first connection.
    this.subscriber = new Connection(url, { ...options, enableReadyCheck: false, commandTimeout: undefined, autoResubscribe: false });
    this.subscriber.on('ready', () => this.#subscribeAll());
    this.command.on('ready', () => {
      this.#skipUntil = 0;
      this.#changeState('up');
    });
    this.command.on('end', () => this.#changeState(this.#state === 'closed' ? 'closed' : 'down'));
    this.command.on('close', () => this.#changeState(this.#state === 'closed' ? 'closed' : 'down'));
    // ioredis emits every failed attempt to connect: counted, logged at debug; a change of state is logged once.
    const failures = [[this.command, 'Redis connection failed'], [this.subscriber, 'Redis subscription failed']] as const;
    for (const [connection, message] of failures) {
      connection.on('error', (error: Error) => {
        this.#errors += 1;
        this.#log.debug({ err: error }, message);
      });
    }
    this.subscriber.on('message', (channel: string, message: string) => this.#channels.get(channel)?.(message));
  }

  key(name: string): string {
    return this.#prefix + name;
  }

  /** `up` while connected and no command failed in the last SKIP_AFTER_FAILURE_MS: callers ask Redis only then. */
  get state(): RedisState {
    if (this.#state === 'up' && performance.now() < this.#skipUntil) return 'down';
    return this.#state;
  }

  /** Commands that failed or timed out, and failed attempts to connect, since start. */
  get errors(): number {
    return this.#errors;
  }

  /** Counts a failed command (metrics, /readyz) and returns `fallback`: the caller goes on without Redis. */
  failed<T>(error: unknown, fallback: T): T {
    this.#errors += 1;
    if (this.#state !== 'up') return fallback;
    if (performance.now() >= this.#skipUntil) this.#log.warn({ err: error }, `a Redis command failed: Redis is left alone for ${SKIP_AFTER_FAILURE_MS} ms`);
    this.#skipUntil = performance.now() + SKIP_AFTER_FAILURE_MS;
    return fallback;
  }

  /** `command`'s result, or `fallback` when it fails (counted as failed() does). */
  async orElse<T, F>(fallback: F, command: () => Promise<T>): Promise<T | F> {
    try {
      return await command();
    } catch (error) {
      return this.failed(error, fallback);
    }
  }

  /** A request's commands share the deadline `byMs` (performance.now()); one given up on still runs, answer ignored. */
  async within<T>(byMs: number, command: (redis: Redis) => Promise<T>): Promise<T> {
    const leftMs = byMs - performance.now();
    if (leftMs <= 0) throw new RedisTimeout();
    let timer: NodeJS.Timeout | undefined;
    const late = new Promise<never>((_resolve, reject) => {
      timer = setTimeout(() => reject(new RedisTimeout()), leftMs);
    });
    try {
      return await Promise.race([command(this.command), late]);
    } finally {
      clearTimeout(timer);
    }
  }

  /** A Lua script, called with its keys then its arguments; ioredis runs it by EVALSHA and resends it to a restarted Redis. */
  script<Args extends ReadonlyArray<string | number | Buffer>>(numberOfKeys: number, lua: string): (...keysAndArgs: Args) => Promise<unknown> {
    const name = `deskieProxyScript${(this.#scripts += 1)}`;
    this.command.defineCommand(name, { numberOfKeys, lua });
    const commands = this.command as unknown as Record<string, (...keysAndArgs: Args) => Promise<unknown>>;
    return (...keysAndArgs) => (commands[name] as (...keysAndArgs: Args) => Promise<unknown>).call(this.command, ...keysAndArgs);
  }

  /** Hears every message published on `channel` (under the prefix) by any replica, this one included. */
  listen(channel: string, onMessage: (message: string) => void): void {
    const name = this.key(channel);
    this.#channels.set(name, onMessage);
    if (this.subscriber.status === 'ready') this.subscriber.subscribe(name).catch(() => (this.#errors += 1));
  }

  /** Called each time the subscriptions are made anew: messages published while they were down are lost. */
  onSubscribed(callback: () => void): void {
    this.#subscribed.push(callback);
  }

  #subscribeAll(): void {
    const names = [...this.#channels.keys()];
    if (names.length === 0) return;
    this.subscriber.subscribe(...names).then(
      () => {
        for (const callback of this.#subscribed) callback();
      },
      () => (this.#errors += 1),
    );
  }

  /** Publishes on `channel`; a failure is counted and otherwise ignored (listeners fall back on polling or expiry). */
  async publish(channel: string, message: string): Promise<void> {
    await this.orElse(undefined, () => this.command.publish(this.key(channel), message));
  }

  async close(): Promise<void> {
    this.#state = 'closed';
    await Promise.allSettled([this.command.quit(), this.subscriber.quit()]);
    this.command.disconnect();
    this.subscriber.disconnect();
  }

  #changeState(state: RedisState): void {
    if (state === this.#state || this.#state === 'closed') return;
    const was = this.#state;
    this.#state = state;
    if (state === 'up') this.#log.info({ redis: state, was }, 'connected to Redis');
    // Once when it is lost, and once when it cannot be reached at start (was `connecting`).
    else if (state === 'down') this.#log.warn({ redis: state, was }, "Redis is unreachable: answering from this replica's memory and Deskie, within its share of the budget");
  }
}
