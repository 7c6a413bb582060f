--[[
  Puts a running job back at the front of its lane (BullMQ's moveJobFromActiveToWait, embedded)
  if the lane has room for it under its cap; else leaves it with its worker and records it as
  returning (see includes/lane-room). A fair-queued job goes back to its own place in the lane
  (includes/fair-queue), so jobs put back in whatever order their workers happen to run keep their
  enqueue order; BullMQ would put each at the front of its priority, the last one put back first.

  KEYS[1..9] BullMQ moveJobFromActiveToWait's keys: active, wait, stalled, paused, meta, limiter,
             prioritized, marker, events
  ARGV[1..3] its arguments: job id, lock token, job key
  ARGV[4]    the lane's own-key prefix (`{prefix:lane}:hr:`)
  ARGV[5]    ms after which a returning entry nobody refreshed is dropped

  Returns { 1, BullMQ's reply } moved (BullMQ's reply: a negative error code, or the limiter's
            pttl / 0)
          { -1, cap, size }     the lane is full: the job stays active, recorded as returning
          { -6, 0, 0 }          no fleet settings published: the same, until they are
]]
--- @bullmq "moveJobFromActiveToWait"
--- @include "includes/lane-room"
--- @include "includes/fair-queue"

local ok, code, cap, size = laneRoom(ARGV[4], KEYS[2], ARGV[1], tonumber(ARGV[5]))
if not ok then return { code, cap, size } end
local moved = moveJobFromActiveToWait(KEYS, { ARGV[1], ARGV[2], ARGV[3] })
-- BullMQ wakes no idle worker for a job it puts back into the prioritized set: the marker does.
if moved >= 0 and fairRestore(ARGV[4], string.sub(KEYS[2], 1, -5), ARGV[1]) then redis.call('ZADD', KEYS[8], 0, '0') end
return { 1, moved }
