--[[
  Admits a batch of jobs to one lane and adds the admitted ones with BullMQ's own add script, in
  one atomic call: each is refused while its pool is shedding, while its tenant holds its max of
  unfinished jobs, or while the lane holds its cap. A producer sends every enqueue it has in
  flight for the lane in one call (often just one).

  Admission and add being one script is what makes the cap exact under any number of producers
  at one round trip per enqueue: nothing sits between "admitted" and "in the lane", so no
  reservation is needed and a producer dying mid-enqueue leaves nothing behind. The lane's size is
  read from BullMQ's own structures, so a slot frees by itself when a job starts, is removed,
  cancelled or shed.

  Every job runs BullMQ's add once, so the admission around it is kept to a few O(1) reads: it is
  what this script adds to a plain `Queue.add` (measured by `pnpm bench:enqueue`).

  KEYS[1] wait list           KEYS[2] prioritized zset   KEYS[3] delayed zset
  KEYS[4] lane settings hash (cap, tenantMax:<tenant>, tenantMax:*)
  KEYS[5] known models hash (model -> `provider:pool`)
  KEYS[6] shedding hash (pool -> untilMs:retryAfterMs:pressure)
  KEYS[7] lane stats hash (shed, shed:refused: every shed is counted)
  KEYS[8..16] BullMQ addStandardJob's nine keys, in BullMQ's order

  ARGV[1] default cap
  ARGV[2] job key prefix (`<bullPrefix>:<lane>:`)        ARGV[3] tenant zset key prefix (same slot)
  then per job: job id, provider, tenant or '', number of models N, N models (primary first),
  then BullMQ addStandardJob's three arguments (packed args, job data JSON, packed options)

  Returns four entries per job, in order:
    1, jobId, '', ''                       added; jobId differs from the one sent when BullMQ
                                           deduplicated it into a job already in flight
    2, '', '', ''                          a job with this id exists already (idempotent repeat)
    -1, cap, size, ''                      QUEUE_FULL
    -2, model, '', ''                      unknown model (checked once a fleet has published its models)
    -3, model, provider, ''                model belongs to another provider
    -4, retryAfterMs, pool, pressure       SHED: the primary model's pool is under pressure
    -5, max, '', ''                        QUOTA_EXCEEDED: the tenant holds its max of unfinished jobs
]]
--- @bullmq "addStandardJob"

local jobKeyPrefix = ARGV[2]
local tenantKeyPrefix = ARGV[3]
local cap = tonumber(redis.call('HGET', KEYS[4], 'cap') or ARGV[1])
local bullKeys = { unpack(KEYS, 8, 16) }
-- BullMQ 6 keeps a paused queue's jobs in `wait` (the paused list is only read by its migration).
local size = redis.call('LLEN', KEYS[1]) + redis.call('ZCARD', KEYS[2]) + redis.call('ZCARD', KEYS[3])

-- Redis time, read only by the rarer paths (a shedding entry, a tenant).
local nowMs
local function now()
  if not nowMs then
    local t = redis.call('TIME')
    nowMs = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
  end
  return nowMs
end

local function tenantFull(tenant)
  local max = tonumber(redis.call('HGET', KEYS[4], 'tenantMax:' .. tenant) or redis.call('HGET', KEYS[4], 'tenantMax:*') or '0')
  if max <= 0 then return nil end
  local set = tenantKeyPrefix .. tenant
  if redis.call('ZCARD', set) < max then return nil end
  -- Only at the limit: forget members that finished or were removed since. A job that started
  -- and went back to wait (a tenant over its tokens/min does) still counts: it is not done.
  for _, id in ipairs(redis.call('ZRANGE', set, 0, -1)) do
    local key = jobKeyPrefix .. id
    if redis.call('EXISTS', key) == 0 or redis.call('HEXISTS', key, 'finishedOn') == 1 then
      redis.call('ZREM', set, id)
    end
  end
  if redis.call('ZCARD', set) >= max then return max end
  return nil
end

-- ARGV[first..last] are the job's models; ARGV[last + 1..last + 3] BullMQ's add arguments.
local function addOne(jobId, provider, tenant, first, last)
  if redis.call('EXISTS', jobKeyPrefix .. jobId) == 1 then
    return 2, '', '', ''
  end
  -- Until a fleet has published its models, any model is admitted and is its own pool.
  local pool = ARGV[first]
  for i = first, last do
    local known = redis.call('HGET', KEYS[5], ARGV[i])
    if not known then
      if redis.call('EXISTS', KEYS[5]) == 1 then return -2, ARGV[i], '', '' end
      break
    end
    local owner, modelPool = string.match(known, '^([^:]*):(.*)$')
    if owner ~= provider then return -3, ARGV[i], owner, '' end
    if i == first then pool = modelPool end
  end
  local shed = redis.call('HGET', KEYS[6], pool)
  if shed then
    local untilMs, retryAfterMs, pressure = string.match(shed, '^([%d.]+):([%d.]+):([%d.]+)$')
    if untilMs and tonumber(untilMs) > now() then
      redis.call('HINCRBY', KEYS[7], 'shed', 1)
      redis.call('HINCRBY', KEYS[7], 'shed:refused', 1)
      return -4, retryAfterMs, pool, pressure
    end
  end
  if tenant ~= '' then
    local max = tenantFull(tenant)
    if max then return -5, max, '', '' end
  end
  if size >= cap then return -1, cap, size, '' end
  local added = addStandardJob(bullKeys, { ARGV[last + 1], ARGV[last + 2], ARGV[last + 3] })
  if type(added) ~= 'string' then
    -- Only a parent-job error returns a code, and lane jobs have no parent: stop loudly.
    error('BullMQ addStandardJob refused job ' .. jobId .. ' with code ' .. tostring(added))
  end
  -- A coalesced job (BullMQ deduplication) did not grow the lane.
  if added == jobId then size = size + 1 end
  if tenant ~= '' then redis.call('ZADD', tenantKeyPrefix .. tenant, now(), added) end
  return 1, added, '', ''
end

local out = {}
local i = 4
while i <= #ARGV do
  local n = tonumber(ARGV[i + 3])
  local code, a, b, c = addOne(ARGV[i], ARGV[i + 1], ARGV[i + 2], i + 4, i + 3 + n)
  out[#out + 1] = code
  out[#out + 1] = a
  out[#out + 1] = b
  out[#out + 1] = c
  i = i + 7 + n
end
return out
