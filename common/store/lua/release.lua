-- include: common.lua
-- release(policy..., duration_ms, ticket, owner)
-- Forget the ticket (running or waiting; releasing twice is harmless), fold the call's duration into
-- the service-time average when it ran, and hand the freed slot on. Returns granted pairs.
local p, i = policy()
local duration, t = tonumber(ARGV[i]), ARGV[i + 1]
QUIET = ARGV[i + 2]
if duration >= 0 and redis.call('HGET', P .. 'node', t) then
  local avg = tonumber(redis.call('HGET', P .. 'svc', 'avg_ms') or duration)
  redis.call('HSET', P .. 'svc', 'avg_ms', avg * 0.8 + duration * 0.2)
  redis.call('HINCRBY', P .. 'svc', 'done', 1)
end
drop(t)
reap(p.now)
return dispatch(p)
