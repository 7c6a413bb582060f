--[[
  Acquires one call's need from every dimension of a pool (and of its tenant) at once, or from
  none: checking and charging in one script is what keeps separate limits from charging some
  dimensions and refusing others.

  Capacity of a dimension = its per-minute limit; it refills continuously at limit/60 per second.
  A lane may draw only while every dimension it draws from stays at or above `reserve * capacity`
  after the charge, so lower lanes leave headroom for higher ones without losing throughput (the
  refill rate, not the burst, sets throughput).

  KEYS[1] pool bucket hash (ts, rpm, itpm, otpm, tpm = used; limit:<dim> = learned limits)
  KEYS[2] tenant bucket hash (ts, rpm, tpm); untouched without tenant limits
  KEYS[3] cooldowns zset (model -> end ms)
  KEYS[4] stats hash
  KEYS[5] reservation key to create

  ARGV[1..4]  configured limit for rpm, itpm, otpm, tpm; '' = use the learned limit, and if none
              is known the dimension does not bind
  ARGV[5] requests    ARGV[6] input tokens    ARGV[7] output tokens  (tpm draws input + output)
  ARGV[8] reserve fraction of the lane (0..1)
  ARGV[9] lane (for counters)
  ARGV[10] reservation TTL ms
  Optional, trailing (each argument costs on the hot path, so callers omit what they do not use):
  ARGV[11] model ('' = no cooldown check)
  ARGV[12] tenant tokens/min ('' = none)   ARGV[13] tenant requests/min ('' = none)

  Returns
    { 1, nowUs }                        GRANTED: the reservation key holds the charges
    { -1, nowUs, waitMs, reason }       WAIT: every dimension (and the model's cooldown) can serve
                                        after waitMs; reason = the binding dimension or 'cooldown'
    { -2, nowUs, dimension, maxDraw }   NEVER_FITS: the need exceeds what this lane may ever draw
                                        from that dimension (capacity minus its reserve)
]]
--- @include "includes/bucket-time"

-- Float slack so that sleeping exactly the returned (rounded-up) wait always succeeds.
local EPS = 1e-6
local DIMS = { 'rpm', 'itpm', 'otpm', 'tpm', 'tenant_rpm', 'tenant_tpm' }

local now, nowUs = redisNow()
local requests, input, output = tonumber(ARGV[5]), tonumber(ARGV[6]), tonumber(ARGV[7])
local reserve = tonumber(ARGV[8])
local model = ARGV[11] or ''
local tenantTpm, tenantRpm = tonumber(ARGV[12]), tonumber(ARGV[13])
local hasTenant = tenantTpm ~= nil or tenantRpm ~= nil
local need = { requests, input, output, input + output, requests, input + output }

-- One read for usage and learned limits: this is the hot path.
local pool = redis.call('HMGET', KEYS[1], 'ts', 'rpm', 'itpm', 'otpm', 'tpm',
  'limit:rpm', 'limit:itpm', 'limit:otpm', 'limit:tpm')
local elapsed = elapsedSince(pool[1], now)
local cap, used = {}, {}
for j = 1, 4 do
  local c = tonumber(ARGV[j]) or tonumber(pool[j + 5])
  if c and c > 0 then cap[j] = c end
  used[j] = usedAt(pool[j + 1], elapsed, cap[j])
end
local tenant
if hasTenant then
  cap[5], cap[6] = tenantRpm, tenantTpm
  tenant = redis.call('HMGET', KEYS[2], 'ts', 'rpm', 'tpm')
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
      redis.call('HINCRBY', KEYS[4], 'never:' .. DIMS[j], 1)
      return { -2, nowUs, DIMS[j], math.floor(c - floor) }
    end
    local short = n + floor - (c - used[j])
    if short > EPS then
      local w = short * 60000 / c
      if w > waitMs then waitMs, reason = w, DIMS[j] end
    end
  end
end

if model ~= '' then
  local ends = redis.call('ZSCORE', KEYS[3], model)
  if ends then
    local w = tonumber(ends) - now
    if w > waitMs then waitMs, reason = w, 'cooldown' end
  end
end

if waitMs > 0 then
  redis.call('HINCRBY', KEYS[4], 'wait:' .. reason, 1)
  return { -1, nowUs, math.ceil(waitMs), reason }
end

-- Charge. A dimension that does not bind is stored as 0 (only if something is stored), so a
-- limit that appears later starts from a full bucket rather than from stale usage.
local POOL_FIELDS = { 'rpm', 'itpm', 'otpm', 'tpm' }
local args = { 'ts', now }
for j = 1, 4 do
  if cap[j] then
    args[#args + 1] = POOL_FIELDS[j]
    args[#args + 1] = used[j] + need[j]
  elseif pool[j + 1] and pool[j + 1] ~= '0' then
    args[#args + 1] = POOL_FIELDS[j]
    args[#args + 1] = 0
  end
end
redis.call('HSET', KEYS[1], unpack(args))

if hasTenant then
  -- Tenants are many: their hash expires once it would be full again.
  local TENANT_FIELDS = { 'rpm', 'tpm' }
  local targs, fullIn = { 'ts', now }, 0
  for j = 5, 6 do
    local u = 0
    if cap[j] then
      u = used[j] + need[j]
      if u * 60000 / cap[j] > fullIn then fullIn = u * 60000 / cap[j] end
    end
    targs[#targs + 1] = TENANT_FIELDS[j - 4]
    targs[#targs + 1] = u
  end
  if fullIn > 0 then
    redis.call('HSET', KEYS[2], unpack(targs))
    redis.call('PEXPIRE', KEYS[2], math.ceil(fullIn) + 1)
  end
end

-- What settle needs to correct the charge: the charged input, output, tokens and tenant tokens,
-- then the capacities they were drawn against (0 = did not bind, so no correction).
local function bound(j) return cap[j] or 0 end
local function charged(j) if cap[j] then return need[j] end return 0 end
redis.call('SET', KEYS[5], string.format('%.17g %.17g %.17g %.17g %.17g %.17g %.17g %.17g',
  charged(2), charged(3), charged(4), charged(6), bound(2), bound(3), bound(4), bound(6)), 'PX', ARGV[10])
redis.call('HINCRBY', KEYS[4], 'grant:' .. ARGV[9], 1)
return { 1, nowUs }
