-- last_used_forget(member_1, score_1, ..., member_n, score_n): KEYS[1] is the sorted set of API keys'
-- last uses (apiaccess/last_used.py). Drop the members that still hold the score the flush copied to
-- the database: a newer use since then stays for the next flush. Scores as Redis prints them.
for i = 1, #ARGV, 2 do
  if redis.call('ZSCORE', KEYS[1], ARGV[i]) == ARGV[i + 1] then
    redis.call('ZREM', KEYS[1], ARGV[i])
  end
end
return 0
