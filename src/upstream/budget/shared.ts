import type { FastifyBaseLogger } from 'fastify';
import type { SharedRedis } from '../../redis/connection.js';
import { BUDGET_WINDOW_MS } from './budget.js';

/** How often each replica says it is alive, in real ms: the replica count, and so the fallback share, is as fresh as this. */
const DEFAULT_HEARTBEAT_MS = 5_000;
/** A replica not heard from in this many heartbeats is gone (one missed beat is a slow Redis, not a dead replica). */
const LIVE_HEARTBEATS = 3;
/** How long the account's limit and calls left are kept once no replica calls Deskie: a day, so a quiet night forgets nothing. */
const ACCOUNT_TTL_MS = 86_400_000;
/** Channel on which a replica tells the others of a 429, a pause or a new account limit. */
const CHANNEL = 'budget';

/**
 * What Deskie said about the account, as shared by the replicas: its limit and
 * calls left (null until one has heard), and until when (clock ms) calls are
 * paused or the 429 circuit is open (0 when never).
 */
export interface SharedAccount {
  readonly accountLimit: number | null;
  readonly callsLeft: number | null;
  readonly pausedUntil: number;
  readonly circuitOpenUntil: number;
}

/**
 * The answer of the shared log to "may `calls` calls go out now":
 * - taken: entries are in the log under these members, until given back or a minute after they are sent;
 * - wait: not before `until` (clock ms): the minute is full, or the shared pause or circuit holds;
 * - unavailable: Redis did not answer in time; the replica counts alone, on its share.
 */
export type SharedTake =
  | { readonly outcome: 'taken'; readonly members: readonly string[] }
  | { readonly outcome: 'wait'; readonly until: number }
  | { readonly outcome: 'unavailable' };

/** Where the minute's calls are counted: in Redis with the other replicas, or by this replica alone on its share. */
type SharedMode = 'redis' | 'replica-share';

export interface SharedBudgetOptions {
  readonly redis: SharedRedis;
  /** The budget's clock (epoch ms): the shared log is scored on it, never on Redis's TIME, so tests move it by hand. */
  readonly clock: () => number;
  readonly log: FastifyBaseLogger;
  /** Real ms between heartbeats (DEFAULT_HEARTBEAT_MS). */
  readonly heartbeatMs?: number;
}

/** Told by the shared budget of what the other replicas learnt, and of a change between Redis and the fallback share. */
export interface SharedBudgetListener {
  account(account: SharedAccount): void;
  modeChanged(): void;
}

/** A member of the shared log this replica sent, with the clock time it was sent at. */
interface SentEntry {
  readonly member: string;
  readonly at: number;
}

type AccountReply = [unknown, unknown, unknown, unknown];

/** The Lua scripts' keys and arguments (SharedRedis.script). */
type TakeArgs = [log: string, account: string, now: number, windowMs: number, limit: number, ...members: string[]];
type ReportArgs = [account: string, limit: string, left: string, pausedUntil: number, circuitOpenUntil: number, ttlMs: number];
type HeartbeatArgs = [replicas: string, log: string, account: string, replicaId: string, wallNow: number, liveMs: number, windowMs: number, ...sent: Array<string | number>];

const ACCOUNT_FIELDS = "'accountLimit', 'callsLeft', 'pausedUntil', 'circuitOpenUntil'";

/**
 * Takes `#ARGV - 3` calls from the shared sliding log (KEYS[1], a sorted set
 * of members scored by the clock ms they were taken or sent at), atomically:
 * refused while the shared pause or circuit (KEYS[2]) holds, added if the
 * calls fit in the last minute, else answered with when enough of the oldest
 * will have left it. Returns {0 or not-before ms, the account's four fields}.
 */
const TAKE_LUA = `
local now = tonumber(ARGV[1])
local window = tonumber(ARGV[2])
local limit = tonumber(ARGV[3])
local calls = #ARGV - 3
local account = redis.call('HMGET', KEYS[2], ${ACCOUNT_FIELDS})
local closedUntil = math.max(tonumber(account[3]) or 0, tonumber(account[4]) or 0)
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - window)
local used = redis.call('ZCARD', KEYS[1])
local notBefore = 0
if closedUntil > now then
  notBefore = closedUntil
elseif used + calls <= limit then
  for i = 4, #ARGV do redis.call('ZADD', KEYS[1], now, ARGV[i]) end
  redis.call('PEXPIRE', KEYS[1], 2 * window)
else
  local leaving = math.min(used + calls - limit, used) - 1
  local oldest = redis.call('ZRANGE', KEYS[1], leaving, leaving, 'WITHSCORES')
  notBefore = (tonumber(oldest[2]) or now) + window
end
return {notBefore, account[1], account[2], account[3], account[4]}
`;

/**
 * Merges what one replica heard from Deskie into the shared account hash
 * (KEYS[1]): the limit and calls left as last heard, the pause and circuit
 * as the latest end any replica set. Returns the merged four fields.
 */
const REPORT_LUA = `
if ARGV[1] ~= '' then redis.call('HSET', KEYS[1], 'accountLimit', ARGV[1]) end
if ARGV[2] ~= '' then redis.call('HSET', KEYS[1], 'callsLeft', ARGV[2]) end
if tonumber(ARGV[3]) > (tonumber(redis.call('HGET', KEYS[1], 'pausedUntil')) or 0) then redis.call('HSET', KEYS[1], 'pausedUntil', ARGV[3]) end
if tonumber(ARGV[4]) > (tonumber(redis.call('HGET', KEYS[1], 'circuitOpenUntil')) or 0) then redis.call('HSET', KEYS[1], 'circuitOpenUntil', ARGV[4]) end
redis.call('PEXPIRE', KEYS[1], ARGV[5])
return redis.call('HMGET', KEYS[1], ${ACCOUNT_FIELDS})
`;

/**
 * One replica's heartbeat: its id scored by real ms in KEYS[1], replicas not
 * heard from within the live span forgotten; then the calls it sent in the
 * last minute (score, member pairs from ARGV[5]) written again into the log
 * KEYS[2] (a Redis restarted empty, or an outage, lost them). Returns
 * {live replicas, the account's four fields}.
 */
const HEARTBEAT_LUA = `
local now = tonumber(ARGV[2])
local live = tonumber(ARGV[3])
redis.call('ZADD', KEYS[1], now, ARGV[1])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - live)
redis.call('PEXPIRE', KEYS[1], live)
if #ARGV > 4 then
  for i = 5, #ARGV, 2 do redis.call('ZADD', KEYS[2], ARGV[i], ARGV[i + 1]) end
  redis.call('PEXPIRE', KEYS[2], 2 * tonumber(ARGV[4]))
end
local account = redis.call('HMGET', KEYS[3], ${ACCOUNT_FIELDS})
return {redis.call('ZCARD', KEYS[1]), account[1], account[2], account[3], account[4]}
`;

/**
 * The upstream budget's part that the replicas behind one load balancer
 * share in Redis, since Deskie's limit belongs to the account, not to a
 * process:
 * - a sliding log of the calls sent in the last minute (a sorted set), taken
 *   atomically by a Lua script, so N replicas together stay under the limit;
 * - the account's limit, calls left, pause and 429 circuit (a hash), merged
 *   by a script and announced on a channel so every replica stops at once;
 * - a heartbeat per replica, so each knows how many share the account.
 *
 * When Redis fails or is slower than REDIS_TIMEOUT_MS, the replica counts
 * alone and sends at most `max(1, floor(limit / replicas))` a minute, with
 * `replicas` the live count last seen: every replica cut off from Redis does
 * the same, so together they stay under the limit. A replica cut off alone
 * adds its share to what the others count in Redis; the account's reserve
 * (UPSTREAM_RESERVE) is there for such an overshoot. The count is kept
 * through an outage (a replica cannot tell a dead peer from one cut off too),
 * so the share never grows while Redis is away.
 *
 * Until a heartbeat has been read, the count is 1: a replica that starts
 * while Redis is unreachable may spend the whole limit. Guessing more would
 * need a number no setting gives, and a guess too high starves a deployment
 * of one. What bounds the overshoot is Deskie itself: its `api_calls_left`
 * is the account's, so each replica pauses at the reserve, and a 429 opens
 * the circuit of the replica that got it.
 *
 * Heartbeats go back to Redis while it is away; the first that succeeds (at
 * once on reconnecting) writes this replica's calls of the last minute into
 * the log again and the shared log counts once more.
 */
export class SharedBudget {
  readonly #redis: SharedRedis;
  readonly #scripts: {
    readonly take: (...keysAndArgs: TakeArgs) => Promise<unknown>;
    readonly report: (...keysAndArgs: ReportArgs) => Promise<unknown>;
    readonly heartbeat: (...keysAndArgs: HeartbeatArgs) => Promise<unknown>;
  };
  readonly #clock: () => number;
  readonly #log: FastifyBaseLogger;
  readonly #heartbeatMs: number;
  readonly #keys: { readonly log: string; readonly account: string; readonly replicas: string };
  readonly #heartbeat: NodeJS.Timeout;
  readonly #onReady = (): void => {
    this.#reassert = true;
    void this.heartbeat();
  };
  #listener: SharedBudgetListener | undefined;
  #mode: SharedMode = 'redis';
  #replicas = 1;
  #minted = 0;
  /** Calls this replica sent in the last minute, oldest first: written again into the log after an outage. */
  readonly #sent: SentEntry[] = [];
  /**
   * Members taken and not yet sent or given back (a `page=all` merge's later
   * pages): the log forgets an entry a minute after its score, so each
   * heartbeat scores these anew while they are held.
   */
  readonly #held = new Set<string>();
  /** Members a take that timed out may have added: given back once Redis answers again. */
  readonly #orphans: SentEntry[] = [];
  /** Whether the next heartbeat writes #sent into the log again (after a failure or a reconnection). */
  #reassert = false;
  /** Commands failed since start: a heartbeat clears #reassert only if none failed while it ran. */
  #failures = 0;
  #beating: Promise<void> | undefined;
  #beatAgain = false;
  #closed = false;

  constructor({ redis, clock, log, heartbeatMs = DEFAULT_HEARTBEAT_MS }: SharedBudgetOptions) {
    this.#redis = redis;
    this.#clock = clock;
    this.#log = log;
    this.#heartbeatMs = heartbeatMs;
    this.#keys = { log: redis.key('budget:log'), account: redis.key('budget:account'), replicas: redis.key('budget:replicas') };
    this.#scripts = {
      take: redis.script<TakeArgs>(2, TAKE_LUA),
      report: redis.script<ReportArgs>(1, REPORT_LUA),
      heartbeat: redis.script<HeartbeatArgs>(3, HEARTBEAT_LUA),
    };
    redis.command.on('ready', this.#onReady);
    redis.listen(CHANNEL, (message) => this.#heard(message));
    this.#heartbeat = setInterval(() => void this.heartbeat(), heartbeatMs);
    this.#heartbeat.unref();
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

  /**
   * Asks the shared log for `calls` calls under `limitPerMinute`. Never
   * waits longer than REDIS_TIMEOUT_MS; while Redis is away it answers
   * `unavailable` without asking (heartbeats find it again).
   */
  async take(calls: number, limitPerMinute: number): Promise<SharedTake> {
    if (this.#mode === 'replica-share' || this.#closed) return { outcome: 'unavailable' };
    const now = this.#clock();
    const members = Array.from({ length: calls }, () => this.#mint());
    let reply: unknown;
    try {
      reply = await this.#scripts.take(this.#keys.log, this.#keys.account, now, BUDGET_WINDOW_MS, limitPerMinute, ...members);
    } catch (error) {
      // A take that timed out may still have run: its entries go back once Redis answers.
      for (const member of members) this.#orphans.push({ member, at: now });
      this.#fallBack(error);
      return { outcome: 'unavailable' };
    }
    const [notBefore, ...account] = reply as [number, ...AccountReply];
    this.#adopt(account);
    if (notBefore !== 0) return { outcome: 'wait', until: Number(notBefore) };
    for (const member of members) this.#held.add(member);
    return { outcome: 'taken', members };
  }

  /**
   * A call is being sent now: its entry (a taken member, or a new one for a
   * call granted on the share) is scored by the time it is sent, for the
   * account counts the call from then. A merge's later pages go out seconds
   * after they were taken.
   */
  sent(member: string | undefined): void {
    if (member !== undefined) this.#held.delete(member);
    const at = this.#clock();
    const entry = { member: member ?? this.#mint(), at };
    this.#sent.push(entry);
    forgetOlderThan(this.#sent, at - BUDGET_WINDOW_MS);
    if (this.#mode === 'redis' && !this.#closed) {
      this.#redis.command.zadd(this.#keys.log, at, entry.member).catch((error: unknown) => this.#fallBack(error));
    }
  }

  /** Taken calls that were never sent leave the log at once (a merge that needed fewer pages, a refused wait). */
  giveBack(members: readonly string[]): void {
    for (const member of members) this.#held.delete(member);
    if (members.length === 0 || this.#closed) return;
    if (this.#mode === 'replica-share') {
      const at = this.#clock();
      for (const member of members) this.#orphans.push({ member, at });
      return;
    }
    this.#redis.command.zrem(this.#keys.log, ...members).catch((error: unknown) => {
      const at = this.#clock();
      for (const member of members) this.#orphans.push({ member, at });
      this.#fallBack(error);
    });
  }

  /**
   * What this replica heard from Deskie, merged into the shared account.
   * `urgent` (a 429, a pause, a new limit) also tells every replica at once;
   * otherwise they read it at their next take or heartbeat.
   */
  report(account: SharedAccount, urgent: boolean): void {
    if (this.#closed) return;
    const { accountLimit, callsLeft, pausedUntil, circuitOpenUntil } = account;
    this.#scripts
      .report(this.#keys.account, String(accountLimit ?? ''), String(callsLeft ?? ''), pausedUntil, circuitOpenUntil, ACCOUNT_TTL_MS)
      .then(async (merged) => {
        if (urgent) await this.#redis.publish(CHANNEL, JSON.stringify(accountOf(merged as AccountReply)));
      })
      .catch((error: unknown) => this.#fallBack(error));
  }

  /**
   * Says this replica is alive and reads how many are; after a failure or a
   * reconnection, also writes its last minute of calls into the log again.
   * The timer calls it every `heartbeatMs`; one at a time.
   */
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

  /** Stops the heartbeat and leaves the replica count at once (the others' share grows without waiting for it to lapse). */
  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    clearInterval(this.#heartbeat);
    this.#redis.command.off('ready', this.#onReady);
    // Best effort while shutting down: if Redis does not hear it, the entry lapses within LIVE_HEARTBEATS beats.
    this.#redis.command.zrem(this.#keys.replicas, this.#redis.replicaId).catch(() => undefined);
  }

  async #beat(): Promise<void> {
    const now = this.#clock();
    const failures = this.#failures;
    const sent: Array<string | number> = [];
    if (this.#reassert) {
      forgetOlderThan(this.#sent, now - BUDGET_WINDOW_MS);
      for (const { member, at } of this.#sent) sent.push(at, member);
    }
    // Still held: counted from now, as they will be when sent.
    for (const member of this.#held) sent.push(now, member);
    // Liveness is measured in real time, as the timer that writes it runs: the injected clock is the account's minute, which tests move by hand.
    const liveMs = LIVE_HEARTBEATS * this.#heartbeatMs;
    let reply: unknown;
    try {
      reply = await this.#scripts.heartbeat(
        this.#keys.replicas,
        this.#keys.log,
        this.#keys.account,
        this.#redis.replicaId,
        Date.now(),
        liveMs,
        BUDGET_WINDOW_MS,
        ...sent,
      );
    } catch (error) {
      this.#fallBack(error);
      return;
    }
    if (this.#closed) return;
    const [replicas, ...account] = reply as [number, ...AccountReply];
    this.#replicas = Math.max(1, Number(replicas));
    // A command that failed while this beat was under way may have lost an entry: the next beat writes them again.
    if (this.#failures === failures) this.#reassert = false;
    this.#adopt(account);
    if (this.#mode === 'replica-share') {
      this.#mode = 'redis';
      this.#log.info({ budget: 'redis', replicas: this.#replicas, reasserted: sent.length / 2 }, 'the shared upstream budget is reachable: calls to Deskie are counted in Redis');
      this.#listener?.modeChanged();
    }
    this.#giveBackOrphans(now);
  }

  #giveBackOrphans(now: number): void {
    forgetOlderThan(this.#orphans, now - BUDGET_WINDOW_MS);
    const members = this.#orphans.splice(0).map(({ member }) => member);
    this.giveBack(members);
  }

  /** A command failed or timed out: counted, and this replica counts alone on its share until a heartbeat succeeds. */
  #fallBack(error: unknown): void {
    this.#redis.failed(error, undefined);
    this.#failures += 1;
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
    let parsed: unknown;
    try {
      parsed = JSON.parse(message);
    } catch {
      return;
    }
    // Fields of another format (a rolling upgrade) read as unknown: null or 0, which change nothing.
    if (typeof parsed !== 'object' || parsed === null) return;
    const account = parsed as Partial<Record<keyof SharedAccount, unknown>>;
    this.#adopt([account.accountLimit, account.callsLeft, account.pausedUntil, account.circuitOpenUntil]);
  }

  #adopt(reply: AccountReply): void {
    if (!this.#closed) this.#listener?.account(accountOf(reply));
  }

  /** A member of the log no other replica can make: this replica's id and a counter. */
  #mint(): string {
    this.#minted += 1;
    return `${this.#redis.replicaId}:${this.#minted}`;
  }
}

/** The account's four fields as Redis or a message gave them: numbers, or null / 0 for anything else. */
function accountOf([accountLimit, callsLeft, pausedUntil, circuitOpenUntil]: AccountReply): SharedAccount {
  return {
    accountLimit: wholeOrNull(accountLimit),
    callsLeft: wholeOrNull(callsLeft),
    pausedUntil: wholeOrNull(pausedUntil) ?? 0,
    circuitOpenUntil: wholeOrNull(circuitOpenUntil) ?? 0,
  };
}

function wholeOrNull(value: unknown): number | null {
  const number = typeof value === 'string' && value !== '' ? Number(value) : value;
  return typeof number === 'number' && Number.isSafeInteger(number) && number >= 0 ? number : null;
}

/** Drops the entries at or before `cutoff` from a log kept oldest first. */
function forgetOlderThan(entries: SentEntry[], cutoff: number): void {
  let expired = 0;
  while (expired < entries.length && (entries[expired] as SentEntry).at <= cutoff) expired += 1;
  if (expired > 0) entries.splice(0, expired);
}
