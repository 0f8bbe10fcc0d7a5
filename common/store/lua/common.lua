-- Shared by every scheduler script: each starts with the line `-- include: common.lua`, and the loader
-- (common/store/scripts.py) puts this file before it. Every key of one model shares the hash tag in
-- KEYS[1] ("gh:{<model>}:", common/store/keys.py `model_prefix`), so a script touches one Redis
-- Cluster slot. Per-node keys are built from that prefix; they are in the same slot because they
-- carry the same tag.
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
--   loadstart  HASH node -> when its load began (ms), while the place is "loading"
--   svc        HASH avg_ms (EWMA of upstream call durations), done (count), load_ms (EWMA of loads)
--   born       STRING when this model's state was first written (ms): missing after Redis lost its data
--   resv       ZSET retry reservations handed to refused requests -> the moment they were told to return
--   resvuser   HASH reservation -> the person who holds it
--
-- Every script that may grant takes the same policy arguments first (see `policy`).
local P = KEYS[1]
-- The process that called this script reads its grants from the reply: no message to it is needed.
local QUIET = ''
-- Guesses used until a model has been measured.
local CALL_MS_GUESS = 5000
local LOAD_MS_GUESS = 10000

-- ARGV[1..7]: now, lease_ms, concurrency, batch_bound_ms, max_queue, hold_until_ms, grace_ms; then the
-- number of nodes and the nodes (healthy, enabled, that have the model, in preference order). Returns
-- the policy table and the index of the first argument after it.
--
-- The restart hold: grants wait until hold_until (the caller's view: Redis's start + grace), and in any
-- case until `grace` after this model's state was born. A Redis that lost its data has no `born`, so
-- the first script to run after a restart starts the hold, whatever the caller knows yet: the web
-- processes put back the calls they still run before anything new is granted.
local function policy()
  local p = {now = tonumber(ARGV[1]), lease_ms = tonumber(ARGV[2]), concurrency = tonumber(ARGV[3]),
             batch_bound = tonumber(ARGV[4]), max_queue = tonumber(ARGV[5]), hold_until = tonumber(ARGV[6]),
             nodes = {}}
  local born = tonumber(redis.call('GET', P .. 'born') or '0')
  if born == 0 then
    born = p.now
    redis.call('SET', P .. 'born', born)
  end
  p.hold_until = math.max(p.hold_until, born + tonumber(ARGV[7]))
  local count = tonumber(ARGV[8])
  for i = 1, count do p.nodes[i] = ARGV[8 + i] end
  return p, 9 + count
end

-- Memos of one script call (see place_of and runs_on below).
local places, running_nodes

local function drop(t)
  running_nodes = nil
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

-- A node's placement, from one HGETALL per script call: the scripts walk every node that has the
-- model (dozens in a large fleet), where it is placed on a few, and an HGET for each cost most of the
-- request path's Redis time (bench/scale). Only place.lua writes the hash, and it reads none of it.
local function place_of(n)
  if not places then
    places = {}
    local flat = redis.call('HGETALL', P .. 'place')
    for i = 1, #flat, 2 do places[flat[i]] = flat[i + 1] end
  end
  return places[n]
end

-- Whether calls of the model run on a node (the values of HASH node), read once and read again after
-- a grant or a drop changed them.
local function runs_on(n)
  if not running_nodes then
    running_nodes = {}
    for _, node in ipairs(redis.call('HVALS', P .. 'node')) do running_nodes[node] = true end
  end
  return running_nodes[n] == true
end

-- Ready nodes with free slots, as {node, free} in preference order.
local function free_nodes(p)
  local out = {}
  for _, n in ipairs(p.nodes) do
    if place_of(n) == 'ready' then
      local free = p.concurrency - redis.call('ZCARD', P .. 'run:' .. n)
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
  running_nodes = nil
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
  -- A sharded channel in this model's slot (keys.grant_channel): on a cluster, only this shard carries it.
  if owner and owner ~= QUIET then redis.call('SPUBLISH', P .. 'g:' .. owner, t .. ' ' .. n) end
end

-- Grant free slots on ready nodes to waiting tickets, fairest first, each on the node with the most
-- free slots (so a model loaded on two nodes uses both at once). Nothing is granted while Redis is
-- new (hold_until): the web processes are still re-asserting the calls they run. Returns
-- {ticket, node, ...}.
local function dispatch(p)
  local granted = {}
  if p.now < p.hold_until then return granted end
  local free = free_nodes(p)
  while #free > 0 do
    local class, t, score = next_ticket(p.now, p.batch_bound)
    if not class then break end
    local best = 1
    for i = 2, #free do
      if free[i][2] > free[best][2] then best = i end
    end
    local n = free[best][1]
    grant(t, n, class, score, p.now, p.lease_ms)
    granted[#granted + 1] = t
    granted[#granted + 1] = n
    free[best][2] = free[best][2] - 1
    if free[best][2] == 0 then table.remove(free, best) end
  end
  return granted
end

local function avg_call_ms()
  return tonumber(redis.call('HGET', P .. 'svc', 'avg_ms') or CALL_MS_GUESS)
end

-- A forecast of the model's slots: the moments each slot the model has or will have becomes free,
-- the expected ends of the calls running now (sorted), the total capacity, and the average call.
-- Ready nodes: a running call ends about one average call after its grant (one already past the
-- average, as late again as it is now); an idle slot is free now, or when the hold ends. A
-- node where the model is loading brings its slots when the load is expected to end (measured load
-- time). A cold model (nowhere ready or loading) will be loaded by the swap actor on one node: it
-- counts that node's slots, free after one load.
local function slots_forecast(p)
  local free_at, ends = {}, {}
  local call_ms = avg_call_ms()
  local load_ms = tonumber(redis.call('HGET', P .. 'svc', 'load_ms') or LOAD_MS_GUESS)
  local start = math.max(p.now, p.hold_until)
  for _, n in ipairs(p.nodes) do
    local place = place_of(n)
    -- Calls run on a node Redis has no placement for after a restart (re-asserted): it is loaded.
    if not place and runs_on(n) then place = 'ready' end
    if place == 'ready' then
      local runs = redis.call('ZRANGE', P .. 'run:' .. n, 0, -1, 'WITHSCORES')
      for i = 2, #runs, 2 do
        local done = tonumber(runs[i]) + call_ms
        -- A call past its forecast end is a long one: expect it to run late by as much again (at least
        -- a quarter call), not to end this instant, or every client told to come back then finds the
        -- queue as full as before and spends its retries a quarter call apart.
        if done < p.now then done = p.now + math.max(p.now - done, call_ms / 4) end
        done = math.max(start, done)
        free_at[#free_at + 1] = done
        ends[#ends + 1] = done
      end
      for _ = #runs / 2 + 1, p.concurrency do free_at[#free_at + 1] = start end
    elseif place == 'loading' then
      local began = tonumber(redis.call('HGET', P .. 'loadstart', n) or p.now)
      for _ = 1, p.concurrency do free_at[#free_at + 1] = math.max(start, began + load_ms) end
    end
  end
  if #free_at == 0 and #p.nodes > 0 then
    for _ = 1, p.concurrency do free_at[#free_at + 1] = start + load_ms end
  end
  table.sort(ends)
  return {free_at = free_at, ends = ends, capacity = #free_at, running = #ends, call_ms = call_ms}
end

-- When the first `count` tickets of the queue will be granted, in queue order, if each takes the
-- earliest free slot for one average call. Returns their grant moments (ms).
local function grant_times(f, count)
  local free_at, out = {}, {}
  for i, t in ipairs(f.free_at) do free_at[i] = t end
  if #free_at == 0 then return out end
  for j = 1, math.min(count, 5000) do
    local best = 1
    for i = 2, #free_at do
      if free_at[i] < free_at[best] then best = i end
    end
    out[j] = free_at[best]
    free_at[best] = out[j] + f.call_ms
  end
  return out
end

-- The moment the c-th call from now ends: first the running calls, then the queue's in order.
local function completion_at(f, c)
  if c <= #f.ends then return f.ends[c] end
  local grants = grant_times(f, c - #f.ends)
  if #grants == 0 then return nil end
  return grants[#grants] + f.call_ms
end

-- A waiting ticket's place in the queue (1 = next), counting interactive tickets before batch ones.
local function position_of(t)
  local r = redis.call('ZRANK', P .. 'q', t)
  if r then return r + 1 end
  r = redis.call('ZRANK', P .. 'qb', t)
  if r then return r + 1 + redis.call('ZCARD', P .. 'q') end
  return nil
end
