-- A lane's models hash maps a model to `provider:pool` (a pool name may itself hold ':'). A bare
-- provider, as a first-version fleet published it, leaves the model as its own pool.
local function providerAndPool(known, model)
  local sep = string.find(known, ':', 1, true)
  if not sep then return known, model end
  return string.sub(known, 1, sep - 1), string.sub(known, sep + 1)
end
