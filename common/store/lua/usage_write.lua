-- usage_write(ttl_ms, maxlen, field count, fields..., commands JSON)
-- KEYS: [1] this record's marker, [2] the usage stream, [3..] the metrics keys the commands name.
-- Adds one usage record and its /metrics counters together, once: a write retried after its reply was
-- lost finds the marker and adds nothing again. Each command is {name, key index, args...}.
-- Returns 1, or 0 when the record was already written.
if not redis.call('SET', KEYS[1], '1', 'NX', 'PX', tonumber(ARGV[1])) then return 0 end
local count = tonumber(ARGV[3])
local fields = {}
for i = 1, count do fields[i] = ARGV[3 + i] end
redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[2], '*', unpack(fields))
for _, c in ipairs(cjson.decode(ARGV[4 + count])) do
  local args = {c[1], KEYS[c[2]]}
  for i = 3, #c do args[#args + 1] = c[i] end
  redis.call(unpack(args))
end
return 1
