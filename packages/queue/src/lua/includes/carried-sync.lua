--[[
  Rate-limit headers carried by a later call to the same pool. Headers may only LOWER a level,
  never raise it: they describe the provider's bucket a moment ago, before calls the fleet has
  already been granted, so a higher `remaining` is old news, not headroom. Limits the provider
  announces are kept as learned limits (see includes/pool-state); acquire paces each dimension by
  the lower of the configured and the learned one (`limitOf`).

  Needs includes/bucket-time and includes/pool-state.
]]

--[[
  `pool` is the pool state as read (2..5 = used at pool[1]; 6..9 = learned limits); changes go into
  it in place, at `now`, without moving its `ts`. `limits`: the configured limits (nil = none);
  `share`: the bucket's capacity per unit of limit (burst / 60). ARGV[at .. at+15]: for rpm, itpm, otpm, tpm
  ('' = not given) the observed limit x4, remaining x4, time until full in ms x4 (used only
  without a remaining), slack x4 (how far the true remaining may exceed the reported one:
  Anthropic rounds token counts to the nearest thousand, and that rounding is not usage).
  Appends the name of each dimension it lowered to `lowered`. Returns whether it lowered a level,
  and whether it learned a limit.
]]
local function syncCarried(pool, limits, share, elapsed, at, statsKey, lowered)
  local SYNC_DIMS = { 'rpm', 'itpm', 'otpm', 'tpm' }
  local changed, learned = false, false
  for j = 1, 4 do
    local observedCap = tonumber(ARGV[at + j - 1])
    if observedCap and observedCap > 0 and observedCap ~= pool[j + 5] then
      local before = limitOf(limits[j], pool[j + 5])
      pool[j + 5] = observedCap
      learned = true
      -- A new limit keeps the level's fullness: the same share of the pool in use, at the new
      -- scale (a level measured against a capacity ten times the new one would wait for ever).
      local after = limitOf(limits[j], observedCap)
      if before and after ~= before and pool[j + 1] then
        pool[j + 1] = usedAt(pool[j + 1], elapsed, before) * after / before + elapsed * after / 60000
      end
    end
    local cap = limitOf(limits[j], pool[j + 5])
    local remaining = tonumber(ARGV[at + 3 + j])
    local untilFull = tonumber(ARGV[at + 7 + j])
    if not remaining and cap and untilFull then
      local full = observedCap or cap
      remaining = full - untilFull * full / 60000
    end
    if cap and remaining then
      local ceiling = remaining + tonumber(ARGV[at + 11 + j])
      if ceiling < 0 then ceiling = 0 end
      local capacity = cap * share
      if capacity - usedAt(pool[j + 1], elapsed, cap) > ceiling then
        pool[j + 1] = capacity - ceiling + elapsed * cap / 60000
        lowered[#lowered + 1] = SYNC_DIMS[j]
        redis.call('HINCRBY', statsKey, 'lowered:' .. SYNC_DIMS[j], 1)
        changed = true
      end
    end
  end
  return changed, learned
end
