--[[
  Cancels a job that has not started, in one call: BullMQ's removeJob (the job out of its list or
  set and its hash gone, the lane's `removed` event), the release of what admission counted for it
  (its bytes, its tenant's slot), a short-lived note of why it ended (keys.ts `jobCancelled`: the
  failure its waiters are told, CANCELLED, where the job's absence alone reads JOB_NOT_FOUND), and
  a `removed` entry in the replies stream of the producer waiting on it (its `hrReplyTo` option:
  keys.ts `replies`), so a waiter in any process learns at once, not at its next sweep. A job that has started (its lock held, or in the active list: a
  running, held or batch-parked job) is left alone: its caller is told, and stops it another way.
  Except a BATCH job its leader holds in a claim not yet sent (ARGV[9]): nothing went to the
  provider, so it is removed as a waiting job is (its lock dropped first, so BullMQ's removeJob
  takes it out of `active`); the leader finds it gone and sends its batch without it. Once the
  leader has marked it for sending (`hrBatchSent`, batch-park-1.lua, in a call on these same keys
  before it asks the provider) it is left to its batch.

  KEYS[1]  the job's hash           KEYS[2]  the lane's repeat key (BullMQ's removeJob)
  KEYS[3]  the lane's active list
  ARGV[1]  the job id               ARGV[2]  the lane's BullMQ key prefix (`{prefix:lane}:lane:`)
  ARGV[3]  the lane's own-key prefix (`{prefix:lane}:hr:`)
  ARGV[4]  '0': cancel the job for every caller. '1': the caller only stops waiting: a job other
           callers share (an idempotent repeat or a coalesced join counted it in `hrJoins`,
           add-9.lua) gives back one share and stays, so one client leaving does not cut off the
           others' answer; otherwise it is cancelled. '2': as '1', but only if the job has not
           started: a caller whose start deadline passed leaves a job still waiting, and waits on
           for one that has started (its share kept, so the others' leaving cannot stop it).
           '3': as '2', for a caller's start deadline: a job a worker took before (put back to
           wait for its bucket or its retry: it has `processedOn`) and no one else shares is left
           to its worker, which ends it at the deadline with its attempts on record; only a job
           never taken is removed (no call was made for it).
  ARGV[5]  the failure (JSON) a removed job's waiters are told, kept under `<own>cancelled:<id>`
  ARGV[6]  how long that note lives (ms)
  ARGV[7]  how long the cancel flag of a started job lives (ms), or '' to leave a started job
           unflagged (the batch lane: nothing there reads the flag)
  ARGV[8]  the leaving caller's deadline mark (add-9.lua's reply), or '': a caller that gives back
           its share of a job still waiting takes its mark out of the job's list of its callers'
           deadlines, and the job's deadline moves to the latest of those left
           (includes/shared-deadline.lua). Without it the job waited, its slot in its lane held,
           until the deadline of a caller no longer there, and could then be run for nobody.
  ARGV[9]  '1' for the BATCH lane: a started job not marked `hrBatchSent` is removed (modes '0'
           and '1'), not left running

  Returns 1 removed, 0 started (left running), -1 finished already, -2 no such job, 2 shared (kept
  for the callers still sharing it), 3 started and flagged cancelled (`<own>cancel:<id>`: its
  worker stops it; the caller publishes on the fleet's cancel channel to stop it at once).
  The flag is set here, in the call that found no other share, not by the caller after: a join
  (add-9.lua `joinable`) landing between the two would have passed, added its share, and then been
  stopped by the flag with the job it joined.
]]
--- @bullmq "removeJob"
--- @include "includes/release-job"
--- @include "includes/job-reply"
--- @include "includes/shared-deadline"

local jobKey, id, bullPrefix, own = KEYS[1], ARGV[1], ARGV[2], ARGV[3]
if redis.call('EXISTS', jobKey) == 0 then return -2 end
if redis.call('HEXISTS', jobKey, 'finishedOn') == 1 then return -1 end
local function started() return redis.call('EXISTS', jobKey .. ':lock') == 1 or redis.call('LPOS', KEYS[3], id) end
if (ARGV[4] == '2' or ARGV[4] == '3') and started() then return 0 end
if ARGV[4] ~= '0' and tonumber(redis.call('HGET', jobKey, 'hrJoins') or '0') > 0 then
  redis.call('HINCRBY', jobKey, 'hrJoins', -1)
  leaveSharedDeadline(jobKey, ARGV[8] or '')
  return 2
end
if started() then
  if ARGV[9] == '1' and redis.call('HEXISTS', jobKey, 'hrBatchSent') == 0 then
    redis.call('DEL', jobKey .. ':lock')
    redis.call('SREM', bullPrefix .. 'stalled', id)
  else
    if ARGV[7] == '' then return 0 end
    redis.call('SET', own .. 'cancel:' .. id, '1', 'PX', ARGV[7])
    return 3
  end
end
if ARGV[4] == '3' and redis.call('HEXISTS', jobKey, 'processedOn') == 1 then return 0 end

-- Read before the hash goes: where the job's result was to be sent.
local replyTo
local ok, opts = pcall(cjson.decode, redis.call('HGET', jobKey, 'opts') or '{}')
if ok and type(opts) == 'table' and type(opts.hrReplyTo) == 'string' and opts.hrReplyTo ~= '' then replyTo = opts.hrReplyTo end

if removeJob({jobKey, KEYS[2]}, {id, '1', bullPrefix}) ~= 1 then return 0 end
releaseJob(own .. 'unfinished', own .. 'usage', jobKey, id, true)
redis.call('SET', own .. 'cancelled:' .. id, ARGV[5], 'PX', ARGV[6])
if replyTo then replyToProducer(own .. 'replies:' .. replyTo, id, 'removed', '') end
return 1
