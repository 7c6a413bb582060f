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

  KEYS[1] the lane's wait list     KEYS[2] the lane's prioritized set
  KEYS[3] the lane's models hash (model -> `provider:pool`)
  ARGV[1] how many jobs to look at   ARGV[2..] the backed-off pools; `~<pool>` = backed off only
          for jobs of tenants with work queued (the fair reserve): a fresh tenant's job, one
          with `hrFresh` in its stored options, may still run

  Returns 'front' (the first job is runnable), 'moved', 'blocked' (every job looked at waits on a
  backed-off pool) or 'empty'.
]]
--- @include "includes/model-pool"

local depth = tonumber(ARGV[1])
local ids = redis.call('LRANGE', KEYS[1], -depth, -1)
local queued = {}
if #ids < depth then queued = redis.call('ZRANGE', KEYS[2], 0, depth - #ids - 1) end
if #ids == 0 and #queued == 0 then return 'empty' end
local blocked, fairOnly = {}, {}
for i = 2, #ARGV do
  if string.sub(ARGV[i], 1, 1) == '~' then fairOnly[string.sub(ARGV[i], 2)] = true else blocked[ARGV[i]] = true end
end
-- BullMQ's keys are `<lane><name>`: its job hashes are `<lane><id>`.
local jobKeyPrefix = string.sub(KEYS[1], 1, -5)
local pools = {}

-- A job's pool is its primary model's, as the bucket and admission see it. The job's name is
-- `provider:model` (a model id may itself hold ':', a fine-tuned OpenAI model does).
local function poolOf(id)
  local name = redis.call('HGET', jobKeyPrefix .. id, 'name')
  if not name then return nil end
  local sep = string.find(name, ':', 1, true)
  local model = sep and string.sub(name, sep + 1) or name
  local pool = pools[model]
  if pool == nil then
    -- A model the fleet has not published is its own pool, as a bare provider entry leaves it.
    local _, modelPool = providerAndPool(redis.call('HGET', KEYS[3], model) or '', model)
    pool = modelPool
    pools[model] = pool
  end
  return pool
end

-- May the job run: its pool is not backed off, or only for queued-up tenants and it is fresh.
local function runnable(id)
  local pool = poolOf(id)
  -- A job gone meanwhile (removed, or taken by another worker) is not in the way.
  if not pool or blocked[pool] then return false end
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
