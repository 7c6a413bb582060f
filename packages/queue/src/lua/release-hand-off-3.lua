--[[
  Frees an idempotency key whose job was shed to the BATCH lane (`onShed: 'batch'`) once that
  BATCH job failed with a failure that tells its caller to resubmit (expired, errored, canceled:
  not one of failure.ts REPLAYED_FAILURES). The BATCH job lives in another hash slot: the caller
  (hand-off-rerun.ts) read it first; this script only acts while the key still points at that very
  job, so of two repeats racing, the second finds the first's new run and leaves it alone.

  Two pointers lead a key's repeat to the BATCH job, and either is taken away:
  - the run a worker shed while it waited, completed with `{"movedTo":"<batch id>",...}`: its record
    is kept as `<id>.moved-<its finishedOn>` at its place in the lane's completed set
    (includes/run-aside.lua), so the id is free for the repeat's new run and Bull Board still shows
    where the first went;
  - the alias admission left when the lane shed the job at enqueue (admission.ts rememberHandOff,
    `<job id>|<digest>`): deleted.

  KEYS[1] the job hash `<lane><id>`, KEYS[2] the lane's completed zset, KEYS[3] the key's alias
    `<own>idem-alias:<id>`
  ARGV[1] the job id, ARGV[2] the BATCH job id, ARGV[3] the lane's own-key prefix
  Returns 1 when a pointer to that BATCH job was taken away, 0 when the key points elsewhere (or nowhere)
]]
--- @include "includes/run-aside"

local jobKey, completedKey, aliasKey = KEYS[1], KEYS[2], KEYS[3]
local jobId, target, own = ARGV[1], ARGV[2], ARGV[3]
local released = 0

local job = redis.call('HMGET', jobKey, 'finishedOn', 'returnvalue')
if job[1] and job[2] and string.find(job[2], '"movedTo":"' .. target .. '"', 1, true) then
  setRunAside(string.sub(jobKey, 1, #jobKey - #jobId), own, jobId, jobId .. '.moved-' .. job[1], completedKey)
  released = 1
end

local alias = redis.call('GET', aliasKey)
if alias and string.match(alias, '^(.+)|%x+$') == target then
  redis.call('DEL', aliasKey)
  released = 1
end

return released
