--[[
  Admits a batch of jobs to one lane and adds the admitted ones with BullMQ's own add script, in
  one atomic call: each is refused while no fleet has published its settings, while its pool is
  shedding, while its tenant holds its max of unfinished jobs, while the lane's unfinished jobs
  hold its byte cap, or while the lane holds its cap of jobs not yet started. A producer sends
  every enqueue it has in flight for the lane in one call (often just one).

  Admission and add being one script is what makes the caps exact under any number of producers
  at one round trip per enqueue: nothing sits between "admitted" and "in the lane", so no
  reservation is needed and a producer dying mid-enqueue leaves nothing behind. The lane's size is
  read from BullMQ's own structures (plus the jobs workers are putting back, `returning`), so a
  slot frees by itself when a job starts, is removed, cancelled or shed.

  It fails closed: without the settings hash (a Redis restarted without persistence, a FLUSHALL)
  every job is refused rather than admitted against defaults; workers publish it again within
  seconds (lane-upkeep.ts). Every model must be in the published models hash; a model missing
  while that hash is gone altogether is FLEET_UNPUBLISHED too, not an unknown model (a fleet
  always serves some model: the hash went with a lost key, and the workers publish it again).

  Every job runs BullMQ's add once, so the admission around it is kept to a few O(1) reads and
  writes: it is what this script adds to a plain `Queue.add` (measured by `pnpm bench:enqueue`).
  The tenant's count and the lane's bytes are counters kept in step with `unfinished` (an entry
  per admitted job, released once by lua/release-1.lua when the job is finished or gone), so a
  refusal costs the same whatever the tenant holds.

  KEYS[1..9] BullMQ addStandardJob's nine keys, in BullMQ's order: wait, paused, meta, id,
  completed, delayed, active, events, marker. The lane's other keys share their hash tag and are
  built here from ARGV[1] and KEYS[1], as BullMQ builds its job keys (keys.ts names them):
    <lane>prioritized (zset), <own>settings (hash: cap, maxBytes, tenantMax:<tenant>,
    tenantMax:*), <own>models (hash model -> `provider:pool`), <own>output-caps (hash model ->
    maxOutputTokens, read only for a request with no output bound), <own>shedding (hash pool ->
    untilMs:retryAfterMs:pressure), <own>stats (hash: shed, shed:refused), <own>shed-refused:<minute>
    (string: this minute's refusals SHED, for the fleet stats' window; two hours), <own>unfinished (hash
    job id -> `bytes|tenant`), <own>usage (hash: bytes, tenant:<tenant>), <own>returning (zset),
    <own>idem-alias:<job id> (string: the job an idempotent one coalesced into, see rememberJoin,
    or the BATCH job it became when shed at admission, admission.ts rememberHandOff),
    <own>cancelled:<job id> (string: deleted when an idempotent job is added under its id again),
    <lane>failed (zset) and <lane><id>[:logs]: a failed run an idempotent repeat runs again is
    renamed to `<id>.failed-<finishedOn>` there (setFailedRunAside)
  Passing only BullMQ's keys keeps the command as small as BullMQ's own: every argument costs the
  client an encoding and Redis a parse, per enqueue.

  ARGV[1] the lane's own-key prefix (`{prefix:lane}:hr:`)
  then eleven per job: job id, provider, tenant or '', the models primary first joined by '\n'
  (stored as `hrLadder` when there is more than one, or when the job names no fallback of its
  own, `fallback: []`, which its trailing '\n' says: the configured ladder is not its), the job's summary for the dashboard or ''
  (stored as the job hash's `hrSummary`), its cost in tokens for fair sharing (tenant-fairness.ts;
  `<cost>*<choices>` for a request that sets no output bound: every model of its ladder must have
  a published output cap, and the primary's, times its choices, is added to its cost), its own
  maxWaitMs or '' (stored as `hrMaxWait`), its idempotency digest for an idempotent job id, else ''
  (job-ids.ts idempotencyDigestOf: stored as `hrIdem`, and in the alias of a key that coalesced,
  see sameJob), then BullMQ addStandardJob's three arguments (packed args, job data JSON, packed
  options); the job's size is its data JSON's length in bytes.
  `hrLadder` and `hrMaxWait` let a job stuck behind its primary's backed-off pool be taken for a
  fallback without reading its data (front-runnable-4.lua).

  In a lane whose settings say `fair` = 1, an added job leaves BullMQ's wait list for its fair
  place in the lane's prioritized set (includes/fair-queue.lua), and one whose tenant had nothing
  queued ahead of it gets `hrFresh: 1` in its stored options (the fair reserve, acquire.lua); also
  read then:
    <own>fair (hash), <lane>delayed, settings' weight:* / weights (1: some tenant has its own
    weight:<tenant>)

  Returns four entries per job, in order:
    1, jobId, mark, ''                     added; jobId differs from the one sent when BullMQ
                                           deduplicated it into a job already in flight, or when
                                           its idempotency key's earlier request was (idem-alias),
                                           or was moved to the BATCH lane at admission (a
                                           `batch.shed-` id: the job is in that lane)
    2, '', mark, ''                        a job with this id exists already (idempotent repeat);
                                           a repeat of one that failed to retry is added again (1),
                                           the failed record kept as `<id>.failed-<finishedOn>`
                                           (so is a shed job's `batch.shed-` hand-off job)
    -1, cap, size, ''                      QUEUE_FULL: the lane holds its cap of jobs not yet started
    -2, model, '', ''                      unknown model (not in the fleet's published models)
    -3, model, provider, ''                model belongs to another provider
    -4, retryAfterMs, pool, pressure       SHED: the primary model's pool is under pressure
    -5, max, '', ''                        QUOTA_EXCEEDED: the tenant holds its max of unfinished jobs
    -6, '', '', ''                         FLEET_UNPUBLISHED: no settings (or no models) published
                                           on this Redis
    -7, maxBytes, bytes, jobBytes          QUEUE_FULL: the lane's unfinished jobs hold its byte cap
    -8, model, '', ''                      the request sets no output bound and the model has no
                                           maxOutputTokens in the fleet's config
    -9, joined, '', ''                     IDEMPOTENCY_CONFLICT: the job's idempotency key names a job
                                           that holds a different one (or, having coalesced into
                                           another job, `joined`, was first sent with a different one)
    -10, job, '', ''                       the job the idempotency key names (or joined) is stopping: started,
                                           and cancelled by its last caller (its cancel flag set,
                                           cancel-3.lua). A share added now would end CANCELLED
                                           with it; the caller sends the repeat again once it has
                                           ended, and that one runs it again

  A repeat and a coalesced join each count one more caller sharing the job (`hrJoins` in its hash):
  a caller that stops waiting then leaves it to the others instead of cancelling it (cancel-3.lua).
  Each also moves the job's start deadline to its own when that is later (or none), in `hrMaxWait`
  and in the job's options, where the worker's fetch reads it (shared-deadline.ts), and adds its
  deadline to the job's list of its callers' (`hrWaits`, includes/shared-deadline.lua). `mark` is
  the caller's deadline as that list holds it (its maxWaitMs from the job's enqueue, `n` for none;
  '' for a join of a finished job, or of one in another lane): the caller names it when it leaves,
  so the job's deadline moves back to the latest of those still waiting.
  Neither takes room, so neither is refused for it (shedding, the tenant's max, the lane's caps): a
  join is looked for only when such a refusal would be the answer, so an ordinary add pays nothing.
]]
--- @bullmq "addStandardJob"
--- @include "includes/model-pool"
--- @include "includes/fair-queue"
--- @include "includes/run-aside"
--- @include "includes/release-job"
--- @include "includes/shared-deadline"

-- BullMQ's keys are `<lane><name>`: its job hashes are `<lane><id>`.
local jobKeyPrefix = string.sub(KEYS[1], 1, -5)
local own = ARGV[1]
local settingsKey, modelsKey, sheddingKey, statsKey = own .. 'settings', own .. 'models', own .. 'shedding', own .. 'stats'
local unfinishedKey, usageKey = own .. 'unfinished', own .. 'usage'
local settings = redis.call('HMGET', settingsKey, 'cap', 'maxBytes', 'tenantMax:*', 'fair', 'weight:*', 'weights')
local cap, maxBytes, tenantMaxAll = tonumber(settings[1]), tonumber(settings[2]), tonumber(settings[3] or '0')
local fair, weightAll, anyWeight = settings[4] == '1', tonumber(settings[5] or '1'), settings[6] == '1'
-- BullMQ 6 keeps a paused queue's jobs in `wait` (the paused list is only read by its migration).
local size
local bytes
if cap then
  size = redis.call('LLEN', KEYS[1]) + redis.call('ZCARD', jobKeyPrefix .. 'prioritized') + redis.call('ZCARD', KEYS[6])
    + redis.call('ZCARD', own .. 'returning')
  bytes = tonumber(redis.call('HGET', usageKey, 'bytes') or '0')
end

-- How long a minute's count of admission's sheds is kept: as long as the fleet's minute hashes.
local SHED_MINUTE_TTL_SEC = 2 * 3600

-- Redis time, read only by the rarer paths (a shedding entry).
local nowMs
local function now()
  if not nowMs then
    local t = redis.call('TIME')
    nowMs = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
  end
  return nowMs
end

-- The tenant's max of unfinished jobs in this lane when it holds that many, else nil. O(1): a
-- counter kept in step with the lane's `unfinished` entries.
local function tenantFull(tenant)
  local max = tonumber(redis.call('HGET', settingsKey, 'tenantMax:' .. tenant) or '') or tenantMaxAll
  if max <= 0 then return nil end
  if tonumber(redis.call('HGET', usageKey, 'tenant:' .. tenant) or '0') >= max then return max end
  return nil
end

-- The job's pool is its primary model's; every model must be one the fleet serves, for this provider.
-- Returns the pool, or a refusal.
local function poolOf(provider, models)
  local pool
  for model in string.gmatch(models, '[^\n]+') do
    local known = redis.call('HGET', modelsKey, model)
    if not known then
      -- Only a refusal pays for this look: an admitted job's models are all there.
      if redis.call('EXISTS', modelsKey) == 0 then return nil, -6, '' end
      return nil, -2, model
    end
    local owner, modelPool = providerAndPool(known, model)
    if owner ~= provider then return nil, -3, model, owner end
    pool = pool or modelPool
  end
  return pool
end

-- A request with no output bound reserves its models' output caps: every model of the ladder must
-- have one. Returns its cost with the primary's cap added, or a refusal.
local function uncappedCost(models, cost, choices)
  local primaryCap
  for model in string.gmatch(models, '[^\n]+') do
    local modelCap = redis.call('HGET', own .. 'output-caps', model)
    if not modelCap then
      -- Only a refusal pays for this look: the hash a fleet published (settings' `published`)
      -- lost to an eviction or a partial restore is FLEET_UNPUBLISHED, not the model's fault.
      local published = redis.call('HGET', settingsKey, 'published') or ''
      if string.find(published, 'output-caps', 1, true) and redis.call('EXISTS', own .. 'output-caps') == 0 then return nil, nil, true end
      return nil, model
    end
    primaryCap = primaryCap or tonumber(modelCap)
  end
  return tostring(tonumber(cost) + primaryCap * tonumber(choices))
end

-- The tenant's share of a fair lane (1 unless the config gives it another). `weights` says some
-- tenant has one of its own: without it, no read per job.
local function weightOf(tenant)
  if tenant == '' or not anyWeight then return weightAll end
  return tonumber(redis.call('HGET', settingsKey, 'weight:' .. tenant) or '') or weightAll
end

-- Why the lane has no room for a job now, as addOne's reply (its pool shedding, its tenant at its
-- max, the lane at its cap or byte cap), or nil.
local function noRoom(pool, tenant, jobBytes)
  local shed = redis.call('HGET', sheddingKey, pool)
  if shed then
    local untilMs, retryAfterMs, pressure = string.match(shed, '^([%d.]+):([%d.]+):([%d.]+)$')
    if untilMs and tonumber(untilMs) > now() then return -4, retryAfterMs, pool, pressure end
  end
  if tenant ~= '' then
    local max = tenantFull(tenant)
    if max then return -5, max, '', '' end
  end
  if size >= cap then return -1, cap, size, '' end
  if maxBytes and bytes + jobBytes > maxBytes then return -7, maxBytes, bytes, jobBytes end
  return nil
end

-- The deduplication key a coalesced job's BullMQ add carries (the 9th entry of its first,
-- packed argument), or nil.
local function dedupKeyOf(packedArgs)
  local dedupKey = cmsgpack.unpack(packedArgs)[9]
  if type(dedupKey) ~= 'string' or dedupKey == '' then return nil end
  return dedupKey
end

-- Whether a job a coalesced one would join is there to join: not removed by retention while the
-- result cache's ttl kept its key (BullMQ then dedupes into a job that no longer exists), nor
-- cancelled for its callers (the last of them left it running, or it was cancelled outright), where
-- a join would get its CANCELLED.
local function joinable(id)
  return redis.call('EXISTS', jobKeyPrefix .. id) == 1 and redis.call('EXISTS', own .. 'cancel:' .. id) == 0
end

-- Whether a coalesced job would join one BullMQ holds under its deduplication key (in flight, or
-- finished within the result cache's ttl): a join adds nothing to the lane, its bytes or its
-- tenant's count, so a refusal for room does not apply to it. Read only on such a refusal.
local function joinsInFlight(packedArgs)
  local dedupKey = dedupKeyOf(packedArgs)
  if not dedupKey then return false end
  local current = redis.call('GET', dedupKey)
  return current ~= false and joinable(current)
end

-- Failures a repeat of an idempotency key is answered with again: the request itself is at fault
-- and would fail the same way (failure.ts REPLAYED_FAILURES: keep the two in step). After any
-- other failure (one that told its caller to retry: SHED, DEADLINE_EXCEEDED, RETRIES_EXHAUSTED,
-- CANCELLED, a stall) the repeat runs the job again: the caller's retry is the retry it was told
-- to make, where replaying the failure would answer every retry the same for the job's retention.
local REPLAYED = { PROVIDER_REJECTED = true, SPEND_CAP = true, NEVER_FITS = true, UNKNOWN_MODEL = true, JOB_INVALID = true }

-- Whether the job failed (not completed, not handed to the batch lane) with a failure that is not
-- replayed.
local function failedToRetry(jobKey)
  local job = redis.call('HMGET', jobKey, 'finishedOn', 'failedReason', 'returnvalue')
  if not job[1] or not job[2] or job[2] == '' or (job[3] and job[3] ~= 'null') then return false end
  local code = string.match(job[2], '^([A-Z_]+): ')
  return not (code and REPLAYED[code])
end

-- The failed run under an idempotent id gives the id to the repeat's and keeps its record under
-- an id of its own, `<id>.failed-<its finishedOn>`, in the lane's failed set at its place: Bull
-- Board still shows why it failed, and the lane's retention removes it as any failed job. (Removed
-- instead, the operator lost the failure to the retry.) The key keeps naming one id, so a repeat
-- while the new run waits or runs finds it there, with no mapping that could expire under it.
local function setFailedRunAside(jobId)
  local keptId = jobId .. '.failed-' .. redis.call('HGET', jobKeyPrefix .. jobId, 'finishedOn')
  setRunAside(jobKeyPrefix, own, jobId, keptId, jobKeyPrefix .. 'failed')
end

-- The job's data without its own maxWaitMs, which admission writes as the data's last field
-- (admission.ts maxWaitLast): a caller's deadline is its own, not part of the job it asks for.
local function withoutMaxWait(data)
  return (string.gsub(data, ',"maxWaitMs":[%d.eE+-]+}$', '}', 1))
end

-- Whether a repeat of an idempotency key asks for the job stored under it. Compared by the digest
-- of the job in the one form coalescing reads it in (job-ids.ts idempotencyDigestOf: documented
-- defaults written out or left out, betas in any order, object keys in any order, each caller's own
-- deadline aside), stored with the job as `hrIdem`: byte for byte, a retry from another SDK that
-- writes `"stream": false` was refused as another job. A job stored by a version before the digest
-- has none: its data is compared as then, whole or but for the callers' deadlines (the normalizing
-- lives in TypeScript, one function for coalescing and this, not copied here).
local function sameJob(jobKey, digest, data)
  local stored = redis.call('HMGET', jobKey, 'hrIdem', 'data')
  if stored[1] then return stored[1] == digest end
  return stored[2] == data or (stored[2] ~= false and withoutMaxWait(stored[2]) == withoutMaxWait(data))
end

-- Whether an alias's digest (see rememberJoin) is the repeat's: this version writes the job's
-- idempotency digest (64 hex digits); an alias written before it holds the sha1 of the job's data
-- (40), whole or, later, without its deadline, compared as it was then.
local function sameAliased(aliasDigest, digest, data)
  if #aliasDigest == 64 then return aliasDigest == digest end
  return aliasDigest == redis.sha1hex(withoutMaxWait(data)) or aliasDigest == redis.sha1hex(data)
end

-- An idempotent job that coalesced into another has no job under its own id: the id its key maps
-- to names the job it joined, with the job's idempotency digest, so a repeat of the key finds that job
-- once the coalescing key is gone (the job finished, its result cache over), as a repeat of a key
-- whose job ran finds that job. It lives as long as the job's retention would have kept it (the
-- larger of its completed and failed ages; a week when it gives none): past that, or once the
-- joined job is gone, the key's repeat makes a job of its own, as any key's does.
local ALIAS_DEFAULT_SEC = 7 * 24 * 3600
local function rememberJoin(jobId, target, digest, packedOpts)
  local opts = cmsgpack.unpack(packedOpts)
  local ttl = 0
  for _, retention in ipairs({ opts['removeOnComplete'], opts['removeOnFail'] }) do
    if type(retention) == 'table' and tonumber(retention['age']) then ttl = math.max(ttl, tonumber(retention['age'])) end
  end
  if ttl <= 0 then ttl = ALIAS_DEFAULT_SEC end
  redis.call('SET', own .. 'idem-alias:' .. jobId, target .. '|' .. digest, 'EX', math.ceil(ttl))
end

-- The job an idempotent job's earlier request joined (see rememberJoin), still there, or the BATCH
-- job it was moved to when this lane shed it at admission (admission.ts rememberHandOff), and
-- whether that job is in another lane; -9 and that job's id when the repeat is not the same job
-- (as for a key's own job); -10 and its id when that job is stopping (cancelled as it ran);
-- nil when the key names no joined job.
local function joinedUnder(jobId, digest, data)
  local alias = redis.call('GET', own .. 'idem-alias:' .. jobId)
  if not alias then return nil end
  local target, aliasDigest = string.match(alias, '^(.+)|(%x+)$')
  if not target then return nil end
  -- Another lane is another hash slot, out of this script's reach: the alias lives as long as that
  -- job is kept, and answers the key's repeats as the pointer a worker's hand-off leaves does.
  local elsewhere = string.match(target, '^[^.]+') ~= string.match(jobId, '^[^.]+')
  if not elsewhere and redis.call('EXISTS', jobKeyPrefix .. target) == 0 then return nil end
  if not sameAliased(aliasDigest, digest, data) then return -9, target end
  if elsewhere then return target, true end
  -- A joined job that failed to retry is not this key's answer: the repeat runs afresh.
  if failedToRetry(jobKeyPrefix .. target) then return nil end
  if not joinable(target) and redis.call('HEXISTS', jobKeyPrefix .. target, 'finishedOn') == 0 then return -10, target end
  return target
end

-- A caller joining a job (a coalesced join, a repeat of its idempotency key) with a later start
-- deadline than the job's, or none, moves the job's to its own, counted from the job's enqueue:
-- otherwise the job ended DEADLINE_EXCEEDED at the first caller's deadline for a caller still
-- willing to wait (shared-deadline.ts). Its mark goes in the job's list of its callers' deadlines
-- (includes/shared-deadline.lua), so its leaving can move the deadline back. Only a join pays for
-- this: one hash read and one or two writes, no data decoded. Returns the caller's mark, which
-- names its deadline when it leaves (cancel-3.lua), or '' for a finished job.
local function joinDeadline(jobKey, maxWait, packedArgs)
  local job = redis.call('HMGET', jobKey, 'hrMaxWait', 'timestamp', 'finishedOn', 'opts', 'hrWaits')
  if job[3] then return '' end
  local mark = 'n'
  -- Both times are the producers' BullMQ timestamps, as the worker counts the job's wait.
  if maxWait ~= '' then mark = string.format('%d', tonumber(cmsgpack.unpack(packedArgs)[4]) + tonumber(maxWait) - tonumber(job[2])) end
  redis.call('HSET', jobKey, 'hrWaits', (job[5] or job[1] or 'n') .. ' ' .. mark)
  -- No deadline (none set, or lifted by an earlier caller) is the latest.
  if not job[1] or (mark ~= 'n' and tonumber(mark) <= tonumber(job[1])) then return mark end
  setSharedDeadline(jobKey, mark == 'n' and 'null' or mark, job[4])
  return mark
end

-- ARGV[at..at + 2] are the job's BullMQ add arguments.
local function addOne(jobId, provider, tenant, models, summary, cost, maxWait, digest, at)
  local idempotent = string.find(jobId, '.idem-', 1, true) ~= nil
  -- A shed job's BATCH job (`batch.shed-…`, derived from the shed job's id) is added again under
  -- its id when that job's key is repeated after its batch failed (hand-off-rerun.ts frees the
  -- key): it runs again as a key's own job does, or the new run would be handed to the old failure.
  local handOff = string.find(jobId, '.shed-', 1, true) ~= nil
  local rerun = false
  if redis.call('EXISTS', jobKeyPrefix .. jobId) == 1 then
    -- An idempotency key names one job: a repeat must send that job again. Answering another
    -- request with the first one's result would hand its caller an answer to a question it did
    -- not ask. (Other fixed ids, a shed job's hand-off, are derived from the job itself.)
    if idempotent and not sameJob(jobKeyPrefix .. jobId, digest, ARGV[at + 1]) then
      return -9, '', '', ''
    end
    -- A repeat after a failure that told its caller to retry runs the job again, admitted as a
    -- new job under the id (the failed run's record moves aside, setFailedRunAside; refused, it
    -- stays as it was).
    rerun = (idempotent or handOff) and failedToRetry(jobKeyPrefix .. jobId)
    if idempotent and not rerun and not joinable(jobId) and redis.call('HEXISTS', jobKeyPrefix .. jobId, 'finishedOn') == 0 then
      return -10, jobId, '', ''
    end
    if not rerun then
      -- One more caller shares the job: its leaving must not cancel it for the others (cancel-3.lua).
      redis.call('HINCRBY', jobKeyPrefix .. jobId, 'hrJoins', 1)
      local mark = idempotent and joinDeadline(jobKeyPrefix .. jobId, maxWait, ARGV[at]) or ''
      return 2, '', mark, ''
    end
  end
  if idempotent and not rerun then
    -- On a refusal (-9, -10) the second value is the joined job's id, named in the reply.
    local target, elsewhere = joinedUnder(jobId, digest, ARGV[at + 1])
    if target == -9 then return -9, elsewhere, '', '' end
    if target == -10 then return -10, elsewhere, '', '' end
    if target then
      -- A job in another lane (the BATCH job it was shed to) is out of this script's reach; a
      -- batch job has no start deadline to move.
      local mark = ''
      if not elsewhere then
        redis.call('HINCRBY', jobKeyPrefix .. target, 'hrJoins', 1)
        mark = joinDeadline(jobKeyPrefix .. target, maxWait, ARGV[at])
      end
      return 1, target, mark, ''
    end
  end
  if (idempotent or handOff) and releaseJob(unfinishedKey, usageKey, jobKeyPrefix .. jobId, jobId, false) == 1 and cap then
    -- The id's earlier job, failed or gone, may still be counted: BullMQ's stalled check fails a
    -- job, and Bull Board removes one, without admission's release, which the lane upkeep's walk
    -- gives back later. Given back now (releaseJob leaves an unfinished job counted), before the
    -- room checks: the new job was refused for its own earlier one (a tenant at its max) or,
    -- admitted, overwrote its entry, whose counts were then never given back. One HGET, and only
    -- for a fixed id.
    bytes = tonumber(redis.call('HGET', usageKey, 'bytes') or '0')
  end
  if not cap then return -6, '', '', '' end
  local pool, code, model, owner = poolOf(provider, models)
  if not pool then return code, model, owner or '', '' end
  local baseCost, choices = string.match(cost, '^(%d+)%*(%d+)$')
  if baseCost then
    local uncapped, lost
    cost, uncapped, lost = uncappedCost(models, baseCost, choices)
    if lost then return -6, '', '', '' end
    if not cost then return -8, uncapped, '', '' end
  end
  local jobBytes = #ARGV[at + 1]
  local refused, a, b, c = noRoom(pool, tenant, jobBytes)
  if refused and not joinsInFlight(ARGV[at]) then
    if refused == -4 then
      redis.call('HINCRBY', statsKey, 'shed', 1)
      redis.call('HINCRBY', statsKey, 'shed:refused', 1)
      -- The windowed figures (dashboard, `headroom status`, /metrics) read sheds per minute: the
      -- workers count theirs in the fleet's minute hash, another hash slot, so this lane keeps its
      -- own minute's count (fleet-stats.ts adds it). Redis time was read for the shedding entry.
      local minuteKey = own .. 'shed-refused:' .. math.floor(now() / 60000)
      redis.call('INCR', minuteKey)
      redis.call('EXPIRE', minuteKey, SHED_MINUTE_TTL_SEC)
    end
    return refused, a, b, c
  end
  if rerun then setFailedRunAside(jobId) end
  local added = addStandardJob(KEYS, { ARGV[at], ARGV[at + 1], ARGV[at + 2] })
  if type(added) == 'string' and added ~= jobId and not joinable(added) then
    -- Coalesced into a job that is gone or going: its deduplication key gives way, and this job
    -- is added as a new one. (Room was checked: only a joinable job's join passes a refusal for
    -- room, joinsInFlight.)
    redis.call('DEL', dedupKeyOf(ARGV[at]))
    added = addStandardJob(KEYS, { ARGV[at], ARGV[at + 1], ARGV[at + 2] })
  end
  if type(added) ~= 'string' then
    -- Only a parent-job error returns a code, and lane jobs have no parent: stop loudly.
    error('BullMQ addStandardJob refused job ' .. jobId .. ' with code ' .. tostring(added))
  end
  -- A coalesced job (BullMQ deduplication) did not grow the lane, nor its tenant's count; it
  -- has one more caller sharing it (see the EXISTS path above).
  if added ~= jobId then
    redis.call('HINCRBY', jobKeyPrefix .. added, 'hrJoins', 1)
    local mark = joinDeadline(jobKeyPrefix .. added, maxWait, ARGV[at])
    if idempotent then rememberJoin(jobId, added, digest, ARGV[at + 2]) end
    return 1, added, mark, ''
  end
  if added == jobId then
    -- A key's job cancelled before it started left a note of it (cancel-3.lua): this run is not cancelled.
    if idempotent then redis.call('DEL', own .. 'cancelled:' .. jobId) end
    size = size + 1
    bytes = bytes + jobBytes
    redis.call('HSET', unfinishedKey, jobId, jobBytes .. '|' .. tenant)
    redis.call('HINCRBY', usageKey, 'bytes', jobBytes)
    if tenant ~= '' then redis.call('HINCRBY', usageKey, 'tenant:' .. tenant, 1) end
    -- The job hash's own fields, written in one HSET (they were up to five, one per field).
    local jobKey = jobKeyPrefix .. jobId
    local fields = {}
    if fair then
      -- BullMQ pushed it on the wait list's left end: taking it off there is O(1).
      redis.call('LREM', KEYS[1], 1, jobId)
      local fresh, place = fairPlace(own, jobKeyPrefix, jobId, tenant, math.max(1, tonumber(cost) or 1), weightOf(tenant))
      fields = place
      if fresh then
        -- Its tenant had nothing queued ahead: said in its options, the one place BullMQ's fetch
        -- hands the worker besides the data, so the worker knows without another round trip.
        local opts = redis.call('HGET', jobKey, 'opts') or '{}'
        fields[#fields + 1] = 'opts'
        fields[#fields + 1] = opts == '{}' and '{"hrFresh":1}' or '{"hrFresh":1,' .. string.sub(opts, 2)
      end
    end
    if summary ~= '' then fields[#fields + 1] = 'hrSummary'; fields[#fields + 1] = summary end
    if string.find(models, '\n', 1, true) then fields[#fields + 1] = 'hrLadder'; fields[#fields + 1] = models end
    if maxWait ~= '' then fields[#fields + 1] = 'hrMaxWait'; fields[#fields + 1] = maxWait end
    if idempotent then fields[#fields + 1] = 'hrIdem'; fields[#fields + 1] = digest end
    if #fields > 0 then redis.call('HSET', jobKey, unpack(fields)) end
  end
  -- The first caller's mark is its own maxWaitMs: the job's enqueue is its own.
  return 1, added, maxWait ~= '' and maxWait or 'n', ''
end

local out = {}
for i = 2, #ARGV, 11 do
  local code, a, b, c = addOne(ARGV[i], ARGV[i + 1], ARGV[i + 2], ARGV[i + 3], ARGV[i + 4], ARGV[i + 5], ARGV[i + 6], ARGV[i + 7], i + 8)
  out[#out + 1] = code
  out[#out + 1] = a
  out[#out + 1] = b
  out[#out + 1] = c
end
return out
