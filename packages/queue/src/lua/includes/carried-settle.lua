--[[
  A settle carried by a later call to the same pool. The reservation key holds what the grant
  charged; GETDEL makes a repeated settle (a command resent after a reconnect, or the same
  reservation handed in twice) find nothing and refund nothing more. A reservation already gone
  (expired: a call slower than its TTL) keeps its charge, which errs on the safe side.

  Needs includes/bucket-time.
]]

-- The tenant bucket is a separate key (one per tenant, expiring once full again), so it is
-- corrected in place. A refund only makes it full sooner, so its TTL can stay; a charge may
-- need a longer one.
local function correctTenant(key, delta, cap, now)
  local t = redis.call('HMGET', key, 'ts', 'tpm')
  local e = elapsedSince(t[1], now)
  local cur = usedAt(t[2], e, cap)
  local new = cur + delta
  if new < 0 then new = 0 end
  if new == cur then return end
  if t[1] then
    redis.call('HSET', key, 'tpm', new + e * cap / 60000)
  else
    redis.call('HSET', key, 'tpm', new, 'ts', now)
  end
  if new > cur then
    local want = math.ceil(new * 60000 / cap) + 1
    if redis.call('PTTL', key) < want then redis.call('PEXPIRE', key, want) end
  end
end

--[[
  Applies one settle. `pool` is the pool hash as read (index 2..5 = rpm, itpm, otpm, tpm used at
  pool[1]); corrections go into it in place, at `now`, without moving its `ts`, against the
  capacities the grant was charged against (0 = the dimension did not bind: no correction).
  Appends { 1, dInput, dOutput, dTokens, dTenantTokens } or { 0, 0, 0, 0, 0 } to `reply`.
  Returns true when a pool field changed.
]]
local function settleCarried(pool, elapsed, now, resKey, tenantKey, statsKey, input, output, reply)
  local raw = redis.call('GETDEL', resKey)
  local n = #reply
  if not raw then
    redis.call('HINCRBY', statsKey, 'settle:expired', 1)
    reply[n + 1], reply[n + 2], reply[n + 3], reply[n + 4], reply[n + 5] = 0, 0, 0, 0, 0
    return false
  end
  -- the capacities input, output, tokens and tenant tokens were charged against, then the input
  -- and output charged (see the grant in acquire)
  local ki, ko, kt, kn, ci, co = struct.unpack('dddddd', raw)
  input, output = tonumber(input), tonumber(output)
  local di, dout, dt, dn = 0, 0, 0, 0
  if ki > 0 then di = input - ci end
  if ko > 0 then dout = output - co end
  if kt > 0 then dt = input + output - ci - co end
  if kn > 0 then dn = input + output - ci - co end

  local changed = false
  local function correct(field, delta, cap)
    if delta == 0 then return end
    local cur = usedAt(pool[field], elapsed, cap)
    local new = cur + delta
    if new < 0 then new = 0 end
    if new ~= cur then
      pool[field] = new + elapsed * cap / 60000
      changed = true
    end
  end
  correct(3, di, ki)
  correct(4, dout, ko)
  correct(5, dt, kt)
  if dn ~= 0 then correctTenant(tenantKey, dn, kn, now) end

  reply[n + 1], reply[n + 2], reply[n + 3], reply[n + 4], reply[n + 5] = 1, di, dout, dt, dn
  return changed
end
