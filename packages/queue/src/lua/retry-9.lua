--[[
  Sends a finished job (completed or failed) back to its lane, as Bull Board's "retry" does, but
  only if admission would take it as a new job: the fleet's settings are published, the lane is
  under its cap of jobs not yet started, its unfinished jobs under the byte cap, and the tenant
  under its max. Admitted, it is moved by BullMQ's own reprocessJob (embedded) and counted as
  unfinished again, exactly as a new job is. Bull Board's own retry would put any number of jobs
  into a full lane and send them all to the provider again.

  KEYS[1..9] BullMQ reprocessJob's keys: job, events, the state's set (completed / failed), wait,
             meta, active, marker, prioritized, pc
  ARGV[1..6] its arguments: job id, 'LPUSH' / 'RPUSH', the field to clear ('returnvalue' /
             'failedReason'), the state, reset attemptsMade ('1' / '0'), reset attemptsStarted
  ARGV[7]    the lane's own-key prefix (`{prefix:lane}:hr:`)
  ARGV[8]    the job's tenant, or ''

  Returns { 1 }                 sent back
          { -1, cap, size }     QUEUE_FULL
          { -5, max }           QUOTA_EXCEEDED: the tenant holds its max of unfinished jobs
          { -6 }                no fleet settings published (fail closed)
          { -7, maxBytes, bytes, jobBytes }  QUEUE_FULL by bytes
          { -8, code }          BullMQ refused it (code -1: no such job; -3: not in that state)
]]
--- @bullmq "reprocessJob"
--- @include "includes/fair-queue"

local own, tenant, jobId, jobKey = ARGV[7], ARGV[8], ARGV[1], KEYS[1]
local settings = redis.call('HMGET', own .. 'settings', 'cap', 'maxBytes', 'tenantMax:' .. tenant, 'tenantMax:*')
local cap = tonumber(settings[1])
if not cap then return { -6 } end
local lane = string.sub(KEYS[4], 1, -5)
local size = redis.call('LLEN', KEYS[4]) + redis.call('ZCARD', KEYS[8]) + redis.call('ZCARD', lane .. 'delayed')
  + redis.call('ZCARD', own .. 'returning')
if size >= cap then return { -1, cap, size } end
local usageKey = own .. 'usage'
local maxBytes = tonumber(settings[2])
local jobBytes = redis.call('HSTRLEN', jobKey, 'data')
local bytes = tonumber(redis.call('HGET', usageKey, 'bytes') or '0')
if maxBytes and bytes + jobBytes > maxBytes then return { -7, maxBytes, bytes, jobBytes } end
if tenant ~= '' then
  local max = tonumber(settings[3] or settings[4] or '0')
  if max > 0 and tonumber(redis.call('HGET', usageKey, 'tenant:' .. tenant) or '0') >= max then return { -5, max } end
end
-- A fair-queued job goes back by its own round against the lane's current base (BullMQ adds it by
-- its stored priority, which a rebase since may have left behind).
local round = tonumber(redis.call('HGET', jobKey, 'hrRound') or '')
if round then redis.call('HSET', jobKey, 'priority', fairPriorityOf(own, round)) end
local moved = reprocessJob(KEYS, { ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5], ARGV[6] })
if moved ~= 1 then return { -8, moved } end
-- Counted as unfinished again, once (a job still counted is not counted twice).
if redis.call('HSETNX', own .. 'unfinished', jobId, jobBytes .. '|' .. tenant) == 1 then
  redis.call('HINCRBY', usageKey, 'bytes', jobBytes)
  if tenant ~= '' then redis.call('HINCRBY', usageKey, 'tenant:' .. tenant, 1) end
end
return { 1 }
