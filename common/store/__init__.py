"""Everything that talks to Redis goes through here: the clients (client.py), the Lua scripts and
their loader (scripts.py, lua/), and the name of every key and channel (keys.py).

No other module creates a Redis client, holds Lua source or spells a key name; tests/test_redis_access.py
checks the first two.
"""
