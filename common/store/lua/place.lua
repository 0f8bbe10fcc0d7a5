-- include: common.lua
-- place(node, state, now[, load_ms]): the swap actor's placement changes, checked against running tickets.
--   ready | loading      set unconditionally (loading records when it began; ready after a load
--                        folds the load's duration, load_ms, into the measured load time)
--   unloading            only when nothing runs on the node; else "draining" (no new grants) -> 0
--   gone                 forget the placement
-- Returns 1 when the requested state was set.
local node, state, now = ARGV[1], ARGV[2], tonumber(ARGV[3])
local load_ms = tonumber(ARGV[4] or '-1')
reap(now)
if not redis.call('GET', P .. 'born') then redis.call('SET', P .. 'born', now) end
redis.call('HDEL', P .. 'loadstart', node)
if state == 'gone' then
  redis.call('HDEL', P .. 'place', node)
  return 1
end
if state == 'unloading' and redis.call('ZCARD', P .. 'run:' .. node) > 0 then
  redis.call('HSET', P .. 'place', node, 'draining')
  return 0
end
if state == 'loading' then redis.call('HSET', P .. 'loadstart', node, now) end
if state == 'ready' and load_ms >= 0 then
  local avg = tonumber(redis.call('HGET', P .. 'svc', 'load_ms') or load_ms)
  redis.call('HSET', P .. 'svc', 'load_ms', math.floor(avg * 0.7 + load_ms * 0.3))
end
redis.call('HSET', P .. 'place', node, state)
return 1
