import { randomUUID } from 'node:crypto';
import type { FastifyBaseLogger } from 'fastify';
import { Redis, type RedisOptions } from 'ioredis';

/** Longest pause between two attempts to reconnect: a Redis back up is found within it. */
const MAX_RECONNECT_DELAY_MS = 2_000;

export interface SharedRedisOptions {
  /** REDIS_URL: `redis://[user:password@]host:port[/db]` or `rediss://` for TLS. */
  readonly url: string;
  /** REDIS_PREFIX: every key this proxy writes starts with it (and the format's version, `v1:`). */
  readonly prefix: string;
  /** REDIS_TIMEOUT_MS: no command is waited for longer. */
  readonly timeoutMs: number;
  readonly log: FastifyBaseLogger;
}

/** Redis as this process sees it: connected, or not (and then every command fails at once). */
export type RedisState = 'connecting' | 'up' | 'down' | 'closed';

/** Version of what is written to Redis: a rolling upgrade that changes it cannot read the other's entries. */
export const REDIS_FORMAT_VERSION = 'v1';

/**
 * The connections one process keeps to the shared Redis: one for commands and
 * one for subscriptions (a subscribed connection can do nothing else).
 *
 * Redis is never waited on: a command fails after `timeoutMs`, and at once
 * while the connection is down (no offline queue), so a request that needs
 * Redis goes on without it. ioredis reconnects by itself, forever, with a
 * pause of at most MAX_RECONNECT_DELAY_MS, and subscribes again.
 */
export class SharedRedis {
  readonly command: Redis;
  readonly subscriber: Redis;
  /** This process among the replicas: lease holders and heartbeats are told apart by it. */
  readonly replicaId = randomUUID();
  readonly #prefix: string;
  readonly #log: FastifyBaseLogger;
  #state: RedisState = 'connecting';
  #errors = 0;
  readonly #channels = new Map<string, (message: string) => void>();

  constructor({ url, prefix, timeoutMs, log }: SharedRedisOptions) {
    this.#prefix = `${prefix}${REDIS_FORMAT_VERSION}:`;
    this.#log = log;
    const options: RedisOptions = {
      commandTimeout: timeoutMs,
      connectTimeout: Math.max(timeoutMs, 1_000),
      enableOfflineQueue: false,
      maxRetriesPerRequest: 0,
      retryStrategy: (times) => Math.min(50 * 2 ** Math.min(times, 6), MAX_RECONNECT_DELAY_MS),
      // The URL may hold a password: ioredis would otherwise name the host in its errors, never the password; keep it that way.
      showFriendlyErrorStack: false,
    };
    this.command = new Redis(url, options);
    // Subscriptions made while down are sent once connected; they are re-made after every reconnect.
    this.subscriber = new Redis(url, { ...options, enableOfflineQueue: true, commandTimeout: undefined, autoResubscribe: true });
    this.command.on('ready', () => this.#changeState('up'));
    this.command.on('end', () => this.#changeState(this.#state === 'closed' ? 'closed' : 'down'));
    this.command.on('close', () => this.#changeState(this.#state === 'closed' ? 'closed' : 'down'));
    for (const connection of [this.command, this.subscriber]) {
      // ioredis emits every failed attempt to connect: counted, and logged once per change of state.
      connection.on('error', (error: Error) => this.#failed(error));
    }
    this.subscriber.on('message', (channel: string, message: string) => this.#channels.get(channel)?.(message));
  }

  /** The key `name` under this proxy's prefix and format version. */
  key(name: string): string {
    return this.#prefix + name;
  }

  get state(): RedisState {
    return this.#state;
  }

  /** Commands that failed or timed out, and failed attempts to connect, since start. */
  get errors(): number {
    return this.#errors;
  }

  /**
   * Counts a command that failed, for the metrics and /readyz; the caller
   * goes on without Redis. Returns `fallback`.
   */
  failed<T>(error: unknown, fallback: T): T {
    this.#failed(error);
    return fallback;
  }

  /** Hears every message published on `channel` (under the prefix) by any replica, this one included. */
  listen(channel: string, onMessage: (message: string) => void): void {
    const name = this.key(channel);
    this.#channels.set(name, onMessage);
    this.subscriber.subscribe(name).catch((error: unknown) => this.#failed(error));
  }

  /** Publishes on `channel`; a failure is counted and otherwise ignored (listeners fall back on polling or expiry). */
  async publish(channel: string, message: string): Promise<void> {
    try {
      await this.command.publish(this.key(channel), message);
    } catch (error) {
      this.#failed(error);
    }
  }

  async close(): Promise<void> {
    this.#state = 'closed';
    await Promise.allSettled([this.command.quit(), this.subscriber.quit()]);
    this.command.disconnect();
    this.subscriber.disconnect();
  }

  #failed(error: unknown): void {
    this.#errors += 1;
    if (this.#state === 'up') this.#changeState('down', error);
    else this.#log.debug({ err: error }, 'Redis command failed');
  }

  #changeState(state: RedisState, error?: unknown): void {
    if (state === this.#state || this.#state === 'closed') return;
    const was = this.#state;
    this.#state = state;
    if (state === 'up') this.#log.info({ redis: state, was }, 'connected to Redis');
    else this.#log.warn({ redis: state, err: error }, 'Redis is unreachable: answering from this replica\'s memory and Deskie, within its share of the budget');
  }
}
