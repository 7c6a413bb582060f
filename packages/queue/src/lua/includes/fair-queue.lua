--[[
  Fair sharing inside a lane: start-time fair queueing by tokens across the tenants with work
  waiting, decided once per job at enqueue and kept in BullMQ's own `prioritized` ZSET, so the
  fetch stays BullMQ's one `moveToActive` round trip (docs/architecture.md, "Fair sharing inside a
  lane").

  A job's start tag is max(its tenant's last finish tag, the lane's virtual time); its tenant's
  finish tag becomes start + cost / weight. The lane's virtual time is the start tag of the job
  at the head of the prioritized set, less one (read at enqueue: no write on fetch). The score
  keeps BullMQ's layout, `priority * 2^32 + low`: the priority is the tag's round of
  FAIR_ROUND_TOKENS counted from the lane's base round (+1), and the low 32 bits are the tag's
  offset in its round (10 bits) then an enqueue counter (22 bits), so the set is in start-tag
  order to the token, ties in enqueue order. A tenant that floods the lane spreads its backlog far ahead in tags; another's
  new job starts just before the head's tag and is next. Nothing idles while any job waits
  (work-conserving): the order changes, never the rate.

  Bounds (BullMQ's priority ceiling is 2^21 - 1, where the score is still an exact double):
  - the base moves up to the head's round whenever the head's priority passes FAIR_REBASE_AT
    (every waiting job is rescored, at most the lane's cap, once per 2^20 rounds: ~1 billion
    tokens of one tenant's backlog), and whenever the lane's set is empty (free);
  - a job more than 2^21 - 1 rounds beyond the base (one tenant holding over 2 billion tokens of
    work, over its weight, in one lane) is clamped to the last priority and offset: it waits in
    enqueue order behind the rest.
  The score never overflows; fairness degrades to FIFO only past that clamp.

  The lane's `<own>fair` HASH: base (the round priority 1 stands for), v (the lane's virtual time,
  tokens), top (the largest finish tag given), seq (the enqueue counter), t:<tenant> (that
  tenant's finish tag; `t:` for jobs without a tenant, one anonymous tenant). A job's hash keeps
  its round and low bits (`hrRound`, `hrLow`), so a job put back takes its place again.
]]
local FAIR_ROUND_TOKENS = 1024
local FAIR_SPAN = 0x100000000
local FAIR_SEQ_SPAN = 0x400000
local FAIR_MAX_PRIORITY = 2097151
local FAIR_REBASE_AT = 1048576

local function fairClamp(p)
  if p < 1 then return 1 end
  if p > FAIR_MAX_PRIORITY then return FAIR_MAX_PRIORITY end
  return p
end

-- The BullMQ priority a job of absolute round `round` has against the lane's current base.
local function fairPriorityOf(own, round)
  local base = tonumber(redis.call('HGET', own .. 'fair', 'base') or '') or round
  return fairClamp(round - base + 1)
end

-- Moves every waiting job `shift` rounds toward priority 1, keeping each one's counter, and the
-- delayed jobs' stored priority with them (BullMQ reads it when it promotes them).
local function fairRebase(prioritizedKey, delayedKey, jobKeyPrefix, shift)
  local entries = redis.call('ZRANGE', prioritizedKey, 0, -1, 'WITHSCORES')
  for i = 1, #entries, 2 do
    local score = tonumber(entries[i + 1])
    local p = math.floor(score / FAIR_SPAN)
    local np = fairClamp(p - shift)
    redis.call('ZADD', prioritizedKey, np * FAIR_SPAN + (score - p * FAIR_SPAN), entries[i])
    redis.call('HSET', jobKeyPrefix .. entries[i], 'priority', np)
  end
  for _, id in ipairs(redis.call('ZRANGE', delayedKey, 0, -1)) do
    local p = tonumber(redis.call('HGET', jobKeyPrefix .. id, 'priority') or '0')
    if p > 0 then redis.call('HSET', jobKeyPrefix .. id, 'priority', fairClamp(p - shift)) end
  end
end

-- Places a job just added to the lane (already out of BullMQ's wait list) in the prioritized set
-- at its fair place. `cost` is its tokens (>= 1), `weight` its tenant's share (> 0). Returns
-- whether its tenant had nothing queued ahead of it (its tag starts at the lane's virtual time):
-- such a job may draw the pool's fair reserve, which queued-up tenants' jobs leave (acquire.lua);
-- then the job hash's fields for its place (`priority`, `hrRound`, `hrLow`), which the caller
-- writes with the job's other fields in one HSET.
local function fairPlace(own, jobKeyPrefix, jobId, tenant, cost, weight)
  local fairKey = own .. 'fair'
  local prioritizedKey = jobKeyPrefix .. 'prioritized'
  local st = redis.call('HMGET', fairKey, 'base', 'v', 'top', 'seq', 't:' .. tenant)
  local base, v, top = tonumber(st[1]), tonumber(st[2]) or 0, tonumber(st[3]) or 0
  local seq, finish = tonumber(st[4]) or 0, tonumber(st[5]) or 0
  local head = redis.call('ZRANGE', prioritizedKey, 0, 0, 'WITHSCORES')
  if #head == 0 then
    -- Nobody waits: nobody is owed anything. Every tenant starts from the largest tag given, and
    -- the tenants' tags (all behind it now) are dropped, so the hash holds only active tenants.
    if top > v then v = top end
    base = math.floor(v / FAIR_ROUND_TOKENS)
    finish = 0
    redis.call('DEL', fairKey)
  else
    base = base or math.floor(v / FAIR_ROUND_TOKENS)
    local headScore = tonumber(head[2])
    local headP = math.floor(headScore / FAIR_SPAN)
    local headOffset = math.floor((headScore - headP * FAIR_SPAN) / FAIR_SEQ_SPAN)
    -- The job in service started at most at the head's tag: a tenant with nothing waiting starts
    -- just before the head, as start-time fair queueing starts it at the tag in service.
    local headStart = (base + headP - 1) * FAIR_ROUND_TOKENS + headOffset
    if headStart - 1 > v then v = headStart - 1 end
    if headP > FAIR_REBASE_AT then
      fairRebase(prioritizedKey, jobKeyPrefix .. 'delayed', jobKeyPrefix, headP - 1)
      base = base + headP - 1
    end
  end
  local start = math.max(finish, v)
  local f = start + math.ceil(cost / weight)
  if f > top then top = f end
  local round = math.floor(start / FAIR_ROUND_TOKENS)
  local offset = start - round * FAIR_ROUND_TOKENS
  local p = round - base + 1
  seq = (seq + 1) % FAIR_SEQ_SPAN
  local low = offset * FAIR_SEQ_SPAN + seq
  if p > FAIR_MAX_PRIORITY then
    low = (FAIR_ROUND_TOKENS - 1) * FAIR_SEQ_SPAN + seq
  elseif p < 1 then
    -- Before the base (a head put back from an older round): first of all.
    low = 0
  end
  p = fairClamp(p)
  redis.call('HSET', fairKey, 'base', base, 'v', v, 'top', top, 'seq', seq, 't:' .. tenant, f)
  redis.call('ZADD', prioritizedKey, p * FAIR_SPAN + low, jobId)
  return finish <= v, { 'priority', p, 'hrRound', round, 'hrLow', low }
end

-- A job put back by BullMQ's moveJobFromActiveToWait sits at the front of its priority (counter
-- 0); this gives it its own place back, so jobs put back in whatever order their workers happen
-- to run keep the order they were enqueued in. Returns true for a fair-queued job.
local function fairRestore(own, jobKeyPrefix, jobId)
  local jobKey = jobKeyPrefix .. jobId
  local place = redis.call('HMGET', jobKey, 'hrRound', 'hrLow')
  local round = tonumber(place[1])
  if not round then return false end
  local base = tonumber(redis.call('HGET', own .. 'fair', 'base') or '') or round
  local p = fairClamp(round - base + 1)
  -- From before the base (the lane emptied or rebased while it ran): ahead of every job since.
  local low = round < base and 0 or tonumber(place[2])
  redis.call('ZADD', jobKeyPrefix .. 'prioritized', 'XX', p * FAIR_SPAN + low, jobId)
  redis.call('HSET', jobKey, 'priority', p)
  return true
end
