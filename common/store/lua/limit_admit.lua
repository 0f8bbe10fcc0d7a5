-- limit_admit(now, request_id, lease_ms, estimate, day_reset_ms, month_reset_ms, then per scope:
--             rpm, tpm, concurrent, day_quota, month_quota)
-- KEYS, per scope (the key's, then the person's; all under the person's hash tag):
--   rpm bucket, tpm bucket, concurrent set, day counter, month counter.
-- Checks every limit of both scopes first and changes nothing unless all pass, so a refused request
-- costs nothing. A limit of 0 is no limit.
-- Returns {1, req_limit, req_remaining, req_reset_ms, tok_limit, tok_remaining, tok_reset_ms} (the
-- scope with the fewest remaining, -1 where neither scope has that limit), or
-- {0, scope, limit_name, limit, retry_ms, <the same six figures>} for the limit that stays closed longest.
local now, id, lease = tonumber(ARGV[1]), ARGV[2], tonumber(ARGV[3])
local estimate = tonumber(ARGV[4])
local day_reset, month_reset = tonumber(ARGV[5]), tonumber(ARGV[6])
local SCOPES = {'key', 'person'}
local WINDOW = 60000

-- A per-minute token bucket: holds at most `limit`, refills limit/60 s. Missing = full.
-- `now` is the calling web process's clock, read before its request reached Redis: requests of
-- several processes arrive out of order, so time before the bucket's last change refills nothing
-- rather than taking back (a burst would lose places), and the bucket's time never goes back.
local stamps = {}
local function level(key, limit)
  local state = redis.call('HMGET', key, 'level', 'at')
  if not state[1] then stamps[key] = now; return limit end
  local at = tonumber(state[2])
  stamps[key] = math.max(now, at)
  local refilled = tonumber(state[1]) + math.max(0, now - at) * limit / WINDOW
  if refilled > limit then return limit end
  return refilled
end

local function ms_until(amount, have, limit)
  -- time until the bucket holds `amount`
  if have >= amount then return 0 end
  return math.ceil((amount - have) * WINDOW / limit)
end

local levels, refused = {}, nil
local function refuse(scope, name, limit, retry)
  if not refused or retry > refused[5] then refused = {0, scope, name, limit, retry} end
end

for s = 1, 2 do
  local k, a = (s - 1) * 5, 6 + (s - 1) * 5
  local rpm, tpm, conc = tonumber(ARGV[a + 1]), tonumber(ARGV[a + 2]), tonumber(ARGV[a + 3])
  local dayq, monthq = tonumber(ARGV[a + 4]), tonumber(ARGV[a + 5])
  local scope = SCOPES[s]
  if rpm > 0 then
    local have = level(KEYS[k + 1], rpm)
    levels[k + 1] = have
    if have < 1 then refuse(scope, 'requests_per_minute', rpm, ms_until(1, have, rpm)) end
  end
  if tpm > 0 then
    local have = level(KEYS[k + 2], tpm)
    levels[k + 2] = have
    -- Allowed while the bucket is not in debt and holds the prompt's estimate (or is full, for a
    -- prompt larger than the whole limit).
    local need = math.max(1, math.min(estimate, tpm))
    if have < need then refuse(scope, 'tokens_per_minute', tpm, ms_until(need, have, tpm)) end
  end
  if conc > 0 then
    redis.call('ZREMRANGEBYSCORE', KEYS[k + 3], '-inf', now)
    if redis.call('ZCARD', KEYS[k + 3]) >= conc then refuse(scope, 'concurrent_requests', conc, 1000) end
  end
  if dayq > 0 and tonumber(redis.call('GET', KEYS[k + 4]) or '0') + estimate > dayq then
    refuse(scope, 'tokens_per_day', dayq, day_reset)
  end
  if monthq > 0 and tonumber(redis.call('GET', KEYS[k + 5]) or '0') + estimate > monthq then
    refuse(scope, 'tokens_per_month', monthq, month_reset)
  end
end
local out = {1, -1, -1, 0, -1, -1, 0}
local function report(slot, limit, remaining, reset)
  if out[slot] < 0 or remaining < out[slot + 1] then
    out[slot], out[slot + 1], out[slot + 2] = limit, math.floor(math.max(0, remaining)), reset
  end
end
-- The headers describe the buckets after this request took its part (or as they are, if refused).
local take_request, take_tokens = 1, estimate
if refused then take_request, take_tokens = 0, 0 end
for s = 1, 2 do
  local k, a = (s - 1) * 5, 6 + (s - 1) * 5
  local rpm, tpm = tonumber(ARGV[a + 1]), tonumber(ARGV[a + 2])
  if rpm > 0 then
    local left = levels[k + 1] - take_request
    report(2, rpm, left, ms_until(rpm, left, rpm))
  end
  if tpm > 0 then
    local left = levels[k + 2] - take_tokens
    report(5, tpm, left, ms_until(tpm, left, tpm))
  end
end
if refused then
  for i = 2, 7 do refused[#refused + 1] = out[i] end
  return refused
end

local function store(key, value, limit)
  redis.call('HSET', key, 'level', tostring(value), 'at', stamps[key])
  -- Once full again the state is the same as missing, so let it go then.
  redis.call('PEXPIRE', key, ms_until(limit, value, limit) + 1000)
end

for s = 1, 2 do
  local k, a = (s - 1) * 5, 6 + (s - 1) * 5
  local rpm, tpm, conc = tonumber(ARGV[a + 1]), tonumber(ARGV[a + 2]), tonumber(ARGV[a + 3])
  if rpm > 0 then store(KEYS[k + 1], levels[k + 1] - 1, rpm) end
  if tpm > 0 then store(KEYS[k + 2], levels[k + 2] - estimate, tpm) end
  if conc > 0 then
    redis.call('ZADD', KEYS[k + 3], now + lease, id)
    redis.call('PEXPIRE', KEYS[k + 3], lease)
  end
  -- Quota counters are kept even without a quota, so a quota set mid-month starts from real use.
  redis.call('INCRBY', KEYS[k + 4], estimate)
  redis.call('PEXPIRE', KEYS[k + 4], day_reset + 3600000)
  redis.call('INCRBY', KEYS[k + 5], estimate)
  redis.call('PEXPIRE', KEYS[k + 5], month_reset + 3600000)
end
return out
