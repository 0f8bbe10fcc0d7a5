-- include: common.lua
-- dispatch(policy...): reap expired leases and grant free slots (after a load finished, a node came
-- back, a lease expired, or Redis's restart hold ended). Returns granted pairs.
local p = policy()
reap(p.now)
return dispatch(p)
