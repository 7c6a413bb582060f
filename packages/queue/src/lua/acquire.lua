--[[
  One provider call's whole cost to the bucket in one script: applies what the calling worker
  learned since its last call to this pool (up to four settles and the latest rate-limit
  headers), then acquires the next call's need from every dimension of the pool (and of its
  tenant) at once, or from none. Settles and headers go first, so a worker's own refunds and
  charges are never behind its own grants. Without an acquire part it only applies them (the
  idle flush and `settle(..., { now: true })`).

  Checking and charging in one script is what keeps separate limits from charging some
  dimensions and refusing others. Capacity of a dimension = its per-minute limit; it refills
  continuously at limit/60 per second. A lane may draw only while every dimension it draws from
  stays at or above `reserve * capacity` after the charge, so lower lanes leave headroom for
  higher ones without losing throughput (the refill rate, not the burst, sets throughput).

  KEYS[1] pool bucket hash (ts, rpm, itpm, otpm, tpm = used; limit:<dim> = learned limits)
  KEYS[2] cooldowns zset (model -> end ms)
  KEYS[3] stats hash
  KEYS[4..] the tenant bucket of each carried settle with a tenant correction, in order; then,
          last, the tenant bucket of the acquire when it has tenant limits
  The key count varies per call (no padding: each key costs on the hot path); every key names the
  pool's slot.

  ARGV[1..4]  configured limit for rpm, itpm, otpm, tpm; '' = use the learned limit, and if none
              is known the dimension does not bind
  ARGV[5]     the carried settles, packed (see includes/carried-settle); '' = none
  ARGV[6]     '1' when rate-limit headers follow
  ARGV[7..]   with headers, 16 values (see includes/carried-sync)
  then the acquire, absent for a flush (each argument costs on the hot path, so callers omit the
  optional trailing ones they do not use):
    requests, input tokens, output tokens (tpm draws input + output), reserve fraction of the
    lane (0..1), lane (for counters); optionally model ('' = no cooldown check); optionally after
    it tenant tokens/min, tenant requests/min ('' = none)

  Returns { code, nowUs, a, b, c, lowered... }
    code  1 GRANTED: a, b, c = the capacities input, output and tokens were charged against, as
            given or learned (0 = the dimension did not bind); the client keeps them in the
            reservation and sends them back with its settle
    code -1 WAIT: every dimension (and the model's cooldown) can serve after a = waitMs;
            b = the binding dimension or 'cooldown'
    code -2 NEVER_FITS: the need exceeds what this lane may ever draw from dimension a
            (capacity minus its reserve); b = that most
    code  0 APPLIED: no acquire part was given
    lowered: the dimensions the headers lowered
]]
--- @include "includes/bucket-time"
--- @include "includes/carried-settle"
--- @include "includes/carried-sync"

-- Float slack so that sleeping exactly the returned (rounded-up) wait always succeeds.
local EPS = 1e-6

local now, nowUs = redisNow()
local at = 7
local hasSync = ARGV[6] == '1'

-- One read for usage and learned limits: this is the hot path.
local pool = redis.call('HMGET', KEYS[1], 'ts', 'rpm', 'itpm', 'otpm', 'tpm',
  'limit:rpm', 'limit:itpm', 'limit:otpm', 'limit:tpm')
local hadTs = pool[1]
local elapsed = elapsedSince(pool[1], now)
local reply = { 0, nowUs, 0, 0, 0 }
local changed = false
if ARGV[5] ~= '' then changed = settleCarried(pool, elapsed, now, ARGV[5], 4) end
local learned = false
if hasSync then
  local lowered
  lowered, learned = syncCarried(pool, elapsed, at, KEYS[3], reply)
  changed = changed or lowered
  at = at + 16
end

local POOL_FIELDS = { 'rpm', 'itpm', 'otpm', 'tpm', 'limit:rpm', 'limit:itpm', 'limit:otpm', 'limit:tpm' }

local function writeFields(from, to, extra)
  local args = extra or {}
  for j = from, to do
    if pool[j] then
      args[#args + 1] = POOL_FIELDS[j - 1]
      args[#args + 1] = pool[j]
    end
  end
  if #args > 0 then redis.call('HSET', KEYS[1], unpack(args)) end
end

local function writeLearned() writeFields(6, 9) end

-- Writes what the settles and headers changed, at the hash's own `ts`, so dimensions this call
-- has no capacity for keep their own refill.
local function writeCorrections()
  if changed then writeFields(2, 5, not hadTs and { 'ts', now } or nil) end
  if learned then writeLearned() end
end

if not ARGV[at] then
  writeCorrections()
  return reply
end

local DIMS = { 'rpm', 'itpm', 'otpm', 'tpm', 'tenant_rpm', 'tenant_tpm' }
local requests, input, output = tonumber(ARGV[at]), tonumber(ARGV[at + 1]), tonumber(ARGV[at + 2])
local reserve = tonumber(ARGV[at + 3])
local lane = ARGV[at + 4]
local model = ARGV[at + 5] or ''
local tenantTpm, tenantRpm = tonumber(ARGV[at + 6]), tonumber(ARGV[at + 7])
local hasTenant = tenantTpm ~= nil or tenantRpm ~= nil
local need = { requests, input, output, input + output, requests, input + output }

local cap, used, capRaw = {}, {}, {}
for j = 1, 4 do
  local raw = ARGV[j]
  if raw == '' then raw = pool[j + 5] end
  local c = tonumber(raw)
  if c and c > 0 then cap[j], capRaw[j] = c, raw end
  used[j] = usedAt(pool[j + 1], elapsed, cap[j])
end
if hasTenant then
  cap[5], cap[6] = tenantRpm, tenantTpm
  local tenant = redis.call('HMGET', KEYS[#KEYS], 'ts', 'rpm', 'tpm')
  local te = elapsedSince(tenant[1], now)
  used[5] = usedAt(tenant[2], te, cap[5])
  used[6] = usedAt(tenant[3], te, cap[6])
end

local waitMs, reason = 0, nil
for j = 1, 6 do
  local c, n = cap[j], need[j]
  if c and n > 0 then
    local floor = reserve * c
    if n > c - floor + EPS then
      writeCorrections()
      redis.call('HINCRBY', KEYS[3], 'never:' .. DIMS[j], 1)
      reply[1], reply[3], reply[4] = -2, DIMS[j], math.floor(c - floor)
      return reply
    end
    local short = n + floor - (c - used[j])
    if short > EPS then
      local w = short * 60000 / c
      if w > waitMs then waitMs, reason = w, DIMS[j] end
    end
  end
end

if model ~= '' then
  local ends = redis.call('ZSCORE', KEYS[2], model)
  if ends then
    local w = tonumber(ends) - now
    if w > waitMs then waitMs, reason = w, 'cooldown' end
  end
end

if waitMs > 0 then
  writeCorrections()
  redis.call('HINCRBY', KEYS[3], 'wait:' .. reason, 1)
  reply[1], reply[3], reply[4] = -1, math.ceil(waitMs), reason
  return reply
end

-- Charge, moving `ts` to now. A dimension that does not bind is stored as 0, so a limit that
-- appears later starts from a full bucket rather than from stale usage. Learned limits the
-- headers changed ride along.
local function charged(j, n)
  if cap[j] then return used[j] + n end
  return 0
end
redis.call('HSET', KEYS[1], 'ts', now, 'rpm', charged(1, requests), 'itpm', charged(2, input),
  'otpm', charged(3, output), 'tpm', charged(4, input + output))
if learned then writeLearned() end

if hasTenant then
  -- Tenants are many: their hash expires once it would be full again.
  local targs, fullIn = { 'ts', now }, 0
  for j = 5, 6 do
    local u = 0
    if cap[j] then
      u = used[j] + need[j]
      if u * 60000 / cap[j] > fullIn then fullIn = u * 60000 / cap[j] end
    end
    targs[#targs + 1] = DIMS[j] == 'tenant_rpm' and 'rpm' or 'tpm'
    targs[#targs + 1] = u
  end
  if fullIn > 0 then
    redis.call('HSET', KEYS[#KEYS], unpack(targs))
    redis.call('PEXPIRE', KEYS[#KEYS], math.ceil(fullIn) + 1)
  end
end

redis.call('HINCRBY', KEYS[3], 'grant:' .. lane, 1)
-- What a settle needs to correct the charge, returned as given or stored so the client holds the
-- very capacity this script used: no reservation key to write now and read back at settle time.
reply[1], reply[3], reply[4], reply[5] = 1, capRaw[2] or 0, capRaw[3] or 0, capRaw[4] or 0
return reply
