-- release(now, lease_ms, concurrency, batch_bound_ms, duration_ms, ticket, node_1..node_m)
-- Forget the ticket (running or waiting; releasing twice is harmless), fold the call's duration into
-- the service-time average when it ran, and hand the freed slot on. Returns granted pairs.
local now, lease_ms = tonumber(ARGV[1]), tonumber(ARGV[2])
local concurrency, batch_bound = tonumber(ARGV[3]), tonumber(ARGV[4])
local duration, t = tonumber(ARGV[5]), ARGV[6]
local nodes = {}
for i = 7, #ARGV do nodes[#nodes + 1] = ARGV[i] end
if duration >= 0 and redis.call('HGET', P .. 'node', t) then
  local avg = tonumber(redis.call('HGET', P .. 'svc', 'avg_ms') or duration)
  redis.call('HSET', P .. 'svc', 'avg_ms', avg * 0.8 + duration * 0.2)
  redis.call('HINCRBY', P .. 'svc', 'done', 1)
end
drop(t)
reap(now)
return dispatch(now, lease_ms, concurrency, batch_bound, nodes)
