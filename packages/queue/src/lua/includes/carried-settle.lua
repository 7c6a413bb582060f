--[[
  A settle carried by a later call to the same pool. The reservation lives with the client (the
  grant's reply told it which capacities each dimension was charged against), so a settle sends
  its corrections, already worked out, with those capacities: no key is read or deleted. That a
  reservation is refunded once is the client's to keep (the Bucket dedupes, and its connection
  does not resend a command lost in a disconnect).

  Needs includes/bucket-time.
]]

-- Per settle, eight arguments: the corrections to input, output, tokens and tenant tokens
-- (negative = refund; 0 where the dimension did not bind at the grant), then the capacities those
-- four were charged against.
local SETTLE_ARGS = 8

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
  Applies the `n` settles in ARGV from `at` on. `pool` is the pool state as read (index 2..5 = rpm,
  itpm, otpm, tpm used at pool[1]); corrections go into it in place, at `now`, without moving its
  `ts`. A settle with a tenant correction takes the next of KEYS, from `keyAt` on. Returns
  whether a pool field changed, and the next unused key index.
]]
local function settleCarried(pool, elapsed, now, at, n, keyAt)
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
  for a = at, at + (n - 1) * SETTLE_ARGS, SETTLE_ARGS do
    correct(3, tonumber(ARGV[a]), tonumber(ARGV[a + 4]))
    correct(4, tonumber(ARGV[a + 1]), tonumber(ARGV[a + 5]))
    correct(5, tonumber(ARGV[a + 2]), tonumber(ARGV[a + 6]))
    local dn = tonumber(ARGV[a + 3])
    if dn ~= 0 then
      correctTenant(KEYS[keyAt], dn, tonumber(ARGV[a + 7]), now)
      keyAt = keyAt + 1
    end
  end
  return changed, keyAt
end
