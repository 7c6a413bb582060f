--[[
  A model's fleet-wide adaptive throttle and retry budget. A breaker (5 failures in a row, then
  30 s of nothing) is right for a dead model and wrong for a degraded one: at 50% 529s it opens
  within seconds and the fleet stops sending to a provider that still serves half its calls. So
  the fleet follows the model's recent success ratio instead, and every worker sees the same one.

  State per model: one field of the pool's throttle hash (same slot as the pool), eight packed
  little-endian doubles. As a table:
    [1] ts: when the counters below were last brought up to date (Redis ms); nil = no state
    [2] calls, [3] oks: calls with a known outcome and those the provider served, each decayed
        exponentially with time constant `window` (an exponentially weighted sliding window)
    [4] firsts, [5] retries: first calls of a job to this model and retries of it, granted,
        decayed with time constant `budgetWindow`
    [6] tokens of the throttle's own small bucket used at ts
    [7] the allowed fraction of the reference rate at ts (0 = none yet): a fraction, not a
        rate, so a flush that carries no limits leaves it right for the next acquire
    [8] unhealthy outcomes since the last served call, fleet-wide (counted per carried batch)
    [9], [10] the retry budget's claim: the retryReserve of the highest lane whose retry the
        budget turned away, and until when (Redis ms) lanes below it may not retry (see below).
        A state written before the claim existed (eight doubles) reads as no claim

  Throttle (Google SRE's client-side throttling, as a rate rather than a coin toss, so a refused
  call gets an exact wait instead of spinning through the lanes):
    success ratio s = oks / calls (1 while fewer than MIN_CALLS calls are remembered: a model
      the fleet has not called lately starts trusted). A short window (2 s) so that a model that
      dies under 15 calls a second is down to probes within about 10 s, not half a minute
    admit ratio    = min(1, k * s)                                   k = 2: up to twice the calls
                                                                      the provider still serves
    target rate    = max(one probe per probeMs, admit ratio * reference rpm)
    allowed rate   = the target at once when it falls; when it rises, at most RAMP_PER_SECOND
                     times more each second (a recovered provider is not hit with the backlog at
                     once: from one probe a second to 6,000 calls/min takes under 7 s)
  The reference is the pool's requests/min limit (configured, or learned from the headers), else
  a nominal NOMINAL_PROBES probes' worth. It is not the model's own recent call rate: that falls
  with the throttle, and the throttle would then chase it down to probes (SRE's rule does that
  whenever fewer than 1/k of calls succeed). Once the admit ratio is 1 and the allowed rate has
  ramped back to the reference, the throttle is closed and does not bind (the bucket alone
  decides). Otherwise each call draws a token from a bucket of one second's worth of the allowed
  rate (at least one token), with the lane's reserve kept for the lanes above, as in the quota
  bucket: CRITICAL is served first when capacity shrinks. A dead model (s = 0) is called once
  per probeMs fleet-wide.

  The breaker survives as the throttle's floor, fleet-wide: DEAD_AFTER unhealthy outcomes in a
  row (any served call resets the run) open the throttle at once. The window alone takes seconds
  to forget a busy model's successes (the throttle binds only once k x s x the pool's
  requests/min falls below what the fleet sends). A run of 60 has odds of 1 in 10^18 at 50%
  failures; at 90% (0.2%) it opens for a few seconds about every ten minutes at 10 calls a
  second, until a probe is served; for a dead model under 15 calls a second it fires in 4 s.

  Retry budget (Finagle's RetryBudget, counting only the retries that were not served): a retry is
  granted only while
    retries + 1 <= floor + ratio * firsts,   floor = minPerSecond * budgetWindow / 1000
  where `retries` are those granted less those the provider served (or that were never sent): a
  served retry gives its place back when its outcome comes in. So the retries that fail stay within `ratio` of first calls over
  the window (plus a floor so a quiet model can still retry), which is the load the budget exists
  to bound, while retries to a model that serves them are not held: once a brownout ends, its
  backlog of retries drains at the pace the provider serves it, not at the floor's (counting every
  granted retry, a LOW backlog of 76 retries took 85 s to drain at one a second from a recovered
  provider with room for ten). At a failure rate f the retries granted are at most 1/f of that
  bound (twice it at 50%, the same for a dead model). A lane may take a retry only while its
  `retryReserve` of the ratio's share stays unspent after it: CRITICAL and HIGH retry first; lower
  lanes wait, no attempt spent. The floor is every lane's: were it reserved too, a LOW retry would
  need the failed retries of the last minutes to decay to nothing once first calls stop; with it,
  the lowest lane still retries minPerSecond a second while its retries keep failing.

  The claim makes "CRITICAL retries first" hold for the retries the budget frees up, not only for
  its size. Without it, a CRITICAL retry told to wait for the budget raced every lane's retries for
  the next one freed, floor included: in a 50% brownout with a LOW backlog retrying, a CRITICAL job
  went through dozens of short waits on three workers (the slowest of 40 took 3.6-16.6 s beside a
  parallel test run, and past 60 s under CI's whole suite). Now a retry the budget turns away claims the
  budget for its lane: until it is due back (its wait, plus CLAIM_GRACE_MS for the trip back
  through its lane), a lane with a higher retryReserve may not retry, so the retry freed next is
  the waiting lane's. Each refusal in that lane extends the claim; a higher lane's takes it over.
  First calls are never held by it, and a claim nobody renews ends within its grace.

  Params table p: k, window (ms), probeMs, budgetRatio, budgetWindow (ms), budgetFloor (retries).
]]

local THROTTLE_FORMAT = '<dddddddddd'
-- What a lane's refused retry adds to its claim on the budget: its trip back through the lane
-- (a delayed job's promotion and fetch) after its wait, during which lower lanes still hold off.
local CLAIM_GRACE_MS = 1000
-- Unhealthy outcomes in a row, fleet-wide, that open the throttle whatever the window says.
local DEAD_AFTER = 60
-- Unhealthy outcomes in a row, fleet-wide, past which an exempt lane's retries are held by the
-- budget too, closed throttle or not (see throttleCheck).
local EXEMPT_UNTIL_RUN = 8
-- How fast the allowed rate may climb back: this many times more each second.
local RAMP_PER_SECOND = 2
-- A pool with no requests/min limit known scales this many probes' worth.
local NOMINAL_PROBES = 60
-- Fewer remembered calls than this say nothing yet about the model's health. At one probe per
-- probeMs and a window of at least twice that, a dead model keeps at least this many in memory
-- between probes, so it stays open rather than being forgotten (the config checks the window).
local MIN_CALLS = 1
-- Throttle states, as replies carry them.
local THROTTLE_CLOSED, THROTTLE_THROTTLED, THROTTLE_OPEN = 0, 1, 2

-- The params from ARGV[at .. at+5]; nil when ARGV[at] is '' (throttle and budget off).
local function throttleParams(at)
  local k = tonumber(ARGV[at])
  if not k then return nil end
  local budgetWindow = tonumber(ARGV[at + 4])
  return {
    k = k,
    window = tonumber(ARGV[at + 1]),
    probeMs = tonumber(ARGV[at + 2]),
    budgetRatio = tonumber(ARGV[at + 3]),
    budgetWindow = budgetWindow,
    budgetFloor = tonumber(ARGV[at + 5]) * budgetWindow / 1000,
  }
end

local function readThrottle(key, model)
  local raw = redis.call('HGET', key, model)
  if not raw then return { nil, 0, 0, 0, 0, 0, 0, 0, 1, 0 } end
  -- Eight doubles: written by a worker from before the claim (a rolling upgrade); no claim.
  if #raw == 64 then
    local t = { struct.unpack('<dddddddd', raw) }
    t[9], t[10] = 1, 0
    return t
  end
  local t = { struct.unpack(THROTTLE_FORMAT, raw) }
  t[11] = nil
  return t
end

local function writeThrottle(key, model, t)
  redis.call('HSET', key, model, struct.pack(THROTTLE_FORMAT, t[1], t[2], t[3], t[4], t[5], t[6], t[7], t[8], t[9], t[10]))
end

--[[
  Brings `t` up to `now` (decays its counters, refills its tokens) and returns the admit ratio,
  the success ratio, the allowed rate (calls/min) and the state. `capRpm`: the pool's
  requests/min (nil = none known). A clock that stepped back counts as no time passing.
]]
local function throttleAt(t, now, p, capRpm)
  local e = 0
  local fresh = not t[1]
  if t[1] and now > t[1] then e = now - t[1] end
  if e > 0 then
    local a = math.exp(-e / p.window)
    t[2], t[3] = t[2] * a, t[3] * a
    local b = math.exp(-e / p.budgetWindow)
    t[4], t[5] = t[4] * b, t[5] * b
  end
  local s = 1
  if t[2] >= MIN_CALLS then s = t[3] / t[2] end
  local ratio = p.k * s
  if ratio > 1 - 1e-9 then ratio = 1 end
  if t[8] >= DEAD_AFTER then ratio = 0 end
  local probeRpm = 60000 / p.probeMs
  local reference = capRpm or NOMINAL_PROBES * probeRpm
  -- The probe floor is applied after storing, so a call that knows no limit (a flush carries
  -- none, and falls back to the nominal reference) cannot raise a dead model's stored fraction.
  local floor = probeRpm / reference
  local allowed = ratio
  if not fresh then
    allowed = t[7]
    if allowed < floor then allowed = floor end
    if e > 0 then allowed = allowed * RAMP_PER_SECOND ^ (e / 1000) end
    if allowed > ratio then allowed = ratio end
  end
  t[7] = allowed
  if allowed < floor then allowed = floor end
  local rate = allowed * reference
  local state = THROTTLE_THROTTLED
  if allowed >= 1 then
    state = THROTTLE_CLOSED
  elseif rate <= probeRpm * (1 + 1e-9) then
    rate, state = probeRpm, THROTTLE_OPEN
  end
  local used = t[6] - e * rate / 60000
  if used < 0 then used = 0 end
  t[6] = used
  t[1] = now
  return ratio, s, rate, state
end

-- Adds `calls` outcomes of which `oks` were served (t already brought up to now), and gives
-- `retriesBack` retries their place in the retry budget back: those served (see above), and those
-- granted but never sent.
local function recordOutcomes(t, calls, oks, retriesBack)
  t[2] = t[2] + calls
  t[3] = t[3] + oks
  t[5] = t[5] - retriesBack
  if t[5] < 0 then t[5] = 0 end
  -- Within one batch the order is unknown: a served call in it ends the run.
  if oks > 0 then t[8] = 0 else t[8] = t[8] + calls end
end

-- The wait before one more call fits the throttle's bucket for a lane with `reserve`; 0 = now.
local function throttleWait(t, rate, reserve)
  local burst = rate / 60
  if burst < 1 then burst = 1 end
  local floor = reserve * burst
  if floor > burst - 1 then floor = burst - 1 end
  local short = 1 + floor - (burst - t[6])
  if short <= 1e-6 then return 0 end
  return short * 60000 / rate
end

-- The retry budget's size and what is left of it.
local function budgetOf(t, p)
  local total = p.budgetFloor + p.budgetRatio * t[4]
  return total, total - t[5]
end

--[[
  The wait before a retry fits the budget for a lane that must leave `reserve` of the ratio's
  share: it fits while retries + 1 <= floor + (1 - reserve) * ratio * firsts. Two estimates, the
  shorter taken (the job asks again then, and waiting costs it no attempt):
  - no new first calls: both counters decay by the same factor x = exp(-t / budgetWindow) (the
    floor does not), so the retry fits once floor - 1 + x * ((1 - reserve) * ratio * firsts -
    retries) >= 0;
  - first calls arriving as lately (their decayed count holds steady): the retries alone decay,
    so it fits once retries x exp(-t / budgetWindow) <= retries - short. (A linear estimate of
    that decay, short x budgetWindow / retries, was always early: a job came back to be told a
    shorter wait, then a shorter one, each an acquire.)
  Capped at one window.
]]
local function budgetWait(t, p, reserve)
  local share = (1 - reserve) * p.budgetRatio * t[4]
  local short = 1 + t[5] - p.budgetFloor - share
  if short <= 1e-6 then return 0 end
  local w = p.budgetWindow
  local a = p.budgetFloor - 1
  local d = share - t[5]
  if a > 0 and d < 0 then w = p.budgetWindow * math.log(-d / a) end
  if short < t[5] then
    local steady = -p.budgetWindow * math.log(1 - short / t[5])
    if steady < w then w = steady end
  end
  if w > p.budgetWindow then w = p.budgetWindow end
  if w < 1 then w = 1 end
  return w
end

--[[
  The retry budget's answer for a retry of a lane leaving `reserve`: the wait (0 = it fits), and
  whether `t`'s claim changed (the caller then writes `t` back even though the call waits). A
  lane below a live claim waits for the claim to end; a retry the budget turns away claims it for
  its lane (see the claim above).
]]
local function budgetCheck(t, now, p, reserve)
  local claimBy, claimUntil = t[9], t[10]
  local live = claimUntil > now
  if live and reserve > claimBy + 1e-9 then
    local w = claimUntil - now
    if w > p.budgetWindow then w = p.budgetWindow end
    return w, false
  end
  local w = budgetWait(t, p, reserve)
  if w <= 0 then return 0, false end
  local untilAt = now + w + CLAIM_GRACE_MS
  if live and reserve > claimBy - 1e-9 and claimUntil >= untilAt then return w, false end
  t[9], t[10] = reserve, untilAt
  return w, true
end

--[[
  One call's check against the model's throttle and, for a retry, its retry budget, with `t`
  brought up to now. Returns the wait (0 = the call may go now), its reason ('throttle' or
  'retry_budget', nil when 0), the throttle state, and whether the budget's claim changed.
  `exempt`: the retry's lane is not held by the budget while the throttle is closed (the model
  serves at least 1/k of its calls, so the retry is likelier to be served than not) and fewer
  than EXEMPT_UNTIL_RUN unhealthy outcomes in a row have come back. Once the throttle binds, the
  budget paces it too: sent back to back at 90% failures, a job spent its attempts in a second or
  two and failed (20 of 66 CRITICAL jobs in bench:brownout) where, paced, it waits, no attempt
  spent, for the provider to recover. The run covers an outage's first second: the success
  ratio takes about a window to fall under 1/k, and the jobs in flight could spend their attempts
  back to back meanwhile. At 50% failures a run of 8 is one call in 256, so it rarely holds a
  retry there.
]]
local function throttleCheck(t, now, p, capRpm, reserve, retry, retryReserve, exempt)
  local _, _, rate, state = throttleAt(t, now, p, capRpm)
  local wait, reason, claimed = 0, nil, false
  if state ~= THROTTLE_CLOSED then
    wait = throttleWait(t, rate, reserve)
    if wait > 0 then reason = 'throttle' end
  end
  if retry and not (exempt and state == THROTTLE_CLOSED and t[8] < EXEMPT_UNTIL_RUN) then
    local w
    w, claimed = budgetCheck(t, now, p, retryReserve)
    if w > wait then wait, reason = w, 'retry_budget' end
  end
  return wait, reason, state, claimed
end

-- Charges a granted call: a first call or a retry, and a token while the throttle binds.
local function chargeThrottle(t, retry, state)
  if retry then t[5] = t[5] + 1 else t[4] = t[4] + 1 end
  if state ~= THROTTLE_CLOSED then t[6] = t[6] + 1 end
end
