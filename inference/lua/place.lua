-- place(node, state, now): the swap actor's placement changes, checked against running tickets.
--   ready | loading      set unconditionally
--   unloading            only when nothing runs on the node; else "draining" (no new grants) -> 0
--   gone                 forget the placement
-- Returns 1 when the requested state was set.
local node, state = ARGV[1], ARGV[2]
reap(tonumber(ARGV[3]))
if state == 'gone' then
  redis.call('HDEL', P .. 'place', node)
  return 1
end
if state == 'unloading' and redis.call('ZCARD', P .. 'run:' .. node) > 0 then
  redis.call('HSET', P .. 'place', node, 'draining')
  return 0
end
redis.call('HSET', P .. 'place', node, state)
return 1
