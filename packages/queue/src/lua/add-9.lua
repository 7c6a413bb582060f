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

  KEYS[1..9] BullMQ addStandardJob's nine keys, in BullMQ's order: wait, paused, meta, id,
  completed, delayed, active, events, marker. The lane's other keys share their hash tag and are
  built here from ARGV[2] and KEYS[1], as BullMQ builds its job keys (keys.ts names them):
    <lane>prioritized (zset), <own>settings (hash: cap, tenantMax:<tenant>, tenantMax:*),
    <own>models (hash model -> `provider:pool`), <own>shedding (hash pool ->
    untilMs:retryAfterMs:pressure), <own>stats (hash: shed, shed:refused), <own>tenant-jobs:<tenant>
  Passing only BullMQ's keys keeps the command as small as BullMQ's own: every argument costs the
  client an encoding and Redis a parse, per enqueue.

  ARGV[1] default cap      ARGV[2] the lane's own-key prefix (`{prefix:lane}:hr:`)
  then seven per job: job id, provider, tenant or '', the models primary first joined by '\n',
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
--- @include "includes/model-pool"

-- BullMQ's keys are `<lane><name>`: its job hashes are `<lane><id>`.
local jobKeyPrefix = string.sub(KEYS[1], 1, -5)
local own = ARGV[2]
local settingsKey, modelsKey, sheddingKey, statsKey = own .. 'settings', own .. 'models', own .. 'shedding', own .. 'stats'
local cap = tonumber(redis.call('HGET', settingsKey, 'cap') or ARGV[1])
-- BullMQ 6 keeps a paused queue's jobs in `wait` (the paused list is only read by its migration).
local size = redis.call('LLEN', KEYS[1]) + redis.call('ZCARD', jobKeyPrefix .. 'prioritized') + redis.call('ZCARD', KEYS[6])

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
  local max = tonumber(redis.call('HGET', settingsKey, 'tenantMax:' .. tenant) or redis.call('HGET', settingsKey, 'tenantMax:*') or '0')
  if max <= 0 then return nil end
  local set = own .. 'tenant-jobs:' .. tenant
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

-- The job's pool is its primary model's; every model must be one the fleet serves, for this provider.
-- Returns the pool, or a refusal.
local function poolOf(provider, models)
  local pool
  for model in string.gmatch(models, '[^\n]+') do
    local known = redis.call('HGET', modelsKey, model)
    -- Until a fleet has published its models, any model is admitted and is its own pool.
    if not known then
      if redis.call('EXISTS', modelsKey) == 1 then return nil, -2, model end
      return pool or model
    end
    local owner, modelPool = providerAndPool(known, model)
    if owner ~= provider then return nil, -3, model, owner end
    pool = pool or modelPool
  end
  return pool
end

-- ARGV[at..at + 2] are the job's BullMQ add arguments.
local function addOne(jobId, provider, tenant, models, at)
  if redis.call('EXISTS', jobKeyPrefix .. jobId) == 1 then
    return 2, '', '', ''
  end
  local pool, code, model, owner = poolOf(provider, models)
  if not pool then return code, model, owner or '', '' end
  local shed = redis.call('HGET', sheddingKey, pool)
  if shed then
    local untilMs, retryAfterMs, pressure = string.match(shed, '^([%d.]+):([%d.]+):([%d.]+)$')
    if untilMs and tonumber(untilMs) > now() then
      redis.call('HINCRBY', statsKey, 'shed', 1)
      redis.call('HINCRBY', statsKey, 'shed:refused', 1)
      return -4, retryAfterMs, pool, pressure
    end
  end
  if tenant ~= '' then
    local max = tenantFull(tenant)
    if max then return -5, max, '', '' end
  end
  if size >= cap then return -1, cap, size, '' end
  local added = addStandardJob(KEYS, { ARGV[at], ARGV[at + 1], ARGV[at + 2] })
  if type(added) ~= 'string' then
    -- Only a parent-job error returns a code, and lane jobs have no parent: stop loudly.
    error('BullMQ addStandardJob refused job ' .. jobId .. ' with code ' .. tostring(added))
  end
  -- A coalesced job (BullMQ deduplication) did not grow the lane.
  if added == jobId then size = size + 1 end
  if tenant ~= '' then redis.call('ZADD', own .. 'tenant-jobs:' .. tenant, now(), added) end
  return 1, added, '', ''
end

local out = {}
for i = 3, #ARGV, 7 do
  local code, a, b, c = addOne(ARGV[i], ARGV[i + 1], ARGV[i + 2], ARGV[i + 3], i + 4)
  out[#out + 1] = code
  out[#out + 1] = a
  out[#out + 1] = b
  out[#out + 1] = c
end
return out
