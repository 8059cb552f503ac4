import type { SharedRedis } from '../../redis/connection.js';
import type { SharedAccount } from './account.js';
import { BUDGET_WINDOW_MS } from './window.js';

/** The account's four fields as Redis keeps them, or a message carries them. */
type AccountFields = readonly [accountLimit: unknown, callsLeft: unknown, pausedUntil: unknown, circuitOpenUntil: unknown];

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
 * The shared budget's three keys in Redis and every command on them: the
 * log of calls (a sorted set), the account (a hash) and the live replicas (a
 * sorted set). Whatever reads and writes more than one runs as a Lua script,
 * so replicas never interleave; replies are read back as numbers.
 */
export class SharedKeys {
  readonly #redis: SharedRedis;
  readonly #keys: { readonly log: string; readonly account: string; readonly replicas: string };
  readonly #take: (...keysAndArgs: TakeArgs) => Promise<unknown>;
  readonly #report: (...keysAndArgs: ReportArgs) => Promise<unknown>;
  readonly #heartbeat: (...keysAndArgs: HeartbeatArgs) => Promise<unknown>;

  constructor(redis: SharedRedis) {
    this.#redis = redis;
    this.#keys = { log: redis.key('budget:log'), account: redis.key('budget:account'), replicas: redis.key('budget:replicas') };
    this.#take = redis.script<TakeArgs>(2, TAKE_LUA);
    this.#report = redis.script<ReportArgs>(1, REPORT_LUA);
    this.#heartbeat = redis.script<HeartbeatArgs>(3, HEARTBEAT_LUA);
  }

  /** Adds `members` to the log at `now` if they fit under `limit`; `notBefore` is 0 then, else when they could. */
  async take(now: number, limit: number, members: readonly string[]): Promise<{ notBefore: number; account: SharedAccount }> {
    const [notBefore, ...account] = (await this.#take(this.#keys.log, this.#keys.account, now, BUDGET_WINDOW_MS, limit, ...members)) as [number, ...AccountFields];
    return { notBefore: Number(notBefore), account: accountOf(account) };
  }

  /** Scores a call sent in the log, by when it was sent. */
  async add(member: string, at: number): Promise<void> {
    await this.#redis.command.zadd(this.#keys.log, at, member);
  }

  async remove(members: readonly string[]): Promise<void> {
    await this.#redis.command.zrem(this.#keys.log, ...members);
  }

  /** Merges what this replica heard into the account; the account as merged. */
  async report({ accountLimit, callsLeft, pausedUntil, circuitOpenUntil }: SharedAccount, ttlMs: number): Promise<SharedAccount> {
    const merged = await this.#report(this.#keys.account, String(accountLimit ?? ''), String(callsLeft ?? ''), pausedUntil, circuitOpenUntil, ttlMs);
    return accountOf(merged as AccountFields);
  }

  /**
   * Says this replica is alive (`wallNow`, real ms; gone after `liveMs`) and
   * writes `sent` (clock ms, member pairs) into the log again; the live
   * replicas and the account.
   */
  async heartbeat(wallNow: number, liveMs: number, sent: ReadonlyArray<string | number>): Promise<{ replicas: number; account: SharedAccount }> {
    const { replicas, log, account } = this.#keys;
    const reply = await this.#heartbeat(replicas, log, account, this.#redis.replicaId, wallNow, liveMs, BUDGET_WINDOW_MS, ...sent);
    const [live, ...fields] = reply as [number, ...AccountFields];
    return { replicas: Number(live), account: accountOf(fields) };
  }

  /** This replica leaves the count of live replicas. */
  async leave(): Promise<void> {
    await this.#redis.command.zrem(this.#keys.replicas, this.#redis.replicaId);
  }
}

/** The account's four fields as Redis or a message gave them: numbers, or null / 0 for anything else. */
export function accountOf([accountLimit, callsLeft, pausedUntil, circuitOpenUntil]: AccountFields): SharedAccount {
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
