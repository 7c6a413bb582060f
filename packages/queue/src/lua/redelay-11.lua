--[[
  Moves a running job to its lane's delayed set (BullMQ's moveToDelayed, embedded) if the lane has
  room for it under its cap (delayed jobs count: they have not started); else leaves it with its
  worker and records it as returning (see includes/lane-room). A fair-queued job's stored BullMQ
  priority is set to its own round against the lane's current base: BullMQ promotes it by that
  priority when its delay ends (to the back of its round; a rebase meanwhile moves it along).

  KEYS[1..11] BullMQ moveToDelayed's keys: marker, active, prioritized, delayed, job, events, meta,
              stalled, wait, limiter, pc
  ARGV[1..9]  its arguments: key prefix, timestamp, job id, token, delay, skip attempt ('1'),
              fields to update (''), fetch next ('0'), opts ('')
  ARGV[10]    the lane's own-key prefix (`{prefix:lane}:hr:`)
  ARGV[11]    ms after which a returning entry nobody refreshed is dropped
  ARGV[12]    a job parked behind its tenant's tokens/min quota: `<tenant>|<tpm>`, the quota it was
              parked under, kept in its hash as `hrTenantPark` so any worker that serves the tenant
              a higher quota brings it back (tenant-parks.ts); '' or absent: parked for another
              reason, and an earlier mark goes

  Returns { 1, BullMQ's reply } moved (0, or a negative BullMQ error code)
          { -1, cap, size }     the lane is full: the job stays active, recorded as returning
          { -6, 0, 0 }          no fleet settings published: the same, until they are
]]
--- @bullmq "moveToDelayed"
--- @include "includes/lane-room"
--- @include "includes/fair-queue"

local ok, code, cap, size = laneRoom(ARGV[10], KEYS[9], ARGV[3], tonumber(ARGV[11]))
if not ok then return { code, cap, size } end
local round = tonumber(redis.call('HGET', KEYS[5], 'hrRound') or '')
if round then redis.call('HSET', KEYS[5], 'priority', fairPriorityOf(ARGV[10], round)) end
local moved = moveToDelayed(KEYS, { ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5], ARGV[6], ARGV[7], ARGV[8], ARGV[9] })
if moved == 0 then
  if ARGV[12] and ARGV[12] ~= '' then
    redis.call('HSET', KEYS[5], 'hrTenantPark', ARGV[12])
  else
    redis.call('HDEL', KEYS[5], 'hrTenantPark')
  end
end
return { 1, moved }
