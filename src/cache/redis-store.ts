import type { FastifyBaseLogger } from 'fastify';
import type { Redis } from 'ioredis';
import { ProxyError, storeUnreachable, UpstreamAnswer, upstreamFailureOf } from '../http/errors.js';
import type { AnswerSource } from '../formats/render.js';
import { parseMessage, type SharedRedis } from '../redis/connection.js';
import { MemoryStore } from './memory-store.js';
import { type AnswerLoader, type AnswerStore, type CachedAnswer, type EntryFilter, entryMatches, filterName, filterNamesSelecting, type ReusePolicy, type SharedStoreState, type StoreResult } from './store.js';

/** How long a claim on a key's load lasts unrenewed: the holder renews it every third of that, so a dead holder's load is taken over within it. */
const LEASE_MS = 5_000;
/** Longest a replica waiting for another's load goes without looking at Redis itself (a lost message costs this much). */
const POLL_MS = 200;
/** Published with a key when its answer was stored or its load ended: waiters look at once. */
const LOADED_CHANNEL = 'loaded';
/** Published with `[when, key | key suffix | EntryFilter]`: every replica drops its copies, and its loads begun by then. */
const PURGED_CHANNEL = 'purged';
const DROPPED_CHANNEL = 'dropped';
const PURGED_MATCHING_CHANNEL = 'purged-matching';
/** How long a holder's failure stays readable for the replicas that waited on it (they look within POLL_MS). */
const FAILURE_KEPT_MS = 2_000;
/** Largest body of Deskie's failing answer passed to the replicas that waited (a 5xx page is small). */
const MAX_SHARED_FAILURE_BODY = 16 * 1024;
/** SCAN's batch when the admin API lists entries. */
const SCAN_COUNT = 500;

/** Deletes a lease only if it is still the holder's (a lease that expired may be another replica's now). */
const RELEASE_LEASE = "if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('del', KEYS[1]) else return 0 end";
/** Sets the answer unless its partition, key or a filter on it was purged since askedAtMs; indexed: drops skip SCAN. */
const WRITE_ANSWER = `
local dropped = math.max(tonumber(redis.call('get', KEYS[2]) or '-1'), tonumber(redis.call('get', KEYS[4]) or '-1'))
for _, at in ipairs(redis.call('hmget', KEYS[5], unpack(ARGV, 6))) do if at then dropped = math.max(dropped, tonumber(at)) end end
if dropped >= tonumber(ARGV[3]) then return 0 end
redis.call('set', KEYS[1], ARGV[1], 'PX', ARGV[2])
redis.call('zremrangebyscore', KEYS[3], '-inf', ARGV[5])
redis.call('zadd', KEYS[3], ARGV[4], KEYS[1])
if redis.call('pttl', KEYS[3]) < tonumber(ARGV[2]) then redis.call('pexpire', KEYS[3], ARGV[2]) end
return 1`;
/** Marks the filter named ARGV[1] purged as of ARGV[2] in KEYS[1], which lasts ARGV[3] ms past the latest purge. */
const MARK_PURGED_MATCHING = "redis.call('hset', KEYS[1], ARGV[1], ARGV[2]) redis.call('pexpire', KEYS[1], ARGV[3])";
/** Marks the answer (KEYS[1]) purged (KEYS[2]) as of ARGV[1] for ARGV[2] ms, and deletes it; 1 if it was there. */
const PURGE_ANSWER = "redis.call('set', KEYS[2], ARGV[1], 'PX', ARGV[2]) return redis.call('del', KEYS[1])";
/** Marks the partition dropped (KEYS[2]) as of ARGV[1] for ARGV[2] ms, deletes its index (KEYS[1]) and the answers it names; returns how many. */
const DROP_PARTITION = `
redis.call('set', KEYS[2], ARGV[1], 'PX', ARGV[2])
local removed = 0
for _, key in ipairs(redis.call('zrange', KEYS[1], 0, -1)) do removed = removed + redis.call('del', key) end
redis.call('del', KEYS[1])
return removed`;
const RENEW_LEASE = "if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('pexpire', KEYS[1], ARGV[2]) else return 0 end";

type WriteArgs = [answer: string, dropped: string, index: string, purged: string, purges: string, value: Buffer | string, keepMs: number, askedAtMs: number, keepUntilMs: number, nowMs: number, ...filters: string[]];

/** The scripts above, each called with its keys then its arguments. */
function defineScripts(redis: SharedRedis) {
  return {
    write: redis.script<WriteArgs>(5, WRITE_ANSWER),
    markPurged: redis.script<[purges: string, filter: string, atMs: number, markMs: number]>(1, MARK_PURGED_MATCHING),
    purge: redis.script<[answer: string, purged: string, atMs: number, markMs: number]>(2, PURGE_ANSWER),
    drop: redis.script<[index: string, dropped: string, atMs: number, markMs: number]>(2, DROP_PARTITION),
    renewLease: redis.script<[lease: string, token: string, leaseMs: number]>(1, RENEW_LEASE),
    releaseLease: redis.script<[lease: string, token: string]>(1, RELEASE_LEASE),
  };
}

export interface RedisStoreOptions {
  readonly redis: SharedRedis;
  /** L1_MAX_BYTES: fresh answers this replica keeps in its own memory. */
  readonly l1MaxBytes: number;
  readonly clock: () => number;
  readonly log: FastifyBaseLogger;
  /** LEASE_MS unless a test wants a holder's death noticed sooner. */
  readonly leaseMs?: number;
  /** The longest a load may take (real ms): a replica waits that long for a live holder, then loads by itself. */
  readonly longestLoadMs: number;
}

/** A load under way in this replica: when it began, and the purges since that its answer is not stored for. */
interface Loading {
  readonly purges: Array<(answer: CachedAnswer) => boolean>;
  readonly startedAtMs: number;
}

const purgedBy = ({ purges }: Loading, answer: CachedAnswer): boolean => purges.some((selects) => selects(answer));

type ProxyErrorFields = Pick<ProxyError, 'code' | 'message' | 'statusCode' | 'headers' | 'failure'>;

/** A lease holder's failure as the replicas that waited on it read it: Deskie's own answer, or the proxy's error. */
type SharedFailure = { readonly lease: string } & (
  | { readonly deskie: Readonly<{ status: number; body: string; contentType: string | null; retryAfterSeconds: number | null }>; readonly proxy?: undefined }
  | { readonly deskie?: undefined; readonly proxy: ProxyErrorFields }
);

/** What Redis holds beside the body, as JSON: the answer's own fields and its source's; `refreshAtMs` null stands for never. */
type StoredMeta = Omit<CachedAnswer, 'source' | 'variants' | 'refreshAtMs' | 'lastAskedAtMs' | 'hits'> &
  Omit<AnswerSource, 'gzipped'> & { readonly refreshAtMs: number | null };

/**
 * Answers in Redis behind an in-process L1 of fresh ones (a hit never waits on Redis): gzipped body and times under
 * `…v1:a:<key>` till keepUntilMs; replicas render variants. One load per key cluster-wide, by the `…lease:<key>` holder
 * (SET NX PX, renewed); others wait (message or poll), take a lapsed lease, share its failure. Purge and drop delete,
 * tell all, and refuse older calls' writes. Redis down or past REDIS_TIMEOUT_MS: fail fast; L1 answers; loads go alone.
 */
export class RedisStore implements AnswerStore {
  readonly #redis: SharedRedis;
  readonly #l1: MemoryStore;
  readonly #clock: () => number;
  readonly #log: FastifyBaseLogger;
  readonly #leaseMs: number;
  readonly #longestLoadMs: number;
  readonly #scripts: ReturnType<typeof defineScripts>;
  /** Keys this replica is loading; those purged meanwhile are not written to Redis. */
  readonly #loading = new Map<string, Loading>();
  /** This replica's callers waiting for another's load, woken by key. */
  readonly #waiting = new Map<string, Set<() => void>>();
  #closed = false;

  constructor({ redis, l1MaxBytes, clock, log, leaseMs = LEASE_MS, longestLoadMs }: RedisStoreOptions) {
    this.#longestLoadMs = longestLoadMs;
    this.#scripts = defineScripts(redis);
    this.#redis = redis;
    this.#clock = clock;
    this.#log = log;
    this.#leaseMs = leaseMs;
    // Fresh copies only: anything older is asked of Redis, which every replica keeps current.
    this.#l1 = new MemoryStore({ maxBytes: l1MaxBytes, clock, holdUntil: (answer) => answer.expiresAtMs });
    redis.listen(LOADED_CHANNEL, (key) => this.#wake(key));
    redis.listen(PURGED_CHANNEL, (message) => whenAndWhat<string>(message, 'string', (atMs, key) => this.#dropCopy(key, atMs)));
    redis.listen(DROPPED_CHANNEL, (message) => whenAndWhat<string>(message, 'string', (atMs, keySuffix) => this.#dropCopies(keySuffix, atMs)));
    redis.listen(PURGED_MATCHING_CHANNEL, (message) => whenAndWhat<EntryFilter>(message, 'object', (atMs, filter) => this.#dropMatching(entryMatches(filter), atMs)));
    // A purge published while this replica was not subscribed never reaches it: its copies may be purged ones.
    redis.onSubscribed(() => this.#l1.clear());
  }

  get(key: string): CachedAnswer | undefined {
    return this.#l1.get(key);
  }

  async peek(key: string): Promise<CachedAnswer | undefined> {
    return this.#l1.get(key) ?? (await this.#read(key));
  }

  async fetch(key: string, load: AnswerLoader, reuse?: ReusePolicy): Promise<StoreResult> {
    // L1 joins this replica's callers into one cluster load.
    let cluster: StoreResult | undefined;
    const result = await this.#l1.fetch(key, async () => (cluster = await this.#clusterLoad(key, load, reuse)).answer);
    if (result.outcome === 'collapsed' || cluster === undefined) return result;
    const purged = result.purged === true || cluster.purged === true;
    return { answer: result.answer, outcome: cluster.outcome, stored: !purged && (result.stored || cluster.stored), purged };
  }

  get entries(): number {
    return this.#l1.entries;
  }

  get bytes(): number {
    return this.#l1.bytes;
  }

  get evictions(): number {
    return this.#l1.evictions;
  }

  get usable(): boolean {
    return !this.#closed;
  }

  get shared(): SharedStoreState {
    return { redis: this.#redis.state, errors: this.#redis.errors };
  }

  resize(answer: CachedAnswer): void {
    this.#l1.resize(answer);
  }

  /** Every answer Redis holds (this replica's copy where the same); a 503 without Redis, as its copies alone would pass for the cluster's. */
  async list(): Promise<CachedAnswer[]> {
    const { command } = this.#redis;
    const own = new Map((await this.#l1.list()).map((answer) => [answer.key, answer]));
    const held: CachedAnswer[] = [];
    try {
      for await (const names of command.scanStream({ match: this.#redis.key('a:*'), count: SCAN_COUNT }) as AsyncIterable<string[]>) {
        if (names.length === 0) continue;
        for (const value of await command.mgetBuffer(...names)) {
          const answer = value === null ? undefined : this.#decode(value);
          if (answer === undefined || answer.keepUntilMs <= this.#clock()) continue;
          const copy = own.get(answer.key);
          held.push(copy?.fetchedAtMs === answer.fetchedAtMs ? copy : answer);
        }
      }
      return held;
    } catch (error) {
      this.#redis.failed(error, undefined);
      throw storeUnreachable('listed');
    }
  }

  /** Marks the partition dropped as of now, drops what Redis and this replica hold of it, and tells the others. */
  async dropEnding(keySuffix: string): Promise<number> {
    const atMs = this.#clock();
    const copies = this.#dropCopies(keySuffix, atMs).length;
    const args = [this.#partitionKey(keySuffix), this.#droppedKey(keySuffix), atMs, this.#tombstoneMs()] as const;
    const removed = await this.#redis.orElse(undefined, async () => Number(await this.#scripts.drop(...args)));
    void this.#redis.publish(DROPPED_CHANNEL, JSON.stringify([atMs, keySuffix]));
    return removed ?? copies;
  }

  /** This replica's copies and loads of keys ending with `keySuffix` go (see #dropCopy); answers the keys it held. */
  #dropCopies(keySuffix: string, atMs: number): string[] {
    for (const key of this.#loading.keys()) if (key.endsWith(keySuffix)) this.#dropCopy(key, atMs);
    return this.#l1.purgeHeld((answer) => answer.key.endsWith(keySuffix), atMs);
  }

  /** Marks the filter purged as of now (see WRITE_ANSWER), drops what Redis and this replica hold, tells the others; a 503 without Redis. */
  async purge(filter: EntryFilter): Promise<number> {
    const atMs = this.#clock();
    const selects = entryMatches(filter);
    this.#dropMatching(selects, atMs);
    let removed: number;
    try {
      await this.#scripts.markPurged(this.#purgesKey(), filterName(filter), atMs, this.#tombstoneMs());
      const keys = (await this.list()).filter(selects).map((answer) => this.#answerKey(answer.key));
      removed = keys.length === 0 ? 0 : await this.#redis.command.del(...keys);
    } catch (error) {
      // list() has counted its own failure.
      if (!(error instanceof ProxyError)) this.#redis.failed(error, undefined);
      throw storeUnreachable('purged');
    }
    await this.#redis.publish(PURGED_MATCHING_CHANNEL, JSON.stringify([atMs, filter]));
    return removed;
  }

  /** This replica's copies that `selects` takes go, and its loads begun by `atMs` are not written if it takes their answer. */
  #dropMatching(selects: (answer: CachedAnswer) => boolean, atMs: number): void {
    for (const loading of this.#loading.values()) if (loading.startedAtMs <= atMs) loading.purges.push(selects);
    this.#l1.purgeHeld(selects, atMs);
  }

  /** Drops the answer from Redis and every replica's L1; a 503 when Redis cannot answer (this copy goes all the same). */
  async delete(key: string): Promise<boolean> {
    const atMs = this.#clock();
    const hadCopy = this.#dropCopy(key, atMs);
    const purging = this.#scripts.purge(this.#answerKey(key), this.#purgedKey(key), atMs, this.#tombstoneMs());
    const removed = await purging.catch((error: unknown) => {
      throw this.#redis.failed(error, storeUnreachable('purged'));
    });
    await this.#redis.publish(PURGED_CHANNEL, JSON.stringify([atMs, key]));
    return removed === 1 || hadCopy;
  }

  async close(): Promise<void> {
    this.#closed = true;
    for (const wakers of this.#waiting.values()) for (const wake of wakers) wake();
    await this.#l1.close();
  }

  /** Drops this replica's copy of a key purged at `atMs`; a load of it begun by then is not stored. */
  #dropCopy(key: string, atMs: number): boolean {
    const loading = this.#loading.get(key);
    if (loading !== undefined && loading.startedAtMs <= atMs) loading.purges.push(() => true);
    return this.#l1.deleteHeld(key, atMs);
  }

  /** Another replica's answer when `reuse` takes it; else the lease and a load here; else the holder's answer (`collapsed`). */
  async #clusterLoad(key: string, load: AnswerLoader, reuse: ReusePolicy | undefined): Promise<StoreResult> {
    // From the start: a purge while Redis is read or a lease waited for counts too.
    const loading: Loading = { purges: [], startedAtMs: this.#clock() };
    this.#loading.set(key, loading);
    try {
      return await this.#loadOnce(key, load, reuse, loading);
    } finally {
      if (this.#loading.get(key) === loading) this.#loading.delete(key);
    }
  }

  async #loadOnce(key: string, load: AnswerLoader, reuse: ReusePolicy | undefined, loading: Loading): Promise<StoreResult> {
    // Until it loads or waits for another replica, a request gives Redis REDIS_TIMEOUT_MS in all.
    let by = performance.now() + this.#redis.timeoutMs;
    const seen = await this.#read(key, by);
    if (seen !== undefined && reuse?.(seen)) return { answer: seen, outcome: 'hit', stored: true };
    const replaces = seen !== undefined || this.#l1.get(key) !== undefined;
    // Past the longest load and a lapsed lease, something is wrong with Redis: load here.
    const giveUpAt = performance.now() + this.#longestLoadMs + this.#leaseMs;
    while (!this.#closed && this.#redis.state === 'up' && performance.now() < giveUpAt) {
      const lease = await this.#takeLease(key, by);
      if (lease !== false) return this.#load(load, replaces, loading, key, lease);
      const holder = await this.#leaseHolder(key, by);
      await this.#waitForLoad(key);
      // The wait was Deskie's time: each look at Redis after it has a timeout of its own.
      by = performance.now() + this.#redis.timeoutMs;
      const current = await this.#read(key, by);
      if (current !== undefined && current.fetchedAtMs > (seen?.fetchedAtMs ?? Number.NEGATIVE_INFINITY)) return { answer: current, outcome: 'collapsed', stored: true };
      // Deskie failed the holder's call: this replica's callers get that failure (or their stale answer), not a second wait.
      const failure = holder === undefined ? undefined : await this.#sharedFailure(key, holder, by);
      if (failure !== undefined) throw failure;
    }
    return this.#load(load, replaces, loading, key, undefined);
  }

  /** Loads here (holding `lease` when Redis gave one), stores the answer in Redis, and wakes the replicas waiting for it. */
  async #load(load: AnswerLoader, replaces: boolean, loading: Loading, key: string, lease: string | undefined): Promise<StoreResult> {
    const renewal = lease === undefined ? undefined : setInterval(() => void this.#renewLease(key, lease), Math.max(1, Math.floor(this.#leaseMs / 3)));
    renewal?.unref();
    let answer: CachedAnswer | undefined;
    let failed: unknown;
    try {
      answer = await load();
      // Written after the caller has its answer (below); a later command on this connection reads it.
      const purged = purgedBy(loading, answer);
      const writing = !purged && answer.keepUntilMs > this.#clock() && this.#redis.state === 'up';
      return { answer, outcome: replaces ? 'refreshed' : 'miss', stored: writing, purged };
    } catch (error) {
      failed = error;
      throw error;
    } finally {
      clearInterval(renewal);
      void this.#share(key, lease, loading, answer, failed);
    }
  }

  /** After the caller has its answer: writes it (or shares Deskie's failure), lets the lease go, wakes the waiters. */
  async #share(key: string, lease: string | undefined, loading: Loading, answer: CachedAnswer | undefined, failed: unknown): Promise<void> {
    if (answer !== undefined) {
      if (!purgedBy(loading, answer)) await this.#write(answer);
    } else if (lease !== undefined) {
      await this.#shareFailure(key, lease, failed);
    }
    if (lease === undefined) return;
    await this.#releaseLease(key, lease);
    await this.#redis.publish(LOADED_CHANNEL, key);
  }

  /** Only failures a stale answer may stand in for; a refused credential or query the next replica learns from Deskie itself. */
  async #shareFailure(key: string, lease: string, error: unknown): Promise<void> {
    if (upstreamFailureOf(error) === undefined) return;
    const shared: SharedFailure =
      error instanceof UpstreamAnswer
        ? {
            lease,
            deskie: {
              status: error.statusCode,
              body: error.body.length <= MAX_SHARED_FAILURE_BODY ? error.body.toString('base64') : '',
              contentType: error.contentType ?? null,
              retryAfterSeconds: error.retryAfterSeconds ?? null,
            },
          }
        : { lease, proxy: proxyErrorFields(error as ProxyError) };
    await this.#redis.orElse(undefined, () =>
      this.#redis.command.set(this.#failureKey(key), JSON.stringify(shared), 'PX', FAILURE_KEPT_MS),
    );
  }

  /** The failure the holder of `lease` shared, as the error its own callers got. */
  async #sharedFailure(key: string, lease: string, by: number): Promise<ProxyError | UpstreamAnswer | undefined> {
    const text = await this.#within(by, (redis) => redis.get(this.#failureKey(key)));
    if (text === undefined || text === null) return undefined;
    try {
      const shared = JSON.parse(text) as SharedFailure;
      if (shared.lease !== lease) return undefined;
      if (shared.deskie !== undefined) {
        const { status, body, contentType, retryAfterSeconds } = shared.deskie;
        return new UpstreamAnswer(status, Buffer.from(body, 'base64'), contentType ?? undefined, retryAfterSeconds ?? undefined);
      }
      const { code, message, statusCode, headers, failure } = shared.proxy;
      return new ProxyError(code, message, statusCode, headers, failure);
    } catch (error) {
      this.#log.warn({ err: error }, "another replica's failure could not be read: ignored");
      return undefined;
    }
  }

  /** Who holds the key's lease now: its token, or undefined (none, or Redis could not say). */
  async #leaseHolder(key: string, by: number): Promise<string | undefined> {
    return (await this.#within(by, (redis) => redis.get(this.#leaseKey(key)))) ?? undefined;
  }

  /** The lease's token when this replica now holds it, false when another does, undefined when Redis could not say. */
  async #takeLease(key: string, by: number): Promise<string | false | undefined> {
    const token = `${this.#redis.replicaId}:${process.hrtime.bigint()}`;
    const taken = await this.#within(by, (redis) => redis.set(this.#leaseKey(key), token, 'PX', this.#leaseMs, 'NX'));
    if (taken === undefined) return undefined;
    return taken === 'OK' ? token : false;
  }

  async #renewLease(key: string, token: string): Promise<void> {
    await this.#redis.orElse(undefined, () => this.#scripts.renewLease(this.#leaseKey(key), token, this.#leaseMs));
  }

  /** A lease not released (Redis failed) lapses by itself. */
  async #releaseLease(key: string, token: string): Promise<void> {
    await this.#redis.orElse(undefined, () => this.#scripts.releaseLease(this.#leaseKey(key), token));
  }

  /** Until a replica says the key's load ended, or POLL_MS. */
  #waitForLoad(key: string): Promise<void> {
    return new Promise((resolve) => {
      let wakers = this.#waiting.get(key);
      if (wakers === undefined) this.#waiting.set(key, (wakers = new Set()));
      const done = (): void => {
        clearTimeout(timer);
        wakers.delete(done);
        if (wakers.size === 0 && this.#waiting.get(key) === wakers) this.#waiting.delete(key);
        resolve();
      };
      const timer = setTimeout(done, POLL_MS);
      wakers.add(done);
    });
  }

  #wake(key: string): void {
    for (const wake of [...(this.#waiting.get(key) ?? [])]) wake();
  }

  /** The answer Redis holds for `key` and still keeps; undefined when none, or when Redis cannot answer. */
  async #read(key: string, by = performance.now() + this.#redis.timeoutMs): Promise<CachedAnswer | undefined> {
    if (this.#redis.state !== 'up') return undefined;
    const value = await this.#within(by, (redis) => redis.getBuffer(this.#answerKey(key)));
    const answer = value ? this.#decode(value) : undefined;
    return answer !== undefined && answer.key === key && answer.keepUntilMs > this.#clock() ? answer : undefined;
  }

  /** SharedRedis.within(), or undefined when Redis failed or ran out of time (counted). */
  #within<T>(by: number, command: (redis: Redis) => Promise<T>): Promise<T | undefined> {
    return this.#redis.orElse(undefined, () => this.#redis.within(by, command));
  }

  /** Stores `answer` until its keepUntilMs; false when it is already past that or Redis failed. */
  async #write(answer: CachedAnswer): Promise<boolean> {
    const keepMs = answer.keepUntilMs - this.#clock();
    if (keepMs <= 0 || this.#redis.state !== 'up') return false;
    const { key, askedAtMs, keepUntilMs } = answer;
    const suffix = partitionSuffix(key);
    const keys = [this.#answerKey(key), this.#droppedKey(suffix), this.#partitionKey(suffix), this.#purgedKey(key), this.#purgesKey()] as const;
    const args = [encode(answer), keepMs, askedAtMs, keepUntilMs, this.#clock(), ...filterNamesSelecting(answer)] as const;
    return (await this.#redis.orElse(false, () => this.#scripts.write(...keys, ...args))) === 1;
  }

  #decode(value: Buffer): CachedAnswer | undefined {
    try {
      return decode(value);
    } catch (error) {
      this.#log.warn({ err: error }, 'an entry in Redis could not be read: ignored');
      return undefined;
    }
  }

  /** How long a purge or a drop refuses answers from calls made before it: as long as a load may still be under way. */
  #tombstoneMs(): number {
    return this.#longestLoadMs + this.#leaseMs;
  }

  readonly #answerKey = (key: string): string => this.#redis.key(`a:${key}`);
  readonly #leaseKey = (key: string): string => this.#redis.key(`lease:${key}`);
  readonly #failureKey = (key: string): string => this.#redis.key(`failed:${key}`);
  readonly #purgedKey = (key: string): string => this.#redis.key(`purged:${key}`);
  /** When each filter (by filterName) was last purged: one hash, kept while purges are recent. */
  readonly #purgesKey = (): string => this.#redis.key('purges');
  /** The index of a partition's answer keys. */
  readonly #partitionKey = (keySuffix: string): string => this.#redis.key(`partition:${keySuffix}`);
  readonly #droppedKey = (keySuffix: string): string => this.#redis.key(`dropped:${keySuffix}`);
}

/** Reads a purge's message, `[when, what]` (a key or key suffix, or an EntryFilter), and hands it on; anything else (another format) is ignored. */
function whenAndWhat<What>(message: string, kind: 'string' | 'object', handle: (atMs: number, what: What) => void): void {
  const parsed = parseMessage(message);
  if (Array.isArray(parsed) && typeof parsed[0] === 'number' && typeof parsed[1] === kind && parsed[1] !== null) handle(parsed[0], parsed[1] as What);
}

/** The partition a key ends with (`#<partition>`), or '' for a key without one. */
function partitionSuffix(key: string): string {
  const at = key.lastIndexOf('#');
  return at === -1 ? '' : key.slice(at);
}

function proxyErrorFields({ code, message, statusCode, headers, failure }: ProxyError): ProxyErrorFields {
  return { code, message, statusCode, headers, failure };
}

/** An answer as Redis holds it: the length of its JSON times (4 bytes), the times, then the compressed body. */
function encode(answer: CachedAnswer): Buffer {
  const { source } = answer;
  const meta: StoredMeta = {
    key: answer.key,
    freshness: answer.freshness,
    contentType: source.contentType,
    endpoint: source.endpoint,
    fromMs: source.fromMs,
    toMs: source.toMs,
    zone: source.zone,
    lastModified: answer.lastModified,
    fetchedAtMs: answer.fetchedAtMs,
    askedAtMs: answer.askedAtMs,
    expiresAtMs: answer.expiresAtMs,
    refreshAtMs: Number.isFinite(answer.refreshAtMs) ? answer.refreshAtMs : null,
    keepUntilMs: answer.keepUntilMs,
    upstreamMs: answer.upstreamMs,
    upstreamCalls: answer.upstreamCalls,
  };
  const json = Buffer.from(JSON.stringify(meta));
  const length = Buffer.alloc(4);
  length.writeUInt32BE(json.length);
  return Buffer.concat([length, json, source.gzipped]);
}

function decode(value: Buffer): CachedAnswer {
  const length = value.readUInt32BE(0);
  const meta = JSON.parse(value.subarray(4, 4 + length).toString()) as StoredMeta;
  const { contentType, endpoint, fromMs, toMs, zone, refreshAtMs, ...times } = meta;
  return {
    ...times,
    // Its own copy of the body: the reply's buffer is not kept alive by it.
    source: { gzipped: Buffer.from(value.subarray(4 + length)), contentType, endpoint, fromMs, toMs, zone },
    variants: [],
    refreshAtMs: refreshAtMs ?? Number.POSITIVE_INFINITY,
    lastAskedAtMs: meta.fetchedAtMs,
    hits: 0,
  };
}
