-- dispatch(now, lease_ms, concurrency, batch_bound_ms, node_1..node_m): reap expired leases and grant
-- free slots (after a load finished, a node came back, or a lease expired). Returns granted pairs.
local now, lease_ms = tonumber(ARGV[1]), tonumber(ARGV[2])
local nodes = {}
for i = 5, #ARGV do nodes[#nodes + 1] = ARGV[i] end
reap(now)
return dispatch(now, lease_ms, tonumber(ARGV[3]), tonumber(ARGV[4]), nodes)
