--[[
  A lease one holder keeps by renewing it, in one round trip: taken when nobody holds it, renewed
  when its holder asks again, left alone when another holds it. A ttl of 0 gives it up (only its
  holder's). For work any process may do but one at a time is enough, where two holders for a
  moment do no harm (their writes are the same); the batcher, whose writes must be fenced, has
  its own (worker's batch/leader-lease.ts).

  KEYS[1] the lease (STRING: the holder's id, PX the ttl)
  ARGV[1] the holder's id
  ARGV[2] the ttl in ms, or 0 to give the lease up

  Returns 1 when the holder holds the lease now (or, given up, held it), 0 when another does.
]]
local current = redis.call('GET', KEYS[1])
if current and current ~= ARGV[1] then return 0 end
if ARGV[2] == '0' then
  redis.call('DEL', KEYS[1])
else
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
end
return 1
