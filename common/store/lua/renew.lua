-- include: common.lua
-- renew(policy..., ticket_1..ticket_k): extend the leases of a process's live tickets. For each
-- ticket: {state, position, eta_ms}: state is its node if running, "" if waiting (with its position in
-- the queue and expected wait), "-" if it is gone (reaped, or Redis lost it).
local p, i = policy()
local out = {}
local f = nil
local grants = {}
for j = i, #ARGV do
  local t = ARGV[j]
  if redis.call('ZSCORE', P .. 'lease', t) then
    redis.call('ZADD', P .. 'lease', p.now + p.lease_ms, t)
    local node = redis.call('HGET', P .. 'node', t)
    if node then
      out[#out + 1] = {node, 0, 0}
    else
      local pos = position_of(t) or 0
      if f == nil then
        f = slots_forecast(p)
        grants = grant_times(f, redis.call('ZCARD', P .. 'enq'))
      end
      local at = grants[pos]
      out[#out + 1] = {'', pos, at and math.max(0, at - p.now) or -1}
    end
  else
    out[#out + 1] = {'-', 0, 0}
  end
end
return out
