--[[
  Tells the producer waiting on a job how it ended: one entry in that producer's replies stream
  (keys.ts `replies`): `j` job id, `e` completed | failed | removed, `v` the return value (JSON),
  the failure text, or '' for a removal. The stream keeps its last ~1000 entries and lives an
  hour past its last write: a producer gone without closing leaves nothing for long.
]]
local function replyToProducer(stream, id, ended, value)
  redis.call('XADD', stream, 'MAXLEN', '~', 1000, '*', 'j', id, 'e', ended, 'v', value)
  redis.call('PEXPIRE', stream, 3600000)
end
