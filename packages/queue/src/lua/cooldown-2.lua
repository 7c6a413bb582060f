--[[
  Puts a model in cooldown after a 429, for its `retry-after`: acquire for that model then
  answers WAIT with reason 'cooldown' until the end. A cooldown only ever lengthens (two workers
  hitting 429s must not shorten each other's), and the zset expires with its last cooldown, so
  nothing is left behind.

  KEYS[1] cooldowns zset (model -> end ms, Redis time)    KEYS[2] stats hash

  ARGV[1] model
  ARGV[2] 'for' (ARGV[3] = duration ms from now) or 'until' (ARGV[3] = end, epoch ms)
  ARGV[3] ms

  Returns
    { 1, nowUs, endMs }   COOLING: the model's cooldown now ends at endMs (the later of the old
                          end and this one)
    { 0, nowUs }          PAST: the given end has passed; nothing changes
]]
--- @include "includes/bucket-time"

local now, nowUs = redisNow()
local ends = tonumber(ARGV[3])
if ARGV[2] == 'for' then ends = now + ends end
if ends <= now then return { 0, nowUs } end

local old = tonumber(redis.call('ZSCORE', KEYS[1], ARGV[1]))
if old and old > ends then
  ends = old
else
  redis.call('ZADD', KEYS[1], ends, ARGV[1])
end
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
local last = redis.call('ZRANGE', KEYS[1], -1, -1, 'WITHSCORES')
redis.call('PEXPIRE', KEYS[1], math.ceil(tonumber(last[2]) - now) + 1)
redis.call('HINCRBY', KEYS[2], 'cooldowns', 1)
return { 1, nowUs, math.ceil(ends) }
