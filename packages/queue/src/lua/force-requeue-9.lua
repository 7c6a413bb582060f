--[[
  Puts a running job back at the front of its lane whatever the lane holds (BullMQ's
  moveJobFromActiveToWait, embedded), and drops its returning entry: for a worker that is
  stopping, whose held job would otherwise come back the same way once its lock lapsed. A
  fair-queued job takes its own place again (includes/fair-queue), as in requeue-9.lua.

  KEYS[1..9] BullMQ moveJobFromActiveToWait's keys: active, wait, stalled, paused, meta, limiter,
             prioritized, marker, events
  ARGV[1..3] its arguments: job id, lock token, job key
  ARGV[4]    the lane's own-key prefix (`{prefix:lane}:hr:`)

  Returns BullMQ's reply: a negative error code, or the limiter's pttl / 0.
]]
--- @bullmq "moveJobFromActiveToWait"
--- @include "includes/fair-queue"

redis.call('ZREM', ARGV[4] .. 'returning', ARGV[1])
local moved = moveJobFromActiveToWait(KEYS, { ARGV[1], ARGV[2], ARGV[3] })
if moved >= 0 and fairRestore(ARGV[4], string.sub(KEYS[2], 1, -5), ARGV[1]) then redis.call('ZADD', KEYS[8], 0, '0') end
return moved
