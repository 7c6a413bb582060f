--[[
  Gives back what admission counted for one job that is finished or gone: its bytes, and one of its
  tenant's unfinished jobs. A job still unfinished (waiting, delayed, running, or put back by its
  worker) is left counted. Idempotent: the job's entry in `unfinished` is removed once, and only
  its removal gives back, so the counters stay in step whoever calls and however often. A tenant's
  field is removed when it falls to 0: an idle tenant leaves no key and no field behind.

  `ended`: the caller has just finished or removed the job in this same call (finish-14,
  cancel-3), so it is not asked again whether the job is still unfinished: two reads off the path
  of every job.

  Returns 1 when the job was released now, else 0.
]]
local function releaseJob(unfinishedKey, usageKey, jobKey, id, ended)
  local entry = redis.call('HGET', unfinishedKey, id)
  if not entry then return 0 end
  if not ended and redis.call('EXISTS', jobKey) == 1 and redis.call('HEXISTS', jobKey, 'finishedOn') == 0 then return 0 end
  redis.call('HDEL', unfinishedKey, id)
  local sep = string.find(entry, '|', 1, true)
  local bytes = tonumber(string.sub(entry, 1, sep - 1)) or 0
  local tenant = string.sub(entry, sep + 1)
  if bytes > 0 and redis.call('HINCRBY', usageKey, 'bytes', -bytes) <= 0 then
    redis.call('HDEL', usageKey, 'bytes')
  end
  if tenant ~= '' and redis.call('HINCRBY', usageKey, 'tenant:' .. tenant, -1) <= 0 then
    redis.call('HDEL', usageKey, 'tenant:' .. tenant)
  end
  return 1
end
