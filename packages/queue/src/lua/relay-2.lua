--[[
  Appends a streamed job's events to its stream, as the worker receives them from the provider,
  unless the job's caller has cancelled it. The stream is the relay between the worker making the
  call and the producer or gateway waiting on the job: Redis holds what the reader has not read
  yet (at most one answer's events), a reader that reconnects resumes from its last entry id, and
  the key expires ARGV[1] ms after its last write, so an answer nobody reads leaves nothing behind.

  KEYS[1] the job's events stream    KEYS[2] the job's cancel flag

  ARGV[1] ms the stream outlives this write
  ARGV[2] '1' on an attempt's first write, '0' after
  ARGV[3..] the entries in order, each one field/value pair (see job-events.ts); none: only the
          checks, asked by a worker before its provider call (`checkRelay`), nothing written

  Returns
    n    WRITTEN: n entries appended (0: only the checks, passed)
    -1   CANCELLED: the caller cancelled the job; nothing written (the worker stops the call)
    -2   TAKEN: on a first write, an earlier attempt of the job (its worker died mid-stream, or
         lost the job when its lock lapsed) already streamed part of an answer: the reader has
         it, so this attempt must not add a second one; nothing written
    -3   LOST: on a later write, the stream is gone (Redis lost its data: restarted empty, a
         failover to a replica behind); nothing written. Recreated, it would hold the answer's
         rest with new ids past the reader's position: the reader would read on across the gap
         and could end with the provider's last event, as if whole
    -4   CLOSED: on a later write, the stream has already ended (its last entry is an end `d` or an
         error `x`): the job was ended without this attempt, which lost it (its lock lapsed) and
         was given up on by the rerun that followed its relay (the worker's relay-follow.ts), so
         its call stops. Nothing follows a stream's end; nothing written
]]
if redis.call('EXISTS', KEYS[2]) == 1 then return -1 end
local exists = redis.call('EXISTS', KEYS[1]) == 1
if ARGV[2] == '1' and exists then return -2 end
if ARGV[2] == '0' and not exists then return -3 end
if ARGV[2] == '0' then
  local last = redis.call('XREVRANGE', KEYS[1], '+', '-', 'COUNT', 1)[1]
  local field = last and last[2][1]
  if field == 'd' or field == 'x' then return -4 end
end
if #ARGV == 2 then return 0 end
for i = 3, #ARGV, 2 do
  redis.call('XADD', KEYS[1], '*', ARGV[i], ARGV[i + 1])
end
redis.call('PEXPIRE', KEYS[1], ARGV[1])
return (#ARGV - 2) / 2
