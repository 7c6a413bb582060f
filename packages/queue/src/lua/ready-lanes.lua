--[[
  How many jobs each lane could hand a fetch now, in one round trip for all of them: its wait
  list, its prioritized set (a fair lane's jobs) and its delayed jobs already due, which BullMQ's
  fetch promotes; 0 for a paused lane. The dispatcher asks this instead of running BullMQ's fetch
  on each lane in turn to find them empty (lane-fetch.ts).

  A lane found empty also loses its stale base marker: BullMQ's fetch sets the marker after every
  job it takes, whether or not more are waiting, so an idle worker would wake at once for
  nothing. Any job added later sets it again; a delay marker (a due time) is left alone.

  KEYS per lane, in order: wait, prioritized, delayed, marker, meta (5 each; one Redis node: the
  lanes' keys are in different cluster slots, so a Cluster does not call this)
  ARGV[1] now (epoch ms, the clock BullMQ's fetch promotes delayed jobs by)

  Returns one count per lane, in KEYS order.
]]
local dueScore = (tonumber(ARGV[1]) + 1) * 0x1000 - 1
local out = {}
for i = 1, #KEYS, 5 do
  local ready = redis.call('LLEN', KEYS[i]) + redis.call('ZCARD', KEYS[i + 1]) + redis.call('ZCOUNT', KEYS[i + 2], 0, dueScore)
  -- Paused is asked only of a lane with work: most lanes asked about are empty, and an empty lane
  -- has nothing to hand a fetch paused or not (BullMQ's pause deletes the marker, so the ZREM
  -- finds none in a paused lane).
  if ready == 0 then
    redis.call('ZREM', KEYS[i + 3], '0')
  elseif redis.call('HEXISTS', KEYS[i + 4], 'paused') == 1 then
    ready = 0
  end
  out[#out + 1] = ready
end
return out
