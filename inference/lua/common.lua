-- Shared by every scheduler script (inference/queue.py prepends it). Every key of one model shares
-- the hash tag in KEYS[1] ("gh:{<model>}:"), so a script touches one Redis Cluster slot. Per-node keys
-- are built from that prefix; they are in the same slot because they carry the same tag.
--
-- Keys under P:
--   q, qb      ZSET waiting tickets (interactive, batch) scored by start-time fair queuing
--   enq        ZSET waiting tickets -> enqueue time (ms): queue depth, oldest wait, batch ageing
--   lease      ZSET every live ticket (waiting or running) -> lease expiry (ms), renewed by its owner
--   run:<node> ZSET running tickets on a node -> grant time (ms)
--   owner, user, node   HASH ticket -> owning process, person, node it runs on
--   clock, clockb       virtual clocks of q and qb (score of the last ticket granted)
--   last, lastb         HASH person -> score of that person's newest waiting ticket
--   place      HASH node -> ready | loading | draining | unloading (set by the swap actor)
--   svc        HASH avg_ms (EWMA of upstream call durations), done (count)
local P = KEYS[1]

local function drop(t)
  local node = redis.call('HGET', P .. 'node', t)
  if node then redis.call('ZREM', P .. 'run:' .. node, t) end
  redis.call('ZREM', P .. 'q', t)
  redis.call('ZREM', P .. 'qb', t)
  redis.call('ZREM', P .. 'enq', t)
  redis.call('ZREM', P .. 'lease', t)
  redis.call('HDEL', P .. 'node', t)
  redis.call('HDEL', P .. 'owner', t)
  redis.call('HDEL', P .. 'user', t)
end

-- Leases whose owner stopped renewing them (a killed web process) free their slot or queue place.
local function reap(now)
  local expired = redis.call('ZRANGEBYSCORE', P .. 'lease', '-inf', now)
  for _, t in ipairs(expired) do drop(t) end
  return #expired
end

-- Nodes (from the caller's list of healthy, enabled nodes, in preference order) where the model is
-- loaded and ready, with their free slots.
local function free_nodes(nodes, concurrency)
  local out = {}
  for _, n in ipairs(nodes) do
    if redis.call('HGET', P .. 'place', n) == 'ready' then
      local free = concurrency - redis.call('ZCARD', P .. 'run:' .. n)
      if free > 0 then out[#out + 1] = {n, free} end
    end
  end
  return out
end

-- The next ticket to serve: lowest fair score among interactive tickets, unless there are none or
-- the oldest batch ticket has waited past the batch bound.
local function next_ticket(now, batch_bound)
  local qi = redis.call('ZRANGE', P .. 'q', 0, 0, 'WITHSCORES')
  local qb = redis.call('ZRANGE', P .. 'qb', 0, 0, 'WITHSCORES')
  if #qb > 0 then
    local aged = false
    if #qi > 0 then
      local since = redis.call('ZSCORE', P .. 'enq', qb[1])
      aged = since ~= false and (now - tonumber(since)) >= batch_bound
    end
    if #qi == 0 or aged then return 'b', qb[1], qb[2] end
  end
  if #qi > 0 then return '', qi[1], qi[2] end
  return nil
end

local function grant(t, n, class, score, now, lease_ms)
  redis.call('ZREM', P .. 'q' .. class, t)
  redis.call('ZREM', P .. 'enq', t)
  redis.call('ZADD', P .. 'run:' .. n, now, t)
  redis.call('HSET', P .. 'node', t, n)
  redis.call('ZADD', P .. 'lease', now + lease_ms, t)
  redis.call('SET', P .. 'clock' .. class, score)
  -- A person whose newest ticket this was has nothing waiting: forget them (the clock covers them).
  local u = redis.call('HGET', P .. 'user', t)
  if u and redis.call('HGET', P .. 'last' .. class, u) == score then
    redis.call('HDEL', P .. 'last' .. class, u)
  end
  local owner = redis.call('HGET', P .. 'owner', t)
  if owner then redis.call('PUBLISH', 'gh:grants:' .. owner, t .. ' ' .. n) end
end

-- Grant free slots on ready nodes to waiting tickets, fairest first. Returns {ticket, node, ...}.
local function dispatch(now, lease_ms, concurrency, batch_bound, nodes)
  local granted = {}
  local free = free_nodes(nodes, concurrency)
  local i = 1
  while i <= #free do
    local class, t, score = next_ticket(now, batch_bound)
    if not class then break end
    local n = free[i][1]
    grant(t, n, class, score, now, lease_ms)
    granted[#granted + 1] = t
    granted[#granted + 1] = n
    free[i][2] = free[i][2] - 1
    if free[i][2] == 0 then i = i + 1 end
  end
  return granted
end

local function free_total(nodes, concurrency)
  local total = 0
  for _, entry in ipairs(free_nodes(nodes, concurrency)) do total = total + entry[2] end
  return total
end
