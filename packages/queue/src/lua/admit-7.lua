--[[
  Admits one job to a lane: reserves a slot against the lane's real size, atomically.

  The producer calls this, then adds the job with BullMQ, then drops the reservation (member =
  job id), which keeps the slot counted between the two calls. A reservation whose producer died
  in between expires by itself, so no counter can drift and a crash leaks a slot for at most
  the TTL.

  KEYS[1] wait list           KEYS[2] paused list        KEYS[3] prioritized zset
  KEYS[4] delayed zset        KEYS[5] reservations zset (member job id, score expiry ms)
  KEYS[6] lane settings hash (field cap)                 KEYS[7] known models hash (model -> provider)

  ARGV[1] job id              ARGV[2] reservation TTL ms  ARGV[3] default cap
  ARGV[4] job key prefix (`<bullPrefix>:<lane>:`)         ARGV[5] provider
  ARGV[6..] every model the job may use

  Returns
    { 1 }                       admitted
    { 2 }                       a job with this id exists already (idempotent repeat)
    { -1, cap, size }           QUEUE_FULL
    { -2, model }               unknown model (only checked once a fleet has published its models)
    { -3, model, provider }     model belongs to another provider
]]
local jobId = ARGV[1]
local jobKeyPrefix = ARGV[4]

if redis.call('EXISTS', jobKeyPrefix .. jobId) == 1 then
  return { 2 }
end

if redis.call('EXISTS', KEYS[7]) == 1 then
  for i = 6, #ARGV do
    local owner = redis.call('HGET', KEYS[7], ARGV[i])
    if not owner then return { -2, ARGV[i] } end
    if owner ~= ARGV[5] then return { -3, ARGV[i], owner } end
  end
end

local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)

redis.call('ZREMRANGEBYSCORE', KEYS[5], '-inf', now)
local reserved = redis.call('ZCARD', KEYS[5])

local cap = tonumber(redis.call('HGET', KEYS[6], 'cap') or ARGV[3])
local size = redis.call('LLEN', KEYS[1]) + redis.call('LLEN', KEYS[2])
  + redis.call('ZCARD', KEYS[3]) + redis.call('ZCARD', KEYS[4]) + reserved

if size >= cap then
  return { -1, cap, size }
end

redis.call('ZADD', KEYS[5], now + tonumber(ARGV[2]), jobId)
return { 1 }
