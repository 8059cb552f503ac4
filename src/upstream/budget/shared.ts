import type { FastifyBaseLogger } from 'fastify';
import { parseMessage, type SharedRedis } from '../../redis/connection.js';
import type { SharedAccount } from './account.js';
import { accountOf, BUDGET_CHANNEL, SharedKeys } from './shared-keys.js';
import { forgetExpired } from './window.js';

/** How often each replica says it is alive, in real ms: the replica count, and so the fallback share, is as fresh as this. */
const DEFAULT_HEARTBEAT_MS = 5_000;
/** A replica not heard from in this many heartbeats is gone (one missed beat is a slow Redis, not a dead replica). */
const LIVE_HEARTBEATS = 3;
/** How long the account's limit and calls left are kept once no replica calls Deskie: a day, so a quiet night forgets nothing. */
const ACCOUNT_TTL_MS = 86_400_000;
/** While a lost log is written back (a few ms), a take looks again after this many real ms. */
const RECOVERY_POLL_MS = 25;

/** May the calls go out: taken (under these members), wait until clock ms, or unavailable (Redis did not answer). */
export type SharedTake =
  | { readonly outcome: 'taken'; readonly members: readonly string[] }
  | { readonly outcome: 'wait'; readonly until: number }
  | { readonly outcome: 'unavailable' };

type SharedMode = 'redis' | 'replica-share';

export interface SharedBudgetOptions {
  readonly redis: SharedRedis;
  /** The budget's clock (epoch ms): the shared log is scored on it, never on Redis's TIME, so tests move it by hand. */
  readonly clock: () => number;
  readonly log: FastifyBaseLogger;
  readonly heartbeatMs?: number;
}

/** Told by the shared budget of what the other replicas learnt, and of a change between Redis and the fallback share. */
export interface SharedBudgetListener {
  account(account: SharedAccount): void;
  modeChanged(): void;
}

interface SentEntry {
  readonly member: string;
  readonly at: number;
}

const sentAt = ({ at }: SentEntry): number => at;

/**
 * Replicas share the budget in Redis: a sliding log of the minute's calls taken atomically in Lua, the account state
 * announced so all stop at once, a heartbeat each to count them. Without Redis each counts alone on `limit / replicas`
 * (last count, 1 till read): the shares never exceed it; one cut off alone overshoots by its share (UPSTREAM_RESERVE).
 */
export class SharedBudget {
  readonly #redis: SharedRedis;
  readonly #keys: SharedKeys;
  readonly #clock: () => number;
  readonly #log: FastifyBaseLogger;
  readonly #heartbeatMs: number;
  readonly #heartbeat: NodeJS.Timeout;
  readonly #onReady = (): void => this.#writeBack();
  #listener: SharedBudgetListener | undefined;
  #mode: SharedMode = 'redis';
  #replicas = 1;
  #minted = 0;
  /** Calls this replica sent in the last minute, oldest first: written again into the log after an outage. */
  readonly #sent: SentEntry[] = [];
  /** Members taken, not yet sent or given back: each heartbeat rescores them, else the log forgets them in a minute. */
  readonly #held = new Set<string>();
  /** Members a take that timed out may have added: given back once Redis answers again. */
  readonly #orphans: SentEntry[] = [];
  /** The next heartbeat writes #sent into the log again (after a failure, a reconnection, a lost log). */
  #reassert = false;
  #beating: Promise<void> | undefined;
  #beatAgain = false;
  #closed = false;

  constructor({ redis, clock, log, heartbeatMs = DEFAULT_HEARTBEAT_MS }: SharedBudgetOptions) {
    this.#redis = redis;
    this.#clock = clock;
    this.#log = log;
    this.#heartbeatMs = heartbeatMs;
    // A replica that missed the message writes back at its next heartbeat, within a Redis timeout.
    this.#keys = new SharedKeys(redis, heartbeatMs + 2 * redis.timeoutMs);
    redis.command.on('ready', this.#onReady);
    redis.listen(BUDGET_CHANNEL, (message) => this.#heard(message));
    this.#heartbeat = setInterval(() => void this.heartbeat(), heartbeatMs).unref();
    // Not connected yet (at start): this replica counts alone until the connection is ready, which beats at once.
    if (redis.state === 'up') void this.heartbeat();
    else this.#mode = 'replica-share';
  }

  /** The budget that adopts what the other replicas learn; one per shared budget. */
  attach(listener: SharedBudgetListener): void {
    this.#listener = listener;
  }

  get mode(): SharedMode {
    return this.#mode;
  }

  /** Replicas heard from within LIVE_HEARTBEATS heartbeats, this one included, as last seen (1 until seen). */
  get replicas(): number {
    return this.#replicas;
  }

  /** Calls a minute this replica may send alone while Redis is away. */
  share(limitPerMinute: number): number {
    return Math.max(1, Math.floor(limitPerMinute / this.#replicas));
  }

  /** Never waits past REDIS_TIMEOUT_MS; `unavailable` without asking while Redis is away (heartbeats find it again). */
  async take(calls: number, limitPerMinute: number): Promise<SharedTake> {
    if (this.#mode === 'replica-share' || this.#closed) return { outcome: 'unavailable' };
    const now = this.#clock();
    const members = Array.from({ length: calls }, () => this.#mint());
    const reply = await this.#keys.take(now, limitPerMinute, members, this.#replicas).catch((error: unknown) => {
      // A take that timed out may still have run: its entries go back once Redis answers.
      this.#orphan(members, now);
      this.#fallBack(error);
    });
    if (reply === undefined) return { outcome: 'unavailable' };
    this.#adopt(reply.account);
    if (reply.recovery === 'write-back') this.#logLost();
    if (reply.notBefore !== 0) return { outcome: 'wait', until: reply.notBefore };
    if (reply.recovery !== 'none') return { outcome: 'wait', until: now + RECOVERY_POLL_MS };
    for (const member of members) this.#held.add(member);
    return { outcome: 'taken', members };
  }

  /** A call goes out now: its entry (taken, or new on the share) is scored by the send time, as Deskie counts it. */
  sent(member: string | undefined): void {
    if (member !== undefined) this.#held.delete(member);
    const at = this.#clock();
    const entry = { member: member ?? this.#mint(), at };
    this.#sent.push(entry);
    forgetExpired(this.#sent, at, sentAt);
    if (this.#mode === 'redis' && !this.#closed) {
      this.#keys.add(entry.member, at).catch((error: unknown) => this.#fallBack(error));
    }
  }

  /** Taken calls that were never sent leave the log at once (a merge that needed fewer pages, a refused wait). */
  giveBack(members: readonly string[]): void {
    for (const member of members) this.#held.delete(member);
    if (members.length === 0 || this.#closed) return;
    if (this.#mode === 'replica-share') return this.#orphan(members, this.#clock());
    this.#keys.remove(members).catch((error: unknown) => {
      this.#orphan(members, this.#clock());
      this.#fallBack(error);
    });
  }

  /** Merges what Deskie said into the shared account; `urgent` news is also published to the other replicas. */
  report(account: SharedAccount, urgent: boolean): void {
    if (this.#closed) return;
    this.#keys
      .report(account, ACCOUNT_TTL_MS)
      .then(async (merged) => {
        if (urgent) await this.#redis.publish(BUDGET_CHANNEL, JSON.stringify(merged));
      })
      .catch((error: unknown) => this.#fallBack(error));
  }

  /** Liveness and the replica count, and the last minute of calls written back when due. One at a time. */
  heartbeat(): Promise<void> {
    if (this.#closed) return Promise.resolve();
    if (this.#beating !== undefined) {
      this.#beatAgain = true;
      return this.#beating;
    }
    this.#beating = this.#beat().finally(() => {
      this.#beating = undefined;
      if (this.#beatAgain) {
        this.#beatAgain = false;
        void this.heartbeat();
      }
    });
    return this.#beating;
  }

  /** Stops the heartbeat and leaves the replica count at once, so the others' share grows without waiting. */
  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    clearInterval(this.#heartbeat);
    this.#redis.command.off('ready', this.#onReady);
    // Best effort while shutting down: if Redis does not hear it, the entry lapses within LIVE_HEARTBEATS beats.
    this.#keys.leave().catch(() => undefined);
  }

  async #beat(): Promise<void> {
    const now = this.#clock();
    // Cleared as the beat starts: a command that fails from now on sets it again, for the next beat.
    const writesBack = this.#reassert;
    this.#reassert = false;
    const sent: Array<string | number> = [];
    if (writesBack) {
      forgetExpired(this.#sent, now, sentAt);
      for (const { member, at } of this.#sent) sent.push(at, member);
    }
    // Still held: counted from now, as they will be when sent.
    for (const member of this.#held) sent.push(now, member);
    // Liveness is in real time, as its timer runs; the injected clock is the account's minute, which tests move.
    const beat = { wallNow: Date.now(), liveMs: LIVE_HEARTBEATS * this.#heartbeatMs, knownReplicas: this.#replicas, sent, writesBack };
    const reply = await this.#keys.heartbeat(beat).catch((error: unknown) => this.#fallBack(error));
    if (reply === undefined || this.#closed) return;
    this.#replicas = Math.max(1, reply.replicas);
    this.#adopt(reply.account);
    if (reply.recovery === 'write-back') this.#logLost();
    if (this.#mode === 'replica-share') {
      this.#mode = 'redis';
      this.#log.info({ budget: 'redis', replicas: this.#replicas, reasserted: sent.length / 2 }, 'the shared upstream budget is reachable: calls to Deskie are counted in Redis');
      this.#listener?.modeChanged();
    }
    this.#giveBackOrphans(now);
  }

  #writeBack(): void {
    this.#reassert = true;
    void this.heartbeat();
  }

  /** The log was found lost, by this replica or another: this replica writes back, and says so once. */
  #logLost(): void {
    if (!this.#reassert) {
      forgetExpired(this.#sent, this.#clock(), sentAt);
      this.#log.info(
        { budget: 'redis', replicas: this.#replicas, calls: this.#sent.length },
        'the shared log of calls to Deskie was lost in Redis (emptied, evicted or a new Redis): this replica writes its calls of the last minute back, and no call is taken until the replicas have',
      );
    }
    this.#writeBack();
  }

  #orphan(members: readonly string[], at: number): void {
    for (const member of members) this.#orphans.push({ member, at });
  }

  #giveBackOrphans(now: number): void {
    forgetExpired(this.#orphans, now, sentAt);
    this.giveBack(this.#orphans.splice(0).map(({ member }) => member));
  }

  /** A command failed or timed out: counted, and this replica counts alone on its share until a heartbeat succeeds. */
  #fallBack(error: unknown): void {
    this.#redis.failed(error, undefined);
    this.#reassert = true;
    if (this.#mode === 'replica-share' || this.#closed) return;
    this.#mode = 'replica-share';
    this.#log.warn(
      { budget: 'replica-share', replicas: this.#replicas, err: error },
      "the shared upstream budget is unreachable: this replica counts its calls to Deskie alone, within its share of the account's limit",
    );
    this.#listener?.modeChanged();
  }

  /** Another replica announced a 429, a pause or a new limit. */
  #heard(message: string): void {
    if (this.#closed) return;
    const parsed = parseMessage(message);
    // Not JSON, or fields of another format (a rolling upgrade) read as unknown: null or 0, which change nothing.
    if (typeof parsed !== 'object' || parsed === null) return;
    if ((parsed as { writeBack?: unknown }).writeBack === true) return this.#logLost();
    const account = parsed as Partial<Record<keyof SharedAccount, unknown>>;
    this.#adopt(accountOf([account.accountLimit, account.callsLeft, account.pausedUntil, account.circuitOpenUntil]));
  }

  #adopt(account: SharedAccount): void {
    if (!this.#closed) this.#listener?.account(account);
  }

  /** A member of the log no other replica can make: this replica's id and a counter. */
  #mint(): string {
    this.#minted += 1;
    return `${this.#redis.replicaId}:${this.#minted}`;
  }
}
