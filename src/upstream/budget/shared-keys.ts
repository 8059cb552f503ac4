import type { SharedRedis } from '../../redis/connection.js';
import type { SharedAccount } from './account.js';
import { BUDGET_WINDOW_MS } from './window.js';

/** Channel on which a replica tells the others of a 429, a pause or a new account limit, and a lost log asks them to write back. */
export const BUDGET_CHANNEL = 'budget';
const WRITE_BACK_MESSAGE = '{"writeBack":true}';

/** The account's four fields as Redis keeps them, or a message carries them. */
type AccountFields = readonly [accountLimit: unknown, callsLeft: unknown, pausedUntil: unknown, circuitOpenUntil: unknown];

/** A lost log's write-back as one replica sees it: none (whole), awaiting-others (this replica's calls are back), write-back (not yet). */
export type LogRecovery = 'none' | 'awaiting-others' | 'write-back';
const RECOVERIES: readonly LogRecovery[] = ['none', 'awaiting-others', 'write-back'];

/** The Lua scripts' keys and arguments (SharedRedis.script). */
type RecoveryArgs = [replicaId: string, knownReplicas: number, recoveryMs: number, channel: string];
type TakeArgs = [log: string, account: string, recovery: string, replicas: string, ...RecoveryArgs, now: number, windowMs: number, limit: number, ...members: string[]];
type ReportArgs = [account: string, limit: string, left: string, pausedUntil: number, circuitOpenUntil: number, ttlMs: number];
type HeartbeatArgs = [log: string, account: string, recovery: string, replicas: string, ...RecoveryArgs, wallNow: number, liveMs: number, writesBack: 0 | 1, ...sent: Array<string | number>];

const ACCOUNT_FIELDS = "'accountLimit', 'callsLeft', 'pausedUntil', 'circuitOpenUntil'";
/** A member of the log no replica mints, scored +inf so the minute never drops it: a log without it was lost. */
const LOG_MARK = 'mark';
/** Beside the mark while a lost log is written back, with the end of the wait in Redis's ms: `recovering:<ms>`. */
const RECOVERING = 'recovering:';

// For take and heartbeat (KEYS, ARGV[1..4]: TakeArgs). A log without its mark was lost (FLUSHALL, eviction, new Redis):
// each replica writes its last minute back; no call goes till those expected have, or recoveryMs passes (if one died).
// Who has written back is a hash of its own, which an allkeys-lru Redis may evict alone: the log's recovering member
// then starts the count again for the time left, so a lost hash never reads as a whole log.
const RECOVERY_LUA = `
local function redisMs()
  local time = redis.call('TIME')
  return tonumber(time[1]) * 1000 + math.floor(tonumber(time[2]) / 1000)
end
local function expectRecovery(ms)
  redis.call('DEL', KEYS[3])
  redis.call('HSET', KEYS[3], 'expected', math.max(tonumber(ARGV[2]), redis.call('ZCARD', KEYS[4])))
  redis.call('PEXPIRE', KEYS[3], ms)
  redis.call('PUBLISH', ARGV[4], '${WRITE_BACK_MESSAGE}')
end
local function recoveringMember()
  for _, member in ipairs(redis.call('ZRANGEBYSCORE', KEYS[1], '+inf', '+inf')) do
    if string.sub(member, 1, ${RECOVERING.length}) == '${RECOVERING}' then return member end
  end
end
local function recoverIfLost()
  if not redis.call('ZSCORE', KEYS[1], '${LOG_MARK}') then
    redis.call('ZADD', KEYS[1], '+inf', '${LOG_MARK}', '+inf', '${RECOVERING}' .. (redisMs() + tonumber(ARGV[3])))
    redis.call('PERSIST', KEYS[1])
    expectRecovery(ARGV[3])
    return
  end
  local recovering = recoveringMember()
  if recovering == nil or redis.call('EXISTS', KEYS[3]) == 1 then return end
  local left = tonumber(string.sub(recovering, ${RECOVERING.length + 1})) - redisMs()
  if left > 0 then expectRecovery(left) else redis.call('ZREM', KEYS[1], recovering) end
end
-- 1: none (and the hash goes once every replica expected wrote back), 2: awaiting others, 3: write back.
local function recoveryState()
  local expected = tonumber(redis.call('HGET', KEYS[3], 'expected'))
  if expected == nil then return 1 end
  if redis.call('HLEN', KEYS[3]) - 1 >= expected then
    redis.call('DEL', KEYS[3])
    local recovering = recoveringMember()
    if recovering then redis.call('ZREM', KEYS[1], recovering) end
    return 1
  end
  if redis.call('HEXISTS', KEYS[3], ARGV[1]) == 1 then return 2 end
  return 3
end
`;

/** Takes `#ARGV - 7` calls from the log unless paused, circuit open or recovering; if they don't fit, says when. */
const TAKE_LUA = `${RECOVERY_LUA}
local now = tonumber(ARGV[5])
local window = tonumber(ARGV[6])
local limit = tonumber(ARGV[7])
local calls = #ARGV - 7
local account = redis.call('HMGET', KEYS[2], ${ACCOUNT_FIELDS})
local closedUntil = math.max(tonumber(account[3]) or 0, tonumber(account[4]) or 0)
recoverIfLost()
local recovery = recoveryState()
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - window)
local used = redis.call('ZCOUNT', KEYS[1], '-inf', '(+inf')
local notBefore = 0
if closedUntil > now then
  notBefore = closedUntil
elseif recovery == 1 then
  if used + calls <= limit then
    for i = 8, #ARGV do redis.call('ZADD', KEYS[1], now, ARGV[i]) end
  elseif used == 0 then
    notBefore = now + window
  else
    local leaving = math.min(used + calls - limit, used) - 1
    local oldest = redis.call('ZRANGE', KEYS[1], leaving, leaving, 'WITHSCORES')
    notBefore = (tonumber(oldest[2]) or now) + window
  end
end
return {notBefore, recovery, account[1], account[2], account[3], account[4]}
`;

/** Merges a replica's news into the account hash (KEYS[1]): limit and calls left as last heard, pause and circuit the latest end. */
const REPORT_LUA = `
if ARGV[1] ~= '' then redis.call('HSET', KEYS[1], 'accountLimit', ARGV[1]) end
if ARGV[2] ~= '' then redis.call('HSET', KEYS[1], 'callsLeft', ARGV[2]) end
if tonumber(ARGV[3]) > (tonumber(redis.call('HGET', KEYS[1], 'pausedUntil')) or 0) then redis.call('HSET', KEYS[1], 'pausedUntil', ARGV[3]) end
if tonumber(ARGV[4]) > (tonumber(redis.call('HGET', KEYS[1], 'circuitOpenUntil')) or 0) then redis.call('HSET', KEYS[1], 'circuitOpenUntil', ARGV[4]) end
redis.call('PEXPIRE', KEYS[1], ARGV[5])
return redis.call('HMGET', KEYS[1], ${ACCOUNT_FIELDS})
`;

/** Marks the replica live (real ms), logs `sent` (score, member); writesBack = 1 (all its calls) counts it as back. */
const HEARTBEAT_LUA = `${RECOVERY_LUA}
local now = tonumber(ARGV[5])
local live = tonumber(ARGV[6])
redis.call('ZADD', KEYS[4], now, ARGV[1])
redis.call('ZREMRANGEBYSCORE', KEYS[4], '-inf', now - live)
redis.call('PEXPIRE', KEYS[4], live)
recoverIfLost()
for i = 8, #ARGV, 2 do redis.call('ZADD', KEYS[1], ARGV[i], ARGV[i + 1]) end
if ARGV[7] == '1' and redis.call('EXISTS', KEYS[3]) == 1 then
  redis.call('HSET', KEYS[3], ARGV[1], 1)
  if tonumber(ARGV[2]) > (tonumber(redis.call('HGET', KEYS[3], 'expected')) or 0) then redis.call('HSET', KEYS[3], 'expected', ARGV[2]) end
end
local account = redis.call('HMGET', KEYS[2], ${ACCOUNT_FIELDS})
return {redis.call('ZCARD', KEYS[4]), recoveryState(), account[1], account[2], account[3], account[4]}
`;

export interface HeartbeatBeat {
  /** Real ms: the replica is gone `liveMs` after its last beat. */
  readonly wallNow: number;
  readonly liveMs: number;
  /** Live replicas this one last saw: a log it finds lost waits for at least as many to write back. */
  readonly knownReplicas: number;
  /** Clock ms, member pairs written into the log. */
  readonly sent: ReadonlyArray<string | number>;
  /** Whether `sent` holds all of this replica's calls of the last minute. */
  readonly writesBack: boolean;
}

/** The shared budget's Redis keys and commands; whatever touches more than one key is a Lua script, so replicas never interleave. */
export class SharedKeys {
  readonly #redis: SharedRedis;
  readonly #keys: readonly [log: string, account: string, recovery: string, replicas: string];
  readonly #recoveryMs: number;
  readonly #take: (...keysAndArgs: TakeArgs) => Promise<unknown>;
  readonly #report: (...keysAndArgs: ReportArgs) => Promise<unknown>;
  readonly #heartbeat: (...keysAndArgs: HeartbeatArgs) => Promise<unknown>;

  /** `recoveryMs`: real ms a lost log waits at most for the replicas to write back. */
  constructor(redis: SharedRedis, recoveryMs: number) {
    this.#redis = redis;
    this.#recoveryMs = recoveryMs;
    this.#keys = [redis.key('budget:log'), redis.key('budget:account'), redis.key('budget:recovery'), redis.key('budget:replicas')];
    this.#take = redis.script<TakeArgs>(4, TAKE_LUA);
    this.#report = redis.script<ReportArgs>(1, REPORT_LUA);
    this.#heartbeat = redis.script<HeartbeatArgs>(4, HEARTBEAT_LUA);
  }

  async take(now: number, limit: number, members: readonly string[], knownReplicas: number): Promise<{ notBefore: number; recovery: LogRecovery; account: SharedAccount }> {
    const reply = await this.#take(...this.#keys, ...this.#recoveryArgs(knownReplicas), now, BUDGET_WINDOW_MS, limit, ...members);
    const [notBefore, recovery, ...account] = reply as [number, number, ...AccountFields];
    return { notBefore: Number(notBefore), recovery: recoveryOf(recovery), account: accountOf(account) };
  }

  /** Scores a call sent in the log, by when it was sent. */
  async add(member: string, at: number): Promise<void> {
    await this.#redis.command.zadd(this.#keys[0], at, member);
  }

  async remove(members: readonly string[]): Promise<void> {
    await this.#redis.command.zrem(this.#keys[0], ...members);
  }

  async report({ accountLimit, callsLeft, pausedUntil, circuitOpenUntil }: SharedAccount, ttlMs: number): Promise<SharedAccount> {
    const merged = await this.#report(this.#keys[1], String(accountLimit ?? ''), String(callsLeft ?? ''), pausedUntil, circuitOpenUntil, ttlMs);
    return accountOf(merged as AccountFields);
  }

  async heartbeat({ wallNow, liveMs, knownReplicas, sent, writesBack }: HeartbeatBeat): Promise<{ replicas: number; recovery: LogRecovery; account: SharedAccount }> {
    const reply = await this.#heartbeat(...this.#keys, ...this.#recoveryArgs(knownReplicas), wallNow, liveMs, writesBack ? 1 : 0, ...sent);
    const [live, recovery, ...fields] = reply as [number, number, ...AccountFields];
    return { replicas: Number(live), recovery: recoveryOf(recovery), account: accountOf(fields) };
  }

  async leave(): Promise<void> {
    await this.#redis.command.zrem(this.#keys[3], this.#redis.replicaId);
  }

  #recoveryArgs(knownReplicas: number): RecoveryArgs {
    return [this.#redis.replicaId, knownReplicas, this.#recoveryMs, this.#redis.key(BUDGET_CHANNEL)];
  }
}

/** Anything but the scripts' 1, 2 or 3 reads as none. */
function recoveryOf(state: unknown): LogRecovery {
  return RECOVERIES[Number(state) - 1] ?? 'none';
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
