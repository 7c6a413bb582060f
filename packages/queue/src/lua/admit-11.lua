--[[
  Admits one job to a lane, atomically: refuses it while its pool is shedding, while its tenant
  holds its max of queued jobs, or while the lane holds its cap; otherwise reserves a slot.

  The producer calls this, then adds the job with BullMQ, then drops the reservation (member =
  job id), which keeps the slot counted between the two calls. A reservation whose producer died
  in between expires by itself, so no counter can drift and a crash leaks a slot for at most
  the TTL. The lane's real size is read from BullMQ's own structures, so a slot frees by itself
  when a job starts, is removed, cancelled or shed.

  KEYS[1] wait list           KEYS[2] paused list        KEYS[3] prioritized zset
  KEYS[4] delayed zset        KEYS[5] reservations zset (member job id, score expiry ms)
  KEYS[6] lane settings hash (cap, tenantMax:<tenant>, tenantMax:*)
  KEYS[7] known models hash (model -> provider)          KEYS[8] model -> pool hash
  KEYS[9] shedding hash (pool -> untilMs:retryAfterMs:pressure)
  KEYS[10] this tenant's queued jobs zset (any key of the lane's slot when there is no tenant)
  KEYS[11] lane stats hash (shed, shed:refused: every shed is counted)

  ARGV[1] job id              ARGV[2] reservation TTL ms  ARGV[3] default cap
  ARGV[4] job key prefix (`<bullPrefix>:<lane>:`)         ARGV[5] provider
  ARGV[6] tenant, or ''       ARGV[7..] every model the job may use, primary first

  Returns
    { 1 }                          admitted
    { 2 }                          a job with this id exists already (idempotent repeat)
    { -1, cap, size }              QUEUE_FULL
    { -2, model }                  unknown model (only checked once a fleet has published its models)
    { -3, model, provider }        model belongs to another provider
    { -4, retryAfterMs, pool, pressure }   SHED: the primary model's pool is under pressure
    { -5, max }                    QUOTA_EXCEEDED: the tenant holds its max of unfinished jobs
]]
local jobId = ARGV[1]
local jobKeyPrefix = ARGV[4]
local tenant = ARGV[6]

if redis.call('EXISTS', jobKeyPrefix .. jobId) == 1 then
  return { 2 }
end

if redis.call('EXISTS', KEYS[7]) == 1 then
  for i = 7, #ARGV do
    local owner = redis.call('HGET', KEYS[7], ARGV[i])
    if not owner then return { -2, ARGV[i] } end
    if owner ~= ARGV[5] then return { -3, ARGV[i], owner } end
  end
end

local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)

local pool = redis.call('HGET', KEYS[8], ARGV[7]) or ARGV[7]
local shed = redis.call('HGET', KEYS[9], pool)
if shed then
  local untilMs, retryAfterMs, pressure = string.match(shed, '^([%d.]+):([%d.]+):([%d.]+)$')
  if untilMs and tonumber(untilMs) > now then
    redis.call('HINCRBY', KEYS[11], 'shed', 1)
    redis.call('HINCRBY', KEYS[11], 'shed:refused', 1)
    return { -4, retryAfterMs, pool, pressure }
  end
end

if tenant ~= '' then
  local max = tonumber(redis.call('HGET', KEYS[6], 'tenantMax:' .. tenant) or redis.call('HGET', KEYS[6], 'tenantMax:*') or '0')
  if max > 0 and redis.call('ZCARD', KEYS[10]) >= max then
    -- Only at the limit: forget members that finished or were removed since. A job that started
    -- and went back to wait (a tenant over its tokens/min does) still counts: it is not done.
    for _, id in ipairs(redis.call('ZRANGE', KEYS[10], 0, -1)) do
      local key = jobKeyPrefix .. id
      local added = redis.call('EXISTS', key) == 1
      local reserved = redis.call('ZSCORE', KEYS[5], id)
      -- Gone (removed, or its producer died before adding it) or finished: no longer held.
      if (not added and not (reserved and tonumber(reserved) > now)) or (added and redis.call('HEXISTS', key, 'finishedOn') == 1) then
        redis.call('ZREM', KEYS[10], id)
      end
    end
    if redis.call('ZCARD', KEYS[10]) >= max then return { -5, max } end
  end
end

redis.call('ZREMRANGEBYSCORE', KEYS[5], '-inf', now)
local reserved = redis.call('ZCARD', KEYS[5])
local cap = tonumber(redis.call('HGET', KEYS[6], 'cap') or ARGV[3])
local size = redis.call('LLEN', KEYS[1]) + redis.call('LLEN', KEYS[2])
  + redis.call('ZCARD', KEYS[3]) + redis.call('ZCARD', KEYS[4]) + reserved
if size >= cap then
  return { -1, cap, size }
end

redis.call('ZADD', KEYS[5], now + tonumber(ARGV[2]), jobId)
if tenant ~= '' then redis.call('ZADD', KEYS[10], now, jobId) end
return { 1 }
