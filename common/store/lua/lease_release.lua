-- lease_release(owner): give up the lease KEYS[1] if `owner` holds it (see lease_renew), so another
-- process may take it at once; a lease another process took meanwhile is left alone.
if redis.call('GET', KEYS[1]) == ARGV[1] then redis.call('DEL', KEYS[1]) end
