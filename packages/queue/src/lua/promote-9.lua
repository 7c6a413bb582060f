--[[
  Brings a delayed job back into its lane now (BullMQ's promote, embedded): to the prioritized
  set by its stored priority (a fair-queued job's round, as when its delay ends), with the lane's
  marker, so an idle worker wakes. A worker holding a tenant's jobs parked behind its quota calls
  it for the next one when the tenant's bucket grants again (the worker's tenant-waits.ts).

  KEYS[1..9] BullMQ promote's keys: delayed, wait, paused, meta, prioritized, active, pc, events, marker
  ARGV[1]    the lane's BullMQ key prefix (`queue.toKey('')`)
  ARGV[2]    job id

  Returns 0  promoted
          -3 the job is not in the delayed set (back already, taken, finished or removed)
]]
--- @bullmq "promote"

return promote(KEYS, ARGV)
