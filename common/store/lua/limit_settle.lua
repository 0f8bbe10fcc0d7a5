-- limit_settle(now, request_id, delta, day_reset_ms, month_reset_ms, then per scope: tpm, concurrent)
-- KEYS as for limit_admit, then a marker key of this settlement (under the person's hash tag too). A
-- request has ended: free its concurrent place and charge the tokens it used beyond the estimate
-- admission reserved (`delta` may be negative: a refund). Idempotent: a settlement retried after its
-- reply was lost finds the marker and charges nothing twice. Returns 1, or 0 when already settled.
local now, id, delta = tonumber(ARGV[1]), ARGV[2], tonumber(ARGV[3])
if not redis.call('SET', KEYS[11], '1', 'NX', 'PX', 3600000) then return 0 end
local day_reset, month_reset = tonumber(ARGV[4]), tonumber(ARGV[5])
local WINDOW = 60000
for s = 1, 2 do
  local k, a = (s - 1) * 5, 5 + (s - 1) * 2
  local tpm, conc = tonumber(ARGV[a + 1]), tonumber(ARGV[a + 2])
  if conc > 0 then redis.call('ZREM', KEYS[k + 3], id) end
  if tpm > 0 and delta ~= 0 then
    local state = redis.call('HMGET', KEYS[k + 2], 'level', 'at')
    local have, at = tpm, now
    if state[1] then
      -- A settlement can land long after it was stamped (the outbox retries through an outage):
      -- time before the bucket's last change refills nothing, and the bucket's time never goes back.
      local last = tonumber(state[2])
      at = math.max(now, last)
      have = math.min(tpm, tonumber(state[1]) + math.max(0, now - last) * tpm / WINDOW)
    end
    -- May go below zero: a request that used more than was left puts the bucket in debt, and
    -- nothing more is admitted until it has refilled.
    local left = math.min(tpm, have - delta)
    redis.call('HSET', KEYS[k + 2], 'level', tostring(left), 'at', at)
    redis.call('PEXPIRE', KEYS[k + 2], math.ceil((tpm - left) * WINDOW / tpm) + 1000)
  end
  if delta ~= 0 then
    redis.call('INCRBY', KEYS[k + 4], delta)
    redis.call('PEXPIRE', KEYS[k + 4], day_reset + 3600000)
    redis.call('INCRBY', KEYS[k + 5], delta)
    redis.call('PEXPIRE', KEYS[k + 5], month_reset + 3600000)
  end
end
return 1
