--[[
  The pool's state as one string of fourteen little-endian doubles: `ts`, then the amount used at
  `ts` of rpm, itpm, otpm and tpm, then the limits learned from the providers' headers for the
  same four (0 = none learned), then the grants per lane (critical, high, normal, low, batch).
  One GET and one SET with no number printed or parsed: the hash this replaces (HMGET/HSET of
  float fields) cost about twice as much on the hot path, and counting grants here saves the
  HINCRBY a grant made on the stats hash.

  As a table: [1] ts (nil = no state: a full bucket), [2..5] used, [6..9] learned limits (nil =
  none), [10..14] grants.
]]

local POOL_FORMAT = '<dddddddddddddd'
local GRANTS_AT = 10

-- A dimension's per-minute limit: the lower of the configured one and the one the provider last
-- announced (nil = neither: the dimension does not bind). A config above the announced limit is
-- wrong (a tier copied from the docs, a limit the provider lowered), and pacing by it would refill
-- the bucket faster than the provider does and measure the lane reserves against capacity that
-- does not exist; a config below it is the operator keeping headroom for other callers.
local function limitOf(configured, learned)
  if configured and learned then return math.min(configured, learned) end
  return configured or learned
end

local function readPool(key)
  local raw = redis.call('GET', key)
  if not raw then return {} end
  local p = { struct.unpack(POOL_FORMAT, raw) }
  for j = 6, 9 do
    if p[j] == 0 then p[j] = nil end
  end
  return p
end

local function writePool(key, p)
  redis.call('SET', key, struct.pack(POOL_FORMAT, p[1], p[2] or 0, p[3] or 0, p[4] or 0, p[5] or 0,
    p[6] or 0, p[7] or 0, p[8] or 0, p[9] or 0, p[10] or 0, p[11] or 0, p[12] or 0, p[13] or 0, p[14] or 0))
end
