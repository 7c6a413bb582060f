--[[
  Keeps a finished run's record under an id of its own, `keptId`, at its place in its finished set,
  so its id is free for a new run and Bull Board still shows the first: a failed run an idempotent
  repeat runs again (add-9.lua, `<id>.failed-<finishedOn>`), the run a worker shed to the batch lane
  when its key's repeat runs again (release-hand-off-3.lua, `<id>.moved-<finishedOn>`). What a
  stream or a cancel left under the id goes: the relay would take an old stream for an earlier
  attempt's answer, a cancel flag would stop the new run.
]]
local function setRunAside(jobKeyPrefix, own, jobId, keptId, finishedKey)
  local jobKey = jobKeyPrefix .. jobId
  local score = redis.call('ZSCORE', finishedKey, jobId)
  redis.call('RENAME', jobKey, jobKeyPrefix .. keptId)
  if redis.call('EXISTS', jobKey .. ':logs') == 1 then redis.call('RENAME', jobKey .. ':logs', jobKeyPrefix .. keptId .. ':logs') end
  if score then
    redis.call('ZREM', finishedKey, jobId)
    redis.call('ZADD', finishedKey, score, keptId)
  end
  redis.call('DEL', own .. 'events:' .. jobId, own .. 'cancel:' .. jobId)
end
