--[[
  Holds BATCH jobs under their claim's lock token for another `lockMs`, as BullMQ's extendLocks
  does (the lock set again only where it is still the token's, the job out of the stalled set),
  and marks where each stands for a cancel (cancel-3.lua): a job whose batch the leader is about
  to send is marked `hrBatchSent`, after which no cancel removes it (both providers cancel only a
  whole batch, never one request of it); a job filed into an open claim has the mark cleared (one
  left from an earlier send it went back to the lane from). Mark and cancel run on the job's own
  keys, one after the other: a cancel either removed the job before the mark (it is not sent: its
  lock is gone) or finds it marked.

  KEYS[1]  the lane's stalled set
  ARGV[1]  the lane's job key prefix (`{prefix:batch}:batch:`)
  ARGV[2]  the claim's lock token     ARGV[3]  the lock's new duration (ms)
  ARGV[4]  '1': mark the jobs sent; '0': clear the mark
  ARGV[5..] the job ids

  Returns the ids whose lock is not the token's (gone, cancelled, or lapsed and taken again).
]]
local lost = {}
local token, lockMs, sending = ARGV[2], ARGV[3], ARGV[4] == '1'
for i = 5, #ARGV do
  local id = ARGV[i]
  local jobKey = ARGV[1] .. id
  if redis.call('GET', jobKey .. ':lock') == token then
    redis.call('SET', jobKey .. ':lock', token, 'PX', lockMs)
    redis.call('SREM', KEYS[1], id)
    if sending then redis.call('HSET', jobKey, 'hrBatchSent', '1') else redis.call('HDEL', jobKey, 'hrBatchSent') end
  else
    lost[#lost + 1] = id
  end
end
return lost
