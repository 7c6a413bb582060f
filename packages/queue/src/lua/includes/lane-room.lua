--[[
  Room in a lane for a job a worker puts back (told to wait for quota, delayed for a retry): the
  lane's cap counts jobs not yet started, and the job left that count when it started, so putting
  it back must be admitted like a new job or the cap is exceeded (a full lane's slot is taken by
  a new job while this one runs).

  A job refused here stays with its worker, which tries again shortly, and is recorded in the
  lane's `returning` zset meanwhile: admission counts it, so the next slot that frees is its own
  rather than a new job's. Its worker refreshes the entry with every attempt; entries older than
  `staleMs` (a worker that died holding the job, whose lock then lapses and whose job BullMQ's
  stalled check puts back) are dropped.

  Returns true when the job may go back (its `returning` entry, if any, removed), else false and
  the refusal: -1 with cap and size (full), or -6 (no settings published: fail closed).
]]
local function laneRoom(own, waitKey, jobId, staleMs)
  local t = redis.call('TIME')
  local nowMs = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
  local returningKey = own .. 'returning'
  redis.call('ZREMRANGEBYSCORE', returningKey, '-inf', nowMs - staleMs)
  local cap = tonumber(redis.call('HGET', own .. 'settings', 'cap') or '')
  if not cap then return false, -6, 0, 0 end
  local mine = redis.call('ZSCORE', returningKey, jobId) and 1 or 0
  -- BullMQ's keys are `<lane><name>`.
  local lane = string.sub(waitKey, 1, -5)
  local size = redis.call('LLEN', waitKey) + redis.call('ZCARD', lane .. 'prioritized') + redis.call('ZCARD', lane .. 'delayed')
    + redis.call('ZCARD', returningKey) - mine
  if size >= cap then
    redis.call('ZADD', returningKey, nowMs, jobId)
    return false, -1, cap, size
  end
  if mine == 1 then redis.call('ZREM', returningKey, jobId) end
  return true
end
