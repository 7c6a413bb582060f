--[[
  Puts a running job back at the front of its lane whatever the lane holds (BullMQ's
  moveJobFromActiveToWait, embedded), and drops its returning entry: for a worker that is
  stopping, whose held job would otherwise come back the same way once its lock lapsed.

  KEYS[1..9] BullMQ moveJobFromActiveToWait's keys: active, wait, stalled, paused, meta, limiter,
             prioritized, marker, events
  ARGV[1..3] its arguments: job id, lock token, job key
  ARGV[4]    the lane's own-key prefix (`{prefix:lane}:hr:`)

  Returns BullMQ's reply: a negative error code, or the limiter's pttl / 0.
]]
--- @bullmq "moveJobFromActiveToWait"

redis.call('ZREM', ARGV[4] .. 'returning', ARGV[1])
return moveJobFromActiveToWait(KEYS, { ARGV[1], ARGV[2], ARGV[3] })
