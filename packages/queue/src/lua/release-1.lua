--[[
  Gives back what admission counted for jobs that are finished or gone: their bytes, and one of
  their tenant's unfinished jobs. A job still unfinished (waiting, delayed, running, or put back
  by its worker) is left counted, so a caller may pass any ids: the worker the ids of the jobs it
  just finished, the producer a job it cancelled, the upkeep every id of a lane a few hundred at
  a time (jobs removed by Bull Board, or failed by BullMQ's stalled check, are found that way).

  Idempotent: an entry of `unfinished` is removed once, and only its removal gives back, so the
  counters stay in step whoever calls and however often. A tenant's field is removed when it
  falls to 0: an idle tenant leaves no key and no field behind.

  KEYS[1] the lane's `unfinished` hash (job id -> `bytes|tenant`)
  ARGV[1] the lane's own-key prefix (`usage` is built from it)
  ARGV[2] the lane's BullMQ key prefix (`<lane>`: job hashes are `<lane><id>`)
  ARGV[3..] job ids

  Returns the number of jobs released.
]]
local usageKey = ARGV[1] .. 'usage'
local jobKeyPrefix = ARGV[2]
local released = 0
for i = 3, #ARGV do
  local id = ARGV[i]
  local entry = redis.call('HGET', KEYS[1], id)
  if entry then
    local key = jobKeyPrefix .. id
    if redis.call('EXISTS', key) == 0 or redis.call('HEXISTS', key, 'finishedOn') == 1 then
      redis.call('HDEL', KEYS[1], id)
      local sep = string.find(entry, '|', 1, true)
      local bytes = tonumber(string.sub(entry, 1, sep - 1)) or 0
      local tenant = string.sub(entry, sep + 1)
      if bytes > 0 and redis.call('HINCRBY', usageKey, 'bytes', -bytes) <= 0 then
        redis.call('HDEL', usageKey, 'bytes')
      end
      if tenant ~= '' and redis.call('HINCRBY', usageKey, 'tenant:' .. tenant, -1) <= 0 then
        redis.call('HDEL', usageKey, 'tenant:' .. tenant)
      end
      released = released + 1
    end
  end
end
return released
