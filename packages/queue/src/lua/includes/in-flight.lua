--[[
  What the calls in flight may still give back: a grant's output is reserved at `max_tokens` (or
  a learned p95), and most calls settle for far less, so a tokens/min wait counted against those
  reservations may be covered by their refunds before it ends. Each grant that reserves output
  while a tokens/min dimension it draws on is half used or more (acquire.lua: below that no
  wait is near) adds one entry to the pool's in-flight zset, and its settle or release (the one
  way a grant is given back, once: the client dedupes) removes it.

  Member `<reservation id>|<output reserved>|<tenant>`; score: when the entry stops counting (ms,
  Redis time), the grant's time plus its call's longest life. A grant nobody settles (its worker
  died mid-call, its settle was lost with a connection) keeps its charge, as before, and its
  entry simply stops counting then: the count errs toward "nothing comes back", which is the
  bucket's old view, and never grows without bound. A lost key is nothing in flight, never a
  negative count, and a settle of an entry gone removes nothing.
]]

-- A grant's entry, when it reserved output.
local function addInFlight(key, member, output, lifeMs, now)
  if output <= 0 or member == '' then return end
  local ends = now + lifeMs
  redis.call('ZADD', key, ends, member)
  -- An idle pool's key goes with its last grant's entry. A grant with a shorter life than an
  -- older one's (a config change) may take that one with it: nothing in flight is the safe side.
  redis.call('PEXPIRE', key, math.ceil(lifeMs) + 1)
end

-- The output the pool's calls in flight reserved, all of them and those of `tenant` (nil: none).
-- Read only when a tokens/min wait needs it, so a grant pays for its entry only.
local function outputInFlight(key, now, tenant)
  redis.call('ZREMRANGEBYSCORE', key, '-inf', now)
  local all, own = 0, 0
  for _, m in ipairs(redis.call('ZRANGE', key, 0, -1)) do
    local _, _, out, who = string.find(m, '^[^|]*|([^|]*)|(.*)$')
    local n = tonumber(out) or 0
    all = all + n
    if who == tenant then own = own + n end
  end
  return all, own
end
