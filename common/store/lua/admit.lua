-- include: common.lua
-- admit(policy..., owner, user, class, retry, k, ticket_1..ticket_k)
-- All k tickets (one per upstream call of a request) are admitted, or none. A request is admitted
-- while the requests in the model's system (running and waiting) exceed the slots it has or will have
-- (ready, loading, or about to be loaded) by at most max_queue; an interactive request does not count
-- the batch tickets waiting behind it. A retry (its node failed under it, or Redis lost its ticket) was
-- admitted once already and goes to the front.
-- Admitting tickets that exist already (a call retried after its reply was lost) changes nothing.
-- Returns {1, waiting, position, eta_ms, granted ticket/node pairs...}: the position and expected wait
-- of the request's first waiting ticket (0, 0 if all were granted); or {0, waiting, retry_after_ms}
-- for a refusal: the moment a place should be free for it, reserved so that refused requests come
-- back one after another rather than all at once (not for a batch ticket).
local p, i = policy()
local owner, user, class = ARGV[i], ARGV[i + 1], ARGV[i + 2]
local retry, k = ARGV[i + 3] == '1', tonumber(ARGV[i + 4])
local tickets = {}
for j = 1, k do tickets[j] = ARGV[i + 4 + j] end
QUIET = owner
local MAX_RETRY_AFTER_MS = 60000  -- the OpenAI SDKs ignore longer values

local function answer(granted)
  local out = {1, redis.call('ZCARD', P .. 'enq'), 0, 0}
  for _, t in ipairs(tickets) do
    local pos = position_of(t)
    if pos then
      local grants = grant_times(slots_forecast(p), pos)
      out[3] = pos
      out[4] = grants[pos] and math.max(0, grants[pos] - p.now) or -1
      break
    end
  end
  for _, v in ipairs(granted) do out[#out + 1] = v end
  return out
end

if redis.call('HEXISTS', P .. 'owner', tickets[1]) == 1 then
  local granted = {}
  for _, t in ipairs(tickets) do
    local n = redis.call('HGET', P .. 'node', t)
    if n then granted[#granted + 1] = t; granted[#granted + 1] = n end
  end
  return answer(granted)
end

reap(p.now)
local granted = dispatch(p)
local waiting = redis.call('ZCARD', P .. 'enq')
local f = slots_forecast(p)
-- Batch tickets wait behind every interactive one (bar those aged past the batch bound), so an interactive
-- request does not count them: a batch never takes the queue place of someone at a keyboard. A batch
-- ticket counts everything, so batch lines alone never fill more than the queue (and the batch feeder
-- keeps only a few per slot in flight: batches/feeder.py).
local counted = waiting
if class == '' then counted = waiting - redis.call('ZCARD', P .. 'qb') end
-- Beyond the slots it has or will have, how many requests would wait with this one in.
local beyond = counted + f.running + k - f.capacity

-- Reservations: a refused request was told when to come back. A place that opens at that moment is
-- kept for it for a while (`window`): others arriving meanwhile count it as taken. The person who
-- holds a due reservation claims it (any of their requests may: they are the same person's share).
local window = math.floor(math.max(1000, math.min(5000, f.call_ms)))
for _, r in ipairs(redis.call('ZRANGEBYSCORE', P .. 'resv', '-inf', p.now - window)) do
  redis.call('ZREM', P .. 'resv', r)
  redis.call('HDEL', P .. 'resvuser', r)
end
local due = redis.call('ZRANGEBYSCORE', P .. 'resv', '-inf', p.now)
local mine, held_for_others = nil, 0
for _, r in ipairs(due) do
  -- A batch line never claims its person's reservation: that place was promised to an interactive call.
  if class == 'b' or redis.call('HGET', P .. 'resvuser', r) ~= user then
    held_for_others = held_for_others + 1
  elseif not mine then
    mine = r
  end
end
-- Places open one per call that ends: at most the model's slots can be waiting for their holders at
-- once, however many refused clients (some long gone) were told to come back about now.
held_for_others = math.min(held_for_others, f.capacity)
if not retry and beyond + held_for_others > p.max_queue then
  -- Places open as calls end. This request fits after `beyond - max_queue` more calls have ended,
  -- plus one for each reservation handed out before it. One who comes back with a due reservation
  -- and still finds no room keeps their turn: only the reservations due before theirs go first.
  local ahead
  if mine then
    ahead = redis.call('ZCOUNT', P .. 'resv', '-inf', '(' .. redis.call('ZSCORE', P .. 'resv', mine))
    redis.call('ZREM', P .. 'resv', mine)
    redis.call('HDEL', P .. 'resvuser', mine)
  else
    ahead = redis.call('ZCARD', P .. 'resv')
  end
  -- When to come back: a little after the c-th call from now ends, so the retry finds its place
  -- already free: a quarter of a call's time, since calls run late by that much when the node or the
  -- web processes are busy (a client that returns on the dot of an early forecast is refused once more).
  local function retry_after(c)
    local at = completion_at(f, c)
    if not at then return MAX_RETRY_AFTER_MS end
    return math.min(MAX_RETRY_AFTER_MS, math.floor(math.max(1, at - p.now) + math.min(1000, f.call_ms / 4)))
  end
  local c = math.max(1, beyond - p.max_queue + ahead)
  local retry_ms = retry_after(c)
  -- A place is promised once. One who keeps their turn goes before the reservations handed out after
  -- theirs, but not before others already due back by the new moment: others of the person refused
  -- again just now, or later turns that fall before it. Without this, all of one person's requests
  -- refused again at one moment are told the same next place, and all but one lose it again.
  if mine then
    for _ = 1, 64 do
      local taken = redis.call('ZCOUNT', P .. 'resv', '(' .. p.now, p.now + retry_ms)
      local wanted = math.max(1, beyond - p.max_queue + ahead + taken)
      if wanted <= c or retry_ms >= MAX_RETRY_AFTER_MS then break end
      c = wanted
      retry_ms = retry_after(c)
    end
  end
  -- A refused batch line reserves nothing: the feeder holds back the model's lines until then anyway,
  -- and a reservation would keep a place from interactive callers.
  if class == 'b' then return {0, waiting, retry_ms} end
  redis.call('ZADD', P .. 'resv', p.now + retry_ms, tickets[1])
  redis.call('HSET', P .. 'resvuser', tickets[1], user)
  redis.call('PEXPIRE', P .. 'resv', retry_ms + window + 1000)
  redis.call('PEXPIRE', P .. 'resvuser', retry_ms + window + 1000)
  return {0, waiting, retry_ms}
end
if mine then
  redis.call('ZREM', P .. 'resv', mine)
  redis.call('HDEL', P .. 'resvuser', mine)
end
local clock = tonumber(redis.call('GET', P .. 'clock' .. class) or '0')
local score
if retry then
  score = clock
else
  score = math.max(clock, tonumber(redis.call('HGET', P .. 'last' .. class, user) or '0'))
end
for _, t in ipairs(tickets) do
  if not retry then score = score + 1 end
  redis.call('ZADD', P .. 'q' .. class, score, t)
  redis.call('ZADD', P .. 'enq', p.now, t)
  redis.call('ZADD', P .. 'lease', p.now + p.lease_ms, t)
  redis.call('HSET', P .. 'owner', t, owner)
  redis.call('HSET', P .. 'user', t, user)
end
if not retry then redis.call('HSET', P .. 'last' .. class, user, score) end
for _, v in ipairs(dispatch(p)) do granted[#granted + 1] = v end
if redis.call('ZCARD', P .. 'enq') > 0 then redis.call('PUBLISH', 'gh:actor:wake', P) end
return answer(granted)
