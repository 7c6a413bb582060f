--[[
  Reads the adaptive throttle and retry budget of a pool's models as they stand now, for the
  dashboard, `headroom status` and the pressure monitor. Writes nothing: the same functions as
  the acquire script bring a copy of each model's state up to now.

  KEYS[1] throttle hash (model -> packed state, see includes/model-throttle)
  KEYS[2] pool state (for the learned requests/min limit)

  ARGV[1]     the pool's configured requests/min ('' = the learned one, if any)
  ARGV[2..7]  throttle params, as the acquire script takes them
  ARGV[8..]   models

  Returns, per model with state, its name and then 9 strings: state (0 closed, 1 throttled, 2 open), admit ratio, success
  ratio, allowed calls/min, calls/s with a known outcome, first calls/s, retries/s, retry budget
  (retries the window allows), retry budget left; nothing for a model with no state.
]]
--- @include "includes/bucket-time"
--- @include "includes/pool-state"
--- @include "includes/model-throttle"

local now = redisNow()
local params = throttleParams(2)
local out = {}
if not params then return out end
local cap = limitOf(tonumber(ARGV[1]), readPool(KEYS[2])[6])
local f = function(x) return string.format('%.6g', x) end
for i = 8, #ARGV do
  local model = ARGV[i]
  if redis.call('HEXISTS', KEYS[1], model) == 1 then
    local t = readThrottle(KEYS[1], model)
    local ratio, s, rate, state = throttleAt(t, now, params, cap)
    local total, left = budgetOf(t, params)
    local perSec = function(n, window) return n * 1000 / window end
    out[#out + 1] = model
    for _, v in ipairs({ state, ratio, s, rate, perSec(t[2], params.window), perSec(t[4], params.budgetWindow),
      perSec(t[5], params.budgetWindow), total, left }) do
      out[#out + 1] = f(v)
    end
  end
end
return out
