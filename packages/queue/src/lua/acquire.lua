--[[
  One provider call's whole cost to the bucket in one script: applies what the calling worker
  learned since its last call to this pool (its settles, the latest rate-limit headers and the
  outcomes of its calls), then acquires the next call's need from every dimension of the pool
  (and of its tenant), the model's cooldown, its adaptive throttle and, for a retry, its retry
  budget at once, or from none. Settles, headers and outcomes go first, so a worker's own refunds,
  charges and failures are never behind its own grants. Without an acquire part it only applies
  them (the idle flush and `settle(..., { immediate: true })`).

  Checking and charging in one script is what keeps separate limits from charging some
  dimensions and refusing others. A dimension refills continuously at limit/60 per second, and
  holds at most `burst` seconds of that (capacity = limit * burst / 60; burst 60 = one minute's
  quota), so over any window of W seconds it grants at most limit * (burst + W) / 60. A lane may
  draw only while every dimension it draws from
  stays at or above `reserve * capacity` after the charge, so lower lanes leave headroom for
  higher ones without losing throughput (the refill rate, not the burst, sets throughput). The
  throttle and the budget keep lanes' reserves the same way (see includes/model-throttle). Inside
  a fair lane, a job whose tenant had work queued ahead of it also leaves `fairReserve *
  capacity`, so a tenant with nothing queued is served from it at once rather than racing a
  flood's jobs for each refill.

  This runs once per provider call on every worker, so Redis' CPU per call bounds the fleet:
  there is one read and one write of the pool state (packed, so no number is printed or parsed),
  one of the model's throttle field, and no table or closure is made that the call does not
  need. Arguments stay text: a binary argument puts ioredis in its buffer mode, which costs the
  client more than parsing costs here.

  KEYS[1] pool state: one string of packed doubles (see includes/pool-state)
  KEYS[2] cooldowns zset (model -> end ms)
  KEYS[3] stats hash (counters of waits, never-fits, headers; grants are counted in the state)
  KEYS[4] throttle hash (model -> packed throttle and retry-budget state, see includes/model-throttle)
  KEYS[5] in-flight zset: the output each grant not yet settled reserved (see includes/in-flight)
  KEYS[6..] the tenant bucket of each carried settle with a tenant correction, in order; then,
          last, the tenant bucket of the acquire when it has tenant limits
  The key count varies per call (no padding); every key names the pool's slot.

  ARGV[1..4]  configured limit for rpm, itpm, otpm, tpm ('' = none); a learned limit below it
              binds instead, and with neither the dimension does not bind
  ARGV[5]     burst: the seconds of quota each dimension holds ('' = 60)
  ARGV[6]     number of carried settles, n
  ARGV[7]     '1' when rate-limit headers follow the settles
  ARGV[8]     number of carried outcomes, m
  ARGV[9..14] throttle params: k, window ms, probe interval ms, budget ratio, budget window ms,
              budget minimum retries per second; ARGV[9] = '' turns the throttle and budget off
  ARGV[15..]  per settle, 10 values (see includes/carried-settle)
  then, with headers, 16 values (see includes/carried-sync)
  then per outcome, 4 values: model, calls, calls the provider served (the others failed in a
  way that says the model is unhealthy: 5xx, 529, no answer), retries whose place in the retry
  budget goes back (those served, and those granted but never sent)
  then the acquire, absent for a flush (callers omit the optional trailing arguments they do not
  use): requests, input tokens, output tokens (tpm draws input + output), the reserve fraction of
  the lane (0..1), the lane's index in LANES (grant counters), the grant's in-flight member ('' =
  none) and its life in ms (see includes/in-flight); optionally model ('' = no cooldown
  or throttle check), '1' when the call retries this model for the job ('2' the same from a lane
  the retry budget does not hold while the throttle is closed, '0' when it is the job's first
  call to it), the lane's reserve of the retry budget (0..1); optionally after them
  tenant tokens/min, tenant requests/min ('' = none); optionally after them the fair reserve
  (0..1): the further fraction of each pool dimension this job leaves, because its tenant had
  work queued ahead of it in a fair lane (a fresh tenant's job, sent 0 or nothing, may draw it)

  Returns { code, nowUs, a, b, c, throttle, run, d, lowered... }
    code  1 GRANTED: a, b, c, d for input, output, tokens and requests: the capacity each was
            charged against, which the client keeps in the reservation and sends back with its
            settle: 0 = the dimension did not bind, the integer 1 = the configured limit, a
            string = the learned limit (17 digits), when it is the lower or the only one
    code -1 WAIT: every dimension (and the model's cooldown, throttle and retry budget) can serve
            after a = waitMs; b = the binding dimension, 'cooldown', 'throttle' or 'retry_budget',
            or 'fair_share' when only the fair reserve holds the job back (a fresh tenant's job
            would be granted now); c = sureMs, the wait even if every call in flight gave back
            all the output it reserved (= waitMs unless a tokens/min wait could be covered by
            those refunds; 0 when they could cover all of it)
    code -2 NEVER_FITS: the need exceeds what this lane may ever draw from dimension a
            (capacity minus its reserve, capacity = limit * burst / 60); b = that most, rounded
            down; c = the limit per minute that bound (configured or learned), so the caller can
            say how that most came about
    code  0 APPLIED: no acquire part was given
    throttle: the model's throttle state: 0 closed, 1 throttled, 2 open (probes only), -1 not
            checked (no model, or the throttle off)
    run: the model's unhealthy outcomes in a row, fleet-wide, as the throttle knew them (0 when
            not checked): the worker tells a dead model's probe (other jobs' calls failing too)
            from a job failing on its own
    lowered: the dimensions the headers lowered
]]
--- @include "includes/bucket-time"
--- @include "includes/pool-state"
--- @include "includes/carried-settle"
--- @include "includes/carried-sync"
--- @include "includes/model-throttle"
--- @include "includes/in-flight"

-- Float slack so that sleeping exactly the returned (rounded-up) wait always succeeds.
local EPS = 1e-6

local now, nowUs = redisNow()
local lr, li, lo, lt = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4])
-- Capacity per unit of limit: a dimension holds `burst` seconds of its per-minute limit.
local burstShare = (tonumber(ARGV[5]) or 60) / 60
local settles = tonumber(ARGV[6])
local outcomes = tonumber(ARGV[8])
local params = throttleParams(9)
local at = 15 + SETTLE_ARGS * settles

local pool = readPool(KEYS[1])
local elapsed = elapsedSince(pool[1], now)
local reply = { 0, nowUs, 0, 0, 0, -1, 0, 0 }
local changed, learned = false, false
if settles > 0 then changed = settleCarried(pool, elapsed, now, 15, settles, 6, KEYS[5]) end
if ARGV[7] == '1' then
  local lowered
  lowered, learned = syncCarried(pool, { lr, li, lo, lt }, burstShare, elapsed, at, KEYS[3], reply)
  changed = changed or lowered
  at = at + 16
end

-- Outcomes of earlier calls, per model: the throttle's success ratio is the fleet's.
if outcomes > 0 and params then
  local cap = limitOf(lr, pool[6])
  for a = at, at + (outcomes - 1) * 4, 4 do
    local t = readThrottle(KEYS[4], ARGV[a])
    throttleAt(t, now, params, cap)
    recordOutcomes(t, tonumber(ARGV[a + 1]), tonumber(ARGV[a + 2]), tonumber(ARGV[a + 3]))
    writeThrottle(KEYS[4], ARGV[a], t)
  end
end
at = at + 4 * outcomes

-- What the settles and headers changed is written at the state's own `ts` (or now, for a new
-- one), so the levels of dimensions this call has no capacity for keep their own refill.
local function writeCorrections()
  if changed or learned then
    pool[1] = pool[1] or now
    writePool(KEYS[1], pool)
  end
end

if not ARGV[at] then
  writeCorrections()
  return reply
end
local requests, input, output = tonumber(ARGV[at]), tonumber(ARGV[at + 1]), tonumber(ARGV[at + 2])
local reserve, lane = tonumber(ARGV[at + 3]), tonumber(ARGV[at + 4])
local member, lifeMs = ARGV[at + 5], tonumber(ARGV[at + 6])

-- The per-minute limit of each pool dimension (`limitOf`: the lower of configured and learned;
-- nil: does not bind). It sets the refill rate; the capacity is `burstShare` of it.
local cr, ci, co, ct = limitOf(lr, pool[6]), limitOf(li, pool[7]), limitOf(lo, pool[8]), limitOf(lt, pool[9])
local ur, ui, uo, ut = usedAt(pool[2], elapsed, cr), usedAt(pool[3], elapsed, ci), usedAt(pool[4], elapsed, co), usedAt(pool[5], elapsed, ct)

local waitMs, reason, never, neverMost, neverLimit = 0, nil, nil, 0, 0
local fairReserve, fairWaitMs = tonumber(ARGV[at + 12] or '') or 0, 0
-- The same waits if every call in flight gave back all the output it reserved (its settle's
-- refund at most): a tokens/min wait beyond what they may give back is sure, the rest may not come.
local sureMs, fairSureMs = 0, 0
local inFlight
local function givesBack(dim)
  if dim ~= 'otpm' and dim ~= 'tpm' and dim ~= 'tenant_tpm' then return 0 end
  if not inFlight then
    local tenant = string.match(member, '^[^|]*|[^|]*|(.*)$')
    inFlight = { outputInFlight(KEYS[5], now, tenant) }
  end
  return dim == 'tenant_tpm' and inFlight[2] or inFlight[1]
end
local function sureWait(dim, short, c)
  if short <= EPS then return 0 end
  local sure = short - givesBack(dim)
  return sure > EPS and sure * 60000 / c or 0
end
-- One dimension's check against its limit c (the rate) and capacity c * share: records the wait
-- it needs, or that the need can never fit. With `fair`, also the wait to leave the fair reserve
-- above the lane's floor; a need too large for that ignores it (fairness never makes a job fail).
local function check(dim, c, used, n, share, fair)
  if not c or n <= 0 or never then return end
  local capacity = c * share
  local floor = reserve * capacity
  if n > capacity - floor + EPS then
    never, neverMost, neverLimit = dim, math.floor(capacity - floor), c
    return
  end
  local short = n + floor - (capacity - used)
  if short > EPS then
    local w = short * 60000 / c
    if w > waitMs then waitMs, reason = w, dim end
    sureMs = math.max(sureMs, sureWait(dim, short, c))
  end
  if fair and fairReserve > 0 and n + floor + fairReserve * capacity <= capacity + EPS then
    local fairShort = short + fairReserve * capacity
    if fairShort > EPS then
      local w = fairShort * 60000 / c
      if w > fairWaitMs then fairWaitMs = w end
      fairSureMs = math.max(fairSureMs, sureWait(dim, fairShort, c))
    end
  end
end
check('rpm', cr, ur, requests, burstShare, true)
check('itpm', ci, ui, input, burstShare, true)
check('otpm', co, uo, output, burstShare, true)
check('tpm', ct, ut, input + output, burstShare, true)

local tenantTpm, tenantRpm = tonumber(ARGV[at + 10] or ''), tonumber(ARGV[at + 11] or '')
local hasTenant = tenantTpm ~= nil or tenantRpm ~= nil
local tr, tt = 0, 0
if hasTenant then
  local tenant = redis.call('HMGET', KEYS[#KEYS], 'ts', 'rpm', 'tpm')
  local te = elapsedSince(tenant[1], now)
  tr, tt = usedAt(tenant[2], te, tenantRpm), usedAt(tenant[3], te, tenantTpm)
  -- A tenant's quota is Headroom's own, not a provider's: it keeps a minute's burst.
  check('tenant_rpm', tenantRpm, tr, requests, 1)
  check('tenant_tpm', tenantTpm, tt, input + output, 1)
end

if never then
  writeCorrections()
  redis.call('HINCRBY', KEYS[3], 'never:' .. never, 1)
  -- As a string: Redis would cut a fractional (learned) limit to an integer.
  reply[1], reply[3], reply[4], reply[5] = -2, never, neverMost, string.format('%.17g', neverLimit)
  return reply
end

local model = ARGV[at + 7] or ''
local throttle, retry, throttleState, claimed
if model ~= '' then
  local ends = redis.call('ZSCORE', KEYS[2], model)
  if ends then
    local w = tonumber(ends) - now
    if w > waitMs then waitMs, reason = w, 'cooldown' end
    sureMs = math.max(sureMs, w)
  end
  if params then
    -- '2': an exempt lane's retry, charged to the budget but not held by it while the throttle is closed.
    throttle, retry = readThrottle(KEYS[4], model), ARGV[at + 8] ~= '0'
    local w, why
    w, why, throttleState, claimed = throttleCheck(throttle, now, params, cr, reserve, retry, tonumber(ARGV[at + 9]) or 0, ARGV[at + 8] == '2')
    reply[6], reply[7] = throttleState, throttle[8]
    if w > waitMs then waitMs, reason = w, why end
    sureMs = math.max(sureMs, w)
  end
end

-- Only the fair reserve holds the job back: a fresh tenant's job would be served now.
if waitMs <= 0 and fairWaitMs > 0 then waitMs, reason, sureMs = fairWaitMs, 'fair_share', fairSureMs end

if waitMs > 0 then
  -- The throttle's state brought up to now is not written back (the next call decays it again),
  -- unless this retry's refusal claimed the retry budget for its lane.
  if claimed then writeThrottle(KEYS[4], model, throttle) end
  writeCorrections()
  redis.call('HINCRBY', KEYS[3], 'wait:' .. reason, 1)
  reply[1], reply[3], reply[4], reply[5] = -1, math.ceil(waitMs), reason, math.ceil(sureMs)
  return reply
end

-- Charge, moving `ts` to now. A dimension that does not bind is stored as 0, so a limit that
-- appears later starts from a full bucket rather than from stale usage. Learned limits the
-- headers changed ride along, and the lane's grant is counted.
pool[1] = now
pool[2] = cr and ur + requests or 0
pool[3] = ci and ui + input or 0
pool[4] = co and uo + output or 0
pool[5] = ct and ut + input + output or 0
local slot = GRANTS_AT + lane
pool[slot] = (pool[slot] or 0) + 1
writePool(KEYS[1], pool)
-- Recorded only once a tokens/min dimension the grant draws on is half used or more: below
-- that no wait is near, and the entry (two commands) was most of what a grant cost Redis beyond
-- the check itself (bench:bucket). A call granted earlier and still in flight when a wait comes
-- is not counted as a refund: the wait errs toward sure, the bucket's view before it counted any.
local function pastHalf(c, used, share)
  return c ~= nil and used >= c * share / 2
end
local counted = pastHalf(co, pool[4], burstShare) or pastHalf(ct, pool[5], burstShare) or (hasTenant and pastHalf(tenantTpm, tt + input + output, 1))
if counted then addInFlight(KEYS[5], member, output, lifeMs, now) end

if throttle then
  chargeThrottle(throttle, retry, throttleState)
  writeThrottle(KEYS[4], model, throttle)
end

if hasTenant then
  -- Tenants are many: their hash expires once it would be full again.
  local ur2 = tenantRpm and tr + requests or 0
  local ut2 = tenantTpm and tt + input + output or 0
  local fullIn = math.max(tenantRpm and ur2 * 60000 / tenantRpm or 0, tenantTpm and ut2 * 60000 / tenantTpm or 0)
  if fullIn > 0 then
    redis.call('HSET', KEYS[#KEYS], 'ts', now, 'rpm', ur2, 'tpm', ut2)
    redis.call('PEXPIRE', KEYS[#KEYS], math.ceil(fullIn) + 1)
  end
end

-- What a settle needs to correct the charge (see the header): the client then holds the very
-- capacity used here, and Redis keeps no reservation to write now and read back at settle time.
local function against(limit, c)
  if not c then return 0 end
  if limit == c then return 1 end
  return string.format('%.17g', c)
end
reply[1], reply[3], reply[4], reply[5], reply[8] = 1, against(li, ci), against(lo, co), against(lt, ct), against(lr, cr)
-- Whether the grant is among the calls in flight: only then does its settle take it out.
if counted and output > 0 and member ~= '' then reply[9] = 1 end
return reply
