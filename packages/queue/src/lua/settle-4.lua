--[[
  Replaces a reservation's estimates with the usage the provider reported: refunds what was not
  used (unused max_tokens, an input overestimate) and charges an underestimate, in the pool and
  in the tenant bucket. A reservation that already expired is gone and so is the chance to
  correct it: its charge stays, which errs on the safe side. GETDEL makes a repeated settle (a
  command resent after a reconnect) a no-op instead of a second refund.

  KEYS[1] reservation key       KEYS[2] pool bucket hash
  KEYS[3] tenant bucket hash    KEYS[4] stats hash

  ARGV[1] input tokens that count toward input tokens/min (Anthropic: input + cache creation)
  ARGV[2] output tokens

  Returns
    { 1, nowUs, dInput, dOutput, dTokens, dTenantTokens }   SETTLED: the corrections charged
                                                            (negative = refunded; 0 where the
                                                            dimension did not bind)
    { 0, nowUs }                                            EXPIRED: no such reservation
                                                            (expired, or settled already)
]]
--- @include "includes/bucket-time"

local now, nowUs = redisNow()
local raw = redis.call('GETDEL', KEYS[1])
if not raw then
  redis.call('HINCRBY', KEYS[4], 'settle:expired', 1)
  return { 0, nowUs }
end

-- charged input, output, tokens, tenant tokens; then the capacities they were charged against
local r = { string.match(raw, '^(%S+) (%S+) (%S+) (%S+) (%S+) (%S+) (%S+) (%S+)$') }
for j = 1, 8 do r[j] = tonumber(r[j]) end
local input, output = tonumber(ARGV[1]), tonumber(ARGV[2])
local delta = { input - r[1], output - r[2], input + output - r[3], input + output - r[4] }
for j = 1, 4 do
  if r[j + 4] <= 0 then delta[j] = 0 end
end

-- The correction applies at `now` without moving `ts`, so dimensions this script has no
-- capacity for keep their own refill: the stored usage is shifted by the refill since `ts`.
local function correct(key, fields, deltas, caps, expires)
  local current = redis.call('HMGET', key, 'ts', unpack(fields))
  local elapsed = elapsedSince(current[1], now)
  local args, grownFullIn = {}, 0
  for j = 1, #fields do
    local c, d = caps[j], deltas[j]
    if c > 0 and d ~= 0 then
      local cur = usedAt(current[j + 1], elapsed, c)
      local new = cur + d
      if new < 0 then new = 0 end
      if new ~= cur then
        args[#args + 1] = fields[j]
        args[#args + 1] = new + elapsed * c / 60000
        if new > cur and new * 60000 / c > grownFullIn then grownFullIn = new * 60000 / c end
      end
    end
  end
  if #args == 0 then return end
  if not current[1] then
    args[#args + 1] = 'ts'
    args[#args + 1] = now
  end
  redis.call('HSET', key, unpack(args))
  -- A refund only makes the bucket full sooner, so an expiring key's TTL can stay; a charge may
  -- need a longer one.
  if expires and grownFullIn > 0 then
    local want = math.ceil(grownFullIn) + 1
    if redis.call('PTTL', key) < want then redis.call('PEXPIRE', key, want) end
  end
end

if delta[1] ~= 0 or delta[2] ~= 0 or delta[3] ~= 0 then
  correct(KEYS[2], { 'itpm', 'otpm', 'tpm' }, { delta[1], delta[2], delta[3] }, { r[5], r[6], r[7] }, false)
end
if delta[4] ~= 0 then correct(KEYS[3], { 'tpm' }, { delta[4] }, { r[8] }, true) end

return { 1, nowUs, delta[1], delta[2], delta[3], delta[4] }
