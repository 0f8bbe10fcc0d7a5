-- include: common.lua
-- forecast(now, concurrency, node count, node_1..node_m): read-only, for status pages. Returns
-- {waiting, nodes loading, expected wait of a request arriving now (ms, -1 when no node can serve)}:
-- the same forecast that gives Retry-After and a waiting request's expected wait, so a model that is
-- loading (or not loaded) counts its load.
local p = {now = tonumber(ARGV[1]), concurrency = tonumber(ARGV[2]), hold_until = 0, nodes = {}}
for i = 1, tonumber(ARGV[3]) do p.nodes[i] = ARGV[3 + i] end
local waiting = redis.call('ZCARD', P .. 'enq')
local loading = 0
for _, n in ipairs(p.nodes) do
  if place_of(n) == 'loading' then loading = loading + 1 end
end
local grants = grant_times(slots_forecast(p), waiting + 1)
local eta = -1
if grants[waiting + 1] then eta = math.floor(math.max(0, grants[waiting + 1] - p.now)) end
return {waiting, loading, eta}
