--[[
  Gives back what admission counted for jobs that are finished or gone (includes/release-job). A
  caller may pass any ids: the producer a job it cancelled, the upkeep every id of a lane a few
  hundred at a time (jobs removed by Bull Board, or failed by BullMQ's stalled check, are found
  that way). A worker's finished job is released by finish-14.lua, in the same call as its finish.

  KEYS[1] the lane's `unfinished` hash (job id -> `bytes|tenant`)
  ARGV[1] the lane's own-key prefix (`usage` is built from it)
  ARGV[2] the lane's BullMQ key prefix (`<lane>`: job hashes are `<lane><id>`)
  ARGV[3..] job ids

  Returns the number of jobs released.
]]
--- @include "includes/release-job"

local usageKey = ARGV[1] .. 'usage'
local released = 0
for i = 3, #ARGV do
  released = released + releaseJob(KEYS[1], usageKey, ARGV[2] .. ARGV[i], ARGV[i])
end
return released
