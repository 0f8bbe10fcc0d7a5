#!/usr/bin/env bash
# Make sure the Redis at REDIS_URL answers. For a local URL: start redis-server when it is installed,
# install Debian's redis-server when it is missing and we may; otherwise say exactly what to do.
set -euo pipefail
url=${REDIS_URL:-redis://127.0.0.1:6379/0}
py=.venv/bin/python

ping() { "$py" -c "import redis,sys; redis.Redis.from_url(sys.argv[1], socket_timeout=1).ping()" "$url" >/dev/null 2>&1; }

if ping; then exit 0; fi

hostport=$("$py" -c "from urllib.parse import urlparse; import sys; u=urlparse(sys.argv[1]); print(u.hostname or '127.0.0.1', u.port or 6379)" "$url")
read -r host port <<<"$hostport"
case "$host" in
    127.0.0.1|localhost|::1) ;;
    *) echo "Redis at $url does not answer. Start it, or set REDIS_URL to a Redis that runs." >&2; exit 1 ;;
esac

if ! command -v redis-server >/dev/null; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
        echo "Installing redis-server from Debian's packages..."
        apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq redis-server
    else
        echo "Redis is not installed. Run: sudo apt-get install redis-server   (or set REDIS_URL to a running Redis)" >&2
        exit 1
    fi
fi

mkdir -p .run
echo "Starting a local redis-server on port $port (data in memory only; log in .run/redis.log)."
redis-server --daemonize yes --bind 127.0.0.1 --port "$port" --save "" --appendonly no \
    --dir "$PWD/.run" --logfile "$PWD/.run/redis.log" --maxmemory-policy noeviction
for _ in $(seq 1 50); do
    if ping; then exit 0; fi
    sleep 0.1
done
echo "redis-server did not come up; see .run/redis.log" >&2
exit 1
