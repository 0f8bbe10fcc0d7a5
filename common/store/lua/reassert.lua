-- include: common.lua
-- reassert(policy..., owner, then per ticket: id, user, node or ""): after Redis lost its data (a
-- restart without persistence), a web process puts back the calls it is still running, with their
-- leases, so the bound counts them before anything new is granted (grants wait for the hold). Its
-- waiting tickets are re-admitted separately. Tickets Redis still knows are only renewed.
local p, i = policy()
local owner = ARGV[i]
for j = i + 1, #ARGV, 3 do
  local t, user, node = ARGV[j], ARGV[j + 1], ARGV[j + 2]
  if node ~= '' and not redis.call('ZSCORE', P .. 'lease', t) then
    redis.call('ZADD', P .. 'run:' .. node, p.now, t)
    redis.call('HSET', P .. 'node', t, node)
    redis.call('HSET', P .. 'owner', t, owner)
    redis.call('HSET', P .. 'user', t, user)
  end
  if node ~= '' or redis.call('ZSCORE', P .. 'lease', t) then
    redis.call('ZADD', P .. 'lease', p.now + p.lease_ms, t)
  end
end
return 1
