--[[
  Brings the pool bucket in line with what the provider's rate-limit headers report. Headers may
  only LOWER a level, never raise it: they describe the provider's bucket a moment ago, before
  calls the fleet has already been granted, so a higher `remaining` is old news, not headroom.
  Limits the provider announces are stored as learned limits (`limit:<dim>`), which acquire uses
  for every dimension the config leaves out.

  KEYS[1] pool bucket hash    KEYS[2] stats hash

  For rpm, itpm, otpm, tpm in that order ('' = not given):
  ARGV[1..4]   configured limit
  ARGV[5..8]   observed limit
  ARGV[9..12]  observed remaining
  ARGV[13..16] observed time until full again, ms (used only when remaining is absent)
  ARGV[17..20] how far the true remaining may exceed the reported one (Anthropic rounds token
               counts to the nearest thousand: that rounding is not usage)

  Returns
    { 1, nowUs, lowered... }   SYNCED; `lowered` names each dimension whose level went down
]]
--- @include "includes/bucket-time"

local DIMS = { 'rpm', 'itpm', 'otpm', 'tpm' }
local now, nowUs = redisNow()
local bucket = redis.call('HMGET', KEYS[1], 'ts', 'rpm', 'itpm', 'otpm', 'tpm',
  'limit:rpm', 'limit:itpm', 'limit:otpm', 'limit:tpm')
local elapsed = elapsedSince(bucket[1], now)

local args, lowered = {}, {}
for j = 1, 4 do
  local observedCap = tonumber(ARGV[4 + j])
  if observedCap and tostring(observedCap) ~= bucket[j + 5] then
    args[#args + 1] = 'limit:' .. DIMS[j]
    args[#args + 1] = observedCap
  end
  local cap = tonumber(ARGV[j]) or observedCap or tonumber(bucket[j + 5])
  local remaining = tonumber(ARGV[8 + j])
  if not remaining and cap and ARGV[12 + j] ~= '' then
    local full = observedCap or cap
    remaining = full - tonumber(ARGV[12 + j]) * full / 60000
  end
  if cap and remaining then
    local ceiling = remaining + tonumber(ARGV[16 + j])
    if ceiling < 0 then ceiling = 0 end
    local cur = usedAt(bucket[j + 1], elapsed, cap)
    if cap - cur > ceiling then
      args[#args + 1] = DIMS[j]
      args[#args + 1] = cap - ceiling + elapsed * cap / 60000
      lowered[#lowered + 1] = DIMS[j]
      redis.call('HINCRBY', KEYS[2], 'lowered:' .. DIMS[j], 1)
    end
  end
end

if #args > 0 then
  if not bucket[1] then
    args[#args + 1] = 'ts'
    args[#args + 1] = now
  end
  redis.call('HSET', KEYS[1], unpack(args))
end

local reply = { 1, nowUs }
for _, d in ipairs(lowered) do reply[#reply + 1] = d end
return reply
