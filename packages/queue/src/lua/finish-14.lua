--[[
  Ends a running job (BullMQ's moveToFinished, embedded: completed or failed), gives back what
  admission counted for it (includes/release-job) and tells the producer waiting on it, in one
  call: these were two round trips on the path of every job, and the producer read every event of
  the lane (added, waiting, active, completed, drained: five per job, anyone's) to find its own.

  KEYS[1..14] BullMQ moveToFinished's keys, in BullMQ's order (built by BullMQ's
              moveToCompletedArgs / moveToFailedArgs)
  ARGV[1]     the lane's own-key prefix (`{prefix:lane}:hr:`)
  ARGV[2]     the replies stream of the producer waiting on the job (keys.ts `replies`), or ''
  ARGV[3..]   moveToFinished's arguments (8, or 9 with job fields to update)

  The reply is one entry (includes/job-reply): `e` completed | failed, `v` the return value (JSON)
  or the failure text, as BullMQ stores them.

  A coalesced job that failed gives up its deduplication key, which BullMQ keeps for the result
  cache's ttl (`resultCacheTtlMs`) whatever the outcome: a failure is no answer to serve from a
  cache, and a passing one (out of retries in a brownout, cancelled, shed, past its deadline) would
  be handed to callers who never tried. The next identical request runs afresh.

  Returns BullMQ's reply: 0 when the job ended, a negative BullMQ error code when it did not (the
  job is gone, or its lock is not the caller's); nothing is released or sent then.
]]
--- @bullmq "moveToFinished"
--- @include "includes/release-job"
--- @include "includes/job-reply"

local own, replies = ARGV[1], ARGV[2]
local args = {}
for i = 3, #ARGV do args[i - 2] = ARGV[i] end
-- Read before the job's hash may go (removeOnFail).
local dedupId = args[5] == 'failed' and redis.call('HGET', KEYS[12], 'deid')
local ended = moveToFinished(KEYS, args)
if type(ended) == 'number' and ended < 0 then return ended end
if dedupId then
  local dedupKey = args[7] .. 'de:' .. dedupId
  if redis.call('GET', dedupKey) == args[1] then redis.call('DEL', dedupKey) end
end
releaseJob(own .. 'unfinished', own .. 'usage', KEYS[12], args[1])
if replies ~= '' then replyToProducer(replies, args[1], args[5], args[4]) end
return 0
