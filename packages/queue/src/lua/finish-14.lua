--[[
  Ends a running job (BullMQ's moveToFinished, embedded: completed or failed), gives back what
  admission counted for it (includes/release-job) and tells the producer waiting on it, in one
  call: these were two round trips on the path of every job, and the producer read every event of
  the lane (added, waiting, active, completed, drained: five per job, anyone's) to find its own.

  KEYS[1..14] BullMQ moveToFinished's keys, in BullMQ's order (built by BullMQ's
              moveToCompletedArgs / moveToFailedArgs)
  ARGV[1]     the lane's own-key prefix (`{prefix:lane}:hr:`)
  ARGV[2]     the replies stream of the producer waiting on the job (keys.ts `replies`), or ''
  ARGV[3]     a coalesced job's deduplication key, or ''
  ARGV[4]     how long that key serves the job's result once it completed (its `hrCacheTtl`
              option, the producer's `resultCacheTtlMs`), or ''
  ARGV[5]     the field of an entry ending a streamed job's events (`<own>events:<job id>`): the
              error entry a stream that failed after its first event ends with (job-events.ts), or ''
  ARGV[6]     that entry's value, or ''
  ARGV[7]     ms that stream outlives this write (job-events.ts RELAY_TTL_MS), or ''
  ARGV[8..]   moveToFinished's arguments (8, or 9 with job fields to update)

  The reply is one entry (includes/job-reply): `e` completed | failed, `v` the return value (JSON)
  or the failure text, as BullMQ stores them.

  A coalesced job's deduplication key has no expiry while the job is in flight (identical requests
  join it however long it waits or runs), and BullMQ deletes it when the job ends. A completed job
  with a result cache keeps it from then on for the cache's ttl: identical requests get its result.
  A failed one gives it up: a failure is no answer to serve from a cache, and a passing one (out of
  retries in a brownout, cancelled, shed, past its deadline) would be handed to callers who never
  tried. (BullMQ's own ttl counts from the add: a job waiting longer than it stopped coalescing.)

  Returns BullMQ's reply: 0 when the job ended, a negative BullMQ error code when it did not (the
  job is gone, or its lock is not the caller's); nothing is released or sent then.
]]
--- @bullmq "moveToFinished"
--- @include "includes/release-job"
--- @include "includes/job-reply"

local own, replies, dedupKey, cacheTtl = ARGV[1], ARGV[2], ARGV[3], tonumber(ARGV[4])
local lastField, lastValue, relayTtl = ARGV[5], ARGV[6], ARGV[7]
local args = {}
for i = 8, #ARGV do args[i - 7] = ARGV[i] end
-- Whether the key is this job's (read before BullMQ's move, which deletes one without expiry).
local ownsKey = dedupKey ~= '' and redis.call('GET', dedupKey) == args[1]
local ended = moveToFinished(KEYS, args)
if type(ended) == 'number' and ended < 0 then return ended end
if ownsKey then
  if args[5] == 'failed' then
    redis.call('DEL', dedupKey)
  elseif cacheTtl then
    redis.call('SET', dedupKey, args[1], 'PX', cacheTtl)
  end
end
releaseJob(own .. 'unfinished', own .. 'usage', KEYS[12], args[1], true)
if lastField ~= '' then
  local events = own .. 'events:' .. args[1]
  redis.call('XADD', events, '*', lastField, lastValue)
  redis.call('PEXPIRE', events, relayTtl)
end
if replies ~= '' then replyToProducer(replies, args[1], args[5], args[4]) end
return 0
