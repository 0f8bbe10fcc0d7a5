-- lease_renew(owner, ttl_ms): KEYS[1] is a lease that one process at a time holds (the swap actor's
-- leader, the dashboard's broadcaster). Extend it if `owner` holds it, take it if nobody does.
-- Returns 1 when `owner` holds the lease afterwards, 0 when another process does.
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('PEXPIRE', KEYS[1], ARGV[2]) end
return redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) and 1 or 0
