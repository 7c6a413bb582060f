--[[
  Admits a batch of jobs to one lane, atomically and in order: each is refused while its pool is
  shedding, while its tenant holds its max of unfinished jobs, or while the lane holds its cap;
  otherwise it gets a reserved slot. A producer sends every enqueue it has in flight for the lane
  in one call (often just one).

  The producer then adds the admitted jobs with BullMQ and drops their reservations (member =
  job id), which keep the slots counted between the two calls. A reservation whose producer died
  in between expires by itself, so no counter can drift and a crash leaks a slot for at most
  the TTL. The lane's real size is read from BullMQ's own structures, so a slot frees by itself
  when a job starts, is removed, cancelled or shed.

  KEYS[1] wait list           KEYS[2] paused list        KEYS[3] prioritized zset
  KEYS[4] delayed zset        KEYS[5] reservations zset (member job id, score expiry ms)
  KEYS[6] lane settings hash (cap, tenantMax:<tenant>, tenantMax:*)
  KEYS[7] known models hash (model -> provider)          KEYS[8] model -> pool hash
  KEYS[9] shedding hash (pool -> untilMs:retryAfterMs:pressure)
  KEYS[10] lane stats hash (shed, shed:refused: every shed is counted)

  ARGV[1] reservation TTL ms  ARGV[2] default cap
  ARGV[3] job key prefix (`<bullPrefix>:<lane>:`)        ARGV[4] tenant zset key prefix (same slot)
  then per job: job id, provider, tenant or '', number of models N, N models (primary first)

  Returns four entries per job, in order:
    1, '', '', ''                          admitted
    2, '', '', ''                          a job with this id exists already (idempotent repeat)
    -1, cap, size, ''                      QUEUE_FULL
    -2, model, '', ''                      unknown model (checked once a fleet has published its models)
    -3, model, provider, ''                model belongs to another provider
    -4, retryAfterMs, pool, pressure       SHED: the primary model's pool is under pressure
    -5, max, '', ''                        QUOTA_EXCEEDED: the tenant holds its max of unfinished jobs
]]
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local ttl = tonumber(ARGV[1])
local jobKeyPrefix = ARGV[3]
local tenantKeyPrefix = ARGV[4]
local modelsKnown = redis.call('EXISTS', KEYS[7]) == 1
local cap = tonumber(redis.call('HGET', KEYS[6], 'cap') or ARGV[2])

redis.call('ZREMRANGEBYSCORE', KEYS[5], '-inf', now)
local size = redis.call('LLEN', KEYS[1]) + redis.call('LLEN', KEYS[2])
  + redis.call('ZCARD', KEYS[3]) + redis.call('ZCARD', KEYS[4]) + redis.call('ZCARD', KEYS[5])

local function tenantFull(tenant)
  local max = tonumber(redis.call('HGET', KEYS[6], 'tenantMax:' .. tenant) or redis.call('HGET', KEYS[6], 'tenantMax:*') or '0')
  if max <= 0 then return nil end
  local set = tenantKeyPrefix .. tenant
  if redis.call('ZCARD', set) < max then return nil end
  -- Only at the limit: forget members that finished or were removed since. A job that started
  -- and went back to wait (a tenant over its tokens/min does) still counts: it is not done.
  for _, id in ipairs(redis.call('ZRANGE', set, 0, -1)) do
    local key = jobKeyPrefix .. id
    local added = redis.call('EXISTS', key) == 1
    local reserved = redis.call('ZSCORE', KEYS[5], id)
    -- Gone (removed, or its producer died before adding it) or finished: no longer held.
    if (not added and not (reserved and tonumber(reserved) > now)) or (added and redis.call('HEXISTS', key, 'finishedOn') == 1) then
      redis.call('ZREM', set, id)
    end
  end
  if redis.call('ZCARD', set) >= max then return max end
  return nil
end

local function admitOne(jobId, provider, tenant, first, last)
  if redis.call('EXISTS', jobKeyPrefix .. jobId) == 1 or redis.call('ZSCORE', KEYS[5], jobId) then
    return 2, '', '', ''
  end
  if modelsKnown then
    for i = first, last do
      local owner = redis.call('HGET', KEYS[7], ARGV[i])
      if not owner then return -2, ARGV[i], '', '' end
      if owner ~= provider then return -3, ARGV[i], owner, '' end
    end
  end
  local pool = redis.call('HGET', KEYS[8], ARGV[first]) or ARGV[first]
  local shed = redis.call('HGET', KEYS[9], pool)
  if shed then
    local untilMs, retryAfterMs, pressure = string.match(shed, '^([%d.]+):([%d.]+):([%d.]+)$')
    if untilMs and tonumber(untilMs) > now then
      redis.call('HINCRBY', KEYS[10], 'shed', 1)
      redis.call('HINCRBY', KEYS[10], 'shed:refused', 1)
      return -4, retryAfterMs, pool, pressure
    end
  end
  if tenant ~= '' then
    local max = tenantFull(tenant)
    if max then return -5, max, '', '' end
  end
  if size >= cap then return -1, cap, size, '' end
  size = size + 1
  redis.call('ZADD', KEYS[5], now + ttl, jobId)
  if tenant ~= '' then redis.call('ZADD', tenantKeyPrefix .. tenant, now, jobId) end
  return 1, '', '', ''
end

local out = {}
local i = 5
while i <= #ARGV do
  local n = tonumber(ARGV[i + 3])
  local code, a, b, c = admitOne(ARGV[i], ARGV[i + 1], ARGV[i + 2], i + 4, i + 3 + n)
  out[#out + 1] = code
  out[#out + 1] = a
  out[#out + 1] = b
  out[#out + 1] = c
  i = i + 4 + n
end
return out
