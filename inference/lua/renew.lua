-- renew(now, lease_ms, ticket_1..ticket_k): extend the leases of a process's live tickets. For each
-- ticket: its node if running, "" if still waiting, "-" if it is gone (reaped or never admitted).
local now, lease_ms = tonumber(ARGV[1]), tonumber(ARGV[2])
local out = {}
for i = 3, #ARGV do
  local t = ARGV[i]
  if redis.call('ZSCORE', P .. 'lease', t) then
    redis.call('ZADD', P .. 'lease', now + lease_ms, t)
    out[#out + 1] = redis.call('HGET', P .. 'node', t) or ''
  else
    out[#out + 1] = '-'
  end
end
return out
