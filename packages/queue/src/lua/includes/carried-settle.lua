--[[
  A settle carried by a later call to the same pool. The reservation lives with the client (the
  grant's reply told it which capacities each dimension was charged against), so a settle sends
  its corrections, already worked out, with those capacities: no key is read or deleted. That a
  reservation is refunded once is the client's to keep (the Bucket dedupes, and its connection
  does not resend a command lost in a disconnect). The settle also removes the grant's in-flight
  entry (includes/in-flight): its refund is no longer to come.

  Needs includes/bucket-time and includes/pool-state.
]]

-- Per settle, ten arguments: reported minus charged input, and output (negative = refund), then
-- the capacities input, output, tokens and tenant tokens were charged against (0 = that dimension
-- did not bind at the grant: nothing to correct), then the requests given back (a grant never
-- sent: its request goes back too, and its lane's grant is uncounted), the capacities requests and
-- tenant requests were charged against, the grant's lane index, and its in-flight member ('' =
-- none). Tokens and tenant tokens correct by the sum of input and output.
local SETTLE_ARGS = 11

-- The tenant bucket is a separate key (one per tenant, expiring once full again), so it is
-- corrected in place. A refund only makes it full sooner, so its TTL can stay; a charge may
-- need a longer one.
local function correctTenant(key, field, delta, cap, now)
  local t = redis.call('HMGET', key, 'ts', field)
  local e = elapsedSince(t[1], now)
  local cur = usedAt(t[2], e, cap)
  local new = cur + delta
  if new < 0 then new = 0 end
  if new == cur then return end
  if t[1] then
    redis.call('HSET', key, field, new + e * cap / 60000)
  else
    redis.call('HSET', key, field, new, 'ts', now)
  end
  if new > cur then
    local want = math.ceil(new * 60000 / cap) + 1
    if redis.call('PTTL', key) < want then redis.call('PEXPIRE', key, want) end
  end
end

--[[
  Applies the `n` settles in ARGV from `at` on. `pool` is the pool state as read (index 2..5 = rpm,
  itpm, otpm, tpm used at pool[1]); corrections go into it in place, at `now`, without moving its
  `ts`. A settle with a tenant correction (tokens, requests or both) takes the next of KEYS, from
  `keyAt` on; its in-flight entry leaves `inFlightKey`. Returns whether a pool field changed, and
  the next unused key index.
]]
local function settleCarried(pool, elapsed, now, at, n, keyAt, inFlightKey)
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
    local dIn, dOut = tonumber(ARGV[a]), tonumber(ARGV[a + 1])
    local ki, ko, kt, kn = tonumber(ARGV[a + 2]), tonumber(ARGV[a + 3]), tonumber(ARGV[a + 4]), tonumber(ARGV[a + 5])
    local dReq, kr, knr = tonumber(ARGV[a + 6]), tonumber(ARGV[a + 7]), tonumber(ARGV[a + 8])
    if ARGV[a + 10] ~= '' then redis.call('ZREM', inFlightKey, ARGV[a + 10]) end
    if kr > 0 then correct(2, dReq, kr) end
    if dReq < 0 then
      -- A grant given back was no call: the lane's count of grants is of calls let through.
      local slot = GRANTS_AT + tonumber(ARGV[a + 9])
      if (pool[slot] or 0) > 0 then
        pool[slot] = pool[slot] - 1
        changed = true
      end
    end
    if ki > 0 then correct(3, dIn, ki) end
    if ko > 0 then correct(4, dOut, ko) end
    if kt > 0 then correct(5, dIn + dOut, kt) end
    local tokens, reqs = kn > 0 and dIn + dOut ~= 0, knr > 0 and dReq ~= 0
    if tokens or reqs then
      if tokens then correctTenant(KEYS[keyAt], 'tpm', dIn + dOut, kn, now) end
      if reqs then correctTenant(KEYS[keyAt], 'rpm', dReq, knr, now) end
      keyAt = keyAt + 1
    end
  end
  return changed, keyAt
end
