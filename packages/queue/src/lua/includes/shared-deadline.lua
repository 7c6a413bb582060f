--[[
  The start deadline of a job several callers share (shared-deadline.ts): the latest any caller
  still waiting wants. Each caller's own is kept in the job's hash, `hrWaits`: one mark per
  caller, space-separated, each its maxWaitMs counted from the job's enqueue (as `hrMaxWait`), or
  `n` for a caller with none. The list is written at the first join (the first caller's mark is
  the job's own `hrMaxWait`, or `n`), so a job no one joins pays nothing; a caller joining adds
  its mark (add-9.lua), a caller leaving takes its own out (cancel-3.lua), and each sets the job's
  deadline to the latest of the marks left. Both run in one script with the change of `hrJoins`,
  so a join and a leave at the same moment cannot lose either's mark.

  A job whose callers joined under an older version has no list: its deadline only ever moves
  later, as it did then.
]]

-- The job's deadline as `value`: a number of ms from its enqueue, or 'null' for none. Kept in its
-- hash for front-runnable-4.lua and in its BullMQ options, where the worker's fetch reads it.
local function setSharedDeadline(jobKey, value, opts)
  if value == 'null' then redis.call('HDEL', jobKey, 'hrMaxWait') else redis.call('HSET', jobKey, 'hrMaxWait', value) end
  opts = opts or '{}'
  local moved, n = string.gsub(opts, '"hrMaxWait":[%w.]+', '"hrMaxWait":' .. value, 1)
  if n == 0 then moved = opts == '{}' and '{"hrMaxWait":' .. value .. '}' or '{"hrMaxWait":' .. value .. ',' .. string.sub(opts, 2) end
  redis.call('HSET', jobKey, 'opts', moved)
end

-- The latest deadline the marks of a `hrWaits` list want: 'null' if one wants none.
local function latestWait(marks)
  local latest
  for mark in string.gmatch(marks, '%S+') do
    if mark == 'n' then return 'null' end
    local ms = tonumber(mark)
    if ms and (not latest or ms > latest) then latest = ms end
  end
  if not latest then return 'null' end
  return string.format('%d', latest)
end

-- A caller leaves the job: its mark is taken out of the list, and the job's deadline moved to the
-- latest of those left (back, when the leaving caller's was the latest). A mark not in the list
-- (a caller that named none: `Producer.cancel`; a job with no list) moves nothing.
local function leaveSharedDeadline(jobKey, mark)
  if mark == '' then return end
  local job = redis.call('HMGET', jobKey, 'hrWaits', 'hrMaxWait', 'opts')
  if not job[1] then return end
  local left, found = {}, false
  for each in string.gmatch(job[1], '%S+') do
    if not found and each == mark then found = true else left[#left + 1] = each end
  end
  if not found then return end
  local marks = table.concat(left, ' ')
  redis.call('HSET', jobKey, 'hrWaits', marks)
  if #left == 0 then return end
  local latest = latestWait(marks)
  if latest ~= (job[2] or 'null') then setSharedDeadline(jobKey, latest, job[3]) end
end
