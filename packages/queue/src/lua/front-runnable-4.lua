--[[
  Brings the lane's first job that is not waiting on a backed-off pool to the front of the lane,
  so the next BullMQ fetch takes it. A lane holds jobs for several pools (Anthropic and OpenAI
  models, say): a job told to wait for its pool's quota goes back to the front, and without this
  every job behind it would wait for that pool too, however idle its own pool is.

  Only the first ARGV[1] jobs are looked at, in the order BullMQ takes them: the wait list from
  its right end, then the prioritized set from its lowest score (where a fair lane keeps its jobs).
  The job that moves goes to the wait list's right end, taken before anything else; the skipped
  jobs keep their places, so they are first again once their pool's backoff ends. A fair-queued
  job that moved keeps its place in its hash (`hrRound`, `hrLow`): put back, it goes there again.

  A job whose primary's pool is backed off may still run on a fallback: when its ladder (its own,
  `hrLadder` in its hash, or its primary's configured one) has a model whose pool is not backed
  off, and the wait its pool's backoff names (the bucket's, not the backoff's one-second cap)
  would take the job past its maxWaitMs (its own, `hrMaxWait`, or the lane's), counted from its
  enqueue. That is when a worker's plan goes down the ladder (plan.ts): without this, such a job
  was never taken while the jobs ahead of it waited on its primary, and missed its deadline with
  its fallback idle.

  KEYS[1] the lane's wait list     KEYS[2] the lane's prioritized set
  KEYS[3] the lane's models hash (model -> `provider:pool`)
  KEYS[4] the lane's fallbacks hash (model -> its configured ladder, `\n`-joined)
  ARGV[1] how many jobs to look at   ARGV[2] the lane's maxWaitMs   ARGV[3] now (epoch ms)
  ARGV[4] n, the number of backed-off pools, then ARGV[5..4+n] the pools; `~<pool>` = backed off
          only for jobs of tenants with work queued (the fair reserve): a fresh tenant's job, one
          with `hrFresh` in its stored options, may still run
  then pairs: a backed-off pool and when the bucket's wait for it ends (epoch ms), where known

  Returns 'front' (the first job is runnable), 'moved', 'blocked' (every job looked at waits on a
  backed-off pool) or 'empty'.
]]
--- @include "includes/model-pool"

local depth, laneMaxWait, now = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local ids = redis.call('LRANGE', KEYS[1], -depth, -1)
local queued = {}
if #ids < depth then queued = redis.call('ZRANGE', KEYS[2], 0, depth - #ids - 1) end
if #ids == 0 and #queued == 0 then return 'empty' end
local blocked, fairOnly, waitEnd = {}, {}, {}
local n = tonumber(ARGV[4])
for i = 5, 4 + n do
  if string.sub(ARGV[i], 1, 1) == '~' then fairOnly[string.sub(ARGV[i], 2)] = true else blocked[ARGV[i]] = true end
end
for i = 5 + n, #ARGV, 2 do waitEnd[ARGV[i]] = tonumber(ARGV[i + 1]) end
-- BullMQ's keys are `<lane><name>`: its job hashes are `<lane><id>`.
local jobKeyPrefix = string.sub(KEYS[1], 1, -5)
local pools = {}

local function poolOfModel(model)
  local pool = pools[model]
  if pool == nil then
    -- A model the fleet has not published is its own pool, as a bare provider entry leaves it.
    local _, modelPool = providerAndPool(redis.call('HGET', KEYS[3], model) or '', model)
    pool = modelPool
    pools[model] = pool
  end
  return pool
end

-- A job's pool is its primary model's, as the bucket and admission see it. The job's name is
-- `provider:model` (a model id may itself hold ':', a fine-tuned OpenAI model does).
local function primaryOf(id)
  local name = redis.call('HGET', jobKeyPrefix .. id, 'name')
  if not name then return nil end
  local sep = string.find(name, ':', 1, true)
  return sep and string.sub(name, sep + 1) or name
end

-- Whether a job held back by its primary's pool would go down its ladder now: a fallback's pool
-- is open, and waiting for the primary would make the job late.
local function fallsBack(id, primary, pool)
  local ends = waitEnd[pool]
  if not ends then return false end
  local job = redis.call('HMGET', jobKeyPrefix .. id, 'hrLadder', 'hrMaxWait', 'timestamp')
  local maxWait = tonumber(job[2] or '') or laneMaxWait
  if not job[3] or ends - tonumber(job[3]) <= maxWait then return false end
  local ladder = job[1] or redis.call('HGET', KEYS[4], primary)
  if not ladder then return false end
  for model in string.gmatch(ladder, '[^\n]+') do
    local other = poolOfModel(model)
    if model ~= primary and not blocked[other] and not fairOnly[other] then return true end
  end
  return false
end

-- May the job run: its pool is not backed off, or only for queued-up tenants and it is fresh,
-- or it would go down its ladder to a pool that is not.
local function runnable(id)
  local primary = primaryOf(id)
  -- A job gone meanwhile (removed, or taken by another worker) is not in the way.
  if not primary then return false end
  local pool = poolOfModel(primary)
  if blocked[pool] then return fallsBack(id, primary, pool) end
  if not fairOnly[pool] then return true end
  local opts = redis.call('HGET', jobKeyPrefix .. id, 'opts') or ''
  return string.find(opts, '"hrFresh":1', 1, true) ~= nil
end

for i = #ids, 1, -1 do
  if runnable(ids[i]) then
    if i == #ids then return 'front' end
    redis.call('LREM', KEYS[1], 1, ids[i])
    redis.call('RPUSH', KEYS[1], ids[i])
    return 'moved'
  end
end
for i = 1, #queued do
  if runnable(queued[i]) then
    if i == 1 and #ids == 0 then return 'front' end
    redis.call('ZREM', KEYS[2], queued[i])
    redis.call('RPUSH', KEYS[1], queued[i])
    return 'moved'
  end
end
return 'blocked'
