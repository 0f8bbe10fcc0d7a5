-- admit(now, lease_ms, concurrency, batch_bound_ms, max_queue, owner, user, class, retry, k,
--       ticket_1..ticket_k, node_1..node_m)
-- All k tickets (one per upstream call of a request) are admitted, or none. Returns
-- {admitted (1|0), waiting depth, slots on ready nodes, average call ms (or -1), granted ticket/node
-- pairs...}.
local now, lease_ms = tonumber(ARGV[1]), tonumber(ARGV[2])
local concurrency, batch_bound = tonumber(ARGV[3]), tonumber(ARGV[4])
local max_queue, owner, user, class = tonumber(ARGV[5]), ARGV[6], ARGV[7], ARGV[8]
local retry, k = ARGV[9] == '1', tonumber(ARGV[10])
local nodes = {}
for i = 11 + k, #ARGV do nodes[#nodes + 1] = ARGV[i] end

reap(now)
local granted = dispatch(now, lease_ms, concurrency, batch_bound, nodes)
local waiting = redis.call('ZCARD', P .. 'enq')
local free = free_total(nodes, concurrency)
-- Tickets beyond the free slots wait; over max_queue the whole request is refused. A retry (its node
-- failed under it) was admitted once already and goes to the front.
local ready_slots = 0
for _, n in ipairs(nodes) do
  if redis.call('HGET', P .. 'place', n) == 'ready' then ready_slots = ready_slots + concurrency end
end
local avg = tonumber(redis.call('HGET', P .. 'svc', 'avg_ms') or '-1')
if not retry and waiting + math.max(0, k - free) > max_queue then
  return {0, waiting, ready_slots, avg}
end
local clock = tonumber(redis.call('GET', P .. 'clock' .. class) or '0')
local score
if retry then
  score = clock
else
  score = math.max(clock, tonumber(redis.call('HGET', P .. 'last' .. class, user) or '0'))
end
for i = 1, k do
  local t = ARGV[10 + i]
  if not retry then score = score + 1 end
  redis.call('ZADD', P .. 'q' .. class, score, t)
  redis.call('ZADD', P .. 'enq', now, t)
  redis.call('ZADD', P .. 'lease', now + lease_ms, t)
  redis.call('HSET', P .. 'owner', t, owner)
  redis.call('HSET', P .. 'user', t, user)
end
if not retry then redis.call('HSET', P .. 'last' .. class, user, score) end
granted = dispatch(now, lease_ms, concurrency, batch_bound, nodes)
local result = {1, redis.call('ZCARD', P .. 'enq'), ready_slots, avg}
for _, v in ipairs(granted) do result[#result + 1] = v end
if result[2] > 0 then redis.call('PUBLISH', 'gh:actor:wake', P) end
return result
