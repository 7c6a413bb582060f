--[[
  Shared by the bucket scripts. A bucket dimension is stored as the amount `used` at time `ts`;
  with `cap` its per-minute limit (the refill rate), its level at `now` is
  `capacity - max(0, used - (now - ts) * cap / 60000)`, capacity being `cap * burst / 60`, and a
  missing state or field is a full bucket. Storing usage (not level) lets a write leave dimensions it does not know
  the capacity of as they were, and lets a tenant's hash expire the moment it would be full again.
]]

-- Redis time, so the fleet's clocks never matter: ms (fractional) for the maths, µs for replies
-- (a Lua number prints only 14 digits; an integer reply keeps all of them). Clients divide the
-- µs by 1000 exactly as here, so both sides hold bit-identical times.
local function redisNow()
  local t = redis.call('TIME')
  local us = tonumber(t[1]) * 1000000 + tonumber(t[2])
  return us / 1000, us
end

-- A clock that stepped back (failover to a replica) must not count as negative refill.
local function elapsedSince(ts, now)
  if not ts then return 0 end
  local e = now - tonumber(ts)
  if e < 0 then return 0 end
  return e
end

local function usedAt(raw, elapsed, cap)
  if not cap or not raw then return 0 end
  local u = tonumber(raw) - elapsed * cap / 60000
  if u < 0 then return 0 end
  return u
end
