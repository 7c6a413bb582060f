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
  off (nor failing), and its primary is failing (its fleet-wide throttle binds: the worker's plan
  sends such a job down its ladder at once, and a backlog of jobs without a ladder, retrying the
  failing model, kept the pool backed off in front of it until its deadline) or could not start it
  within its maxWaitMs (its own, `hrMaxWait`, or the lane's), counted from its enqueue. Its primary
  starts it once the bucket's wait its pool's backoff names is over (not the backoff's one-second
  cap) and the bucket has then served the jobs of that pool ahead of it in the lane, each taking
  the pool's pace (the refill of one job's draw) -- the jobs ahead that go down their own ladders
  excepted. Counting the bucket's wait
  alone, a job behind a backlog was taken only once that wait passed its deadline, a few hundred
  ms before it, and one taken a moment late ended DEADLINE_EXCEEDED with its fallback idle. The
  worker that takes such a job is told its id, and its plan passes over the primary's pool
  (plan.ts): acquired, it would take the refill the jobs ahead wait for.

  KEYS[1] the lane's wait list     KEYS[2] the lane's prioritized set
  KEYS[3] the lane's models hash (model -> `provider:pool`)
  KEYS[4] the lane's fallbacks hash (model -> its configured ladder, `\n`-joined)
  ARGV[1] how many jobs to look at   ARGV[2] the lane's maxWaitMs   ARGV[3] now (epoch ms)
  ARGV[4] n, the number of backed-off pools, then ARGV[5..4+n] the pools; `~<pool>` = backed off
          only for jobs of tenants with work queued (the fair reserve): a fresh tenant's job, one
          with `hrFresh` in its stored options, may still run
  ARGV[5+n] m, the number of failing models (their throttle binds, as the worker last heard),
          then the m models
  then triples, where known: a backed-off pool, when the bucket's wait for it ends (epoch ms), and
  its pace (ms; 0 when unknown)

  Returns 'front' (the first job is runnable), 'moved', 'blocked' (every job looked at waits on a
  backed-off pool) or 'empty'; for a job runnable only on a fallback, {'front' or 'moved', its id}.
]]
--- @include "includes/model-pool"

local depth, laneMaxWait, now = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local ids = redis.call('LRANGE', KEYS[1], -depth, -1)
local queued = {}
if #ids < depth then queued = redis.call('ZRANGE', KEYS[2], 0, depth - #ids - 1) end
if #ids == 0 and #queued == 0 then return 'empty' end
local blocked, fairOnly, waitEnd, pace, failing = {}, {}, {}, {}, {}
local n = tonumber(ARGV[4])
for i = 5, 4 + n do
  if string.sub(ARGV[i], 1, 1) == '~' then fairOnly[string.sub(ARGV[i], 2)] = true else blocked[ARGV[i]] = true end
end
local m = tonumber(ARGV[5 + n])
for i = 6 + n, 5 + n + m do failing[ARGV[i]] = true end
for i = 6 + n + m, #ARGV, 3 do
  waitEnd[ARGV[i]] = tonumber(ARGV[i + 1])
  pace[ARGV[i]] = tonumber(ARGV[i + 2]) or 0
end
-- Per backed-off pool, the jobs looked at so far that wait for it: the bucket serves them first.
local ahead = {}
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
-- is open (and its model not failing), and the primary is failing, or waiting for it (its bucket's
-- wait, then the jobs ahead) would make the job late.
local function fallsBack(id, primary, pool)
  local ends = waitEnd[pool]
  if not ends and not failing[primary] then return false end
  local job = redis.call('HMGET', jobKeyPrefix .. id, 'hrLadder', 'hrMaxWait', 'timestamp')
  if not failing[primary] then
    local maxWait = tonumber(job[2] or '') or laneMaxWait
    local starts = ends + (ahead[pool] or 0) * pace[pool]
    if not job[3] or starts - tonumber(job[3]) <= maxWait then return false end
  end
  local ladder = job[1] or redis.call('HGET', KEYS[4], primary)
  if not ladder then return false end
  for model in string.gmatch(ladder, '[^\n]+') do
    local other = poolOfModel(model)
    if model ~= primary and not failing[model] and not blocked[other] and not fairOnly[other] then return true end
  end
  return false
end

-- May the job run: its pool is not backed off, or only for queued-up tenants and it is fresh
-- (true); or it would go down its ladder to a pool that is not ('fallback'). A job that waits
-- for its backed-off pool counts as ahead of that pool's later jobs.
local function runnable(id)
  local primary = primaryOf(id)
  -- A job gone meanwhile (removed, or taken by another worker) is not in the way.
  if not primary then return false end
  local pool = poolOfModel(primary)
  if blocked[pool] then
    if fallsBack(id, primary, pool) then return 'fallback' end
    ahead[pool] = (ahead[pool] or 0) + 1
    return false
  end
  if not fairOnly[pool] then return true end
  local opts = redis.call('HGET', jobKeyPrefix .. id, 'opts') or ''
  return string.find(opts, '"hrFresh":1', 1, true) ~= nil
end

local function said(outcome, id, how)
  if how == 'fallback' then return { outcome, id } end
  return outcome
end

for i = #ids, 1, -1 do
  local how = runnable(ids[i])
  if how then
    if i == #ids then return said('front', ids[i], how) end
    redis.call('LREM', KEYS[1], 1, ids[i])
    redis.call('RPUSH', KEYS[1], ids[i])
    return said('moved', ids[i], how)
  end
end
for i = 1, #queued do
  local how = runnable(queued[i])
  if how then
    if i == 1 and #ids == 0 then return said('front', queued[i], how) end
    redis.call('ZREM', KEYS[2], queued[i])
    redis.call('RPUSH', KEYS[1], queued[i])
    return said('moved', queued[i], how)
  end
end
return 'blocked'
