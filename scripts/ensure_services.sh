#!/usr/bin/env bash
# Make sure PostgreSQL (127.0.0.1:5432) and Redis (127.0.0.1:6379) answer; start them if they are
# installed but down. Fails loudly if either cannot be reached.
set -euo pipefail

pg_up() { pg_isready -q -h 127.0.0.1 -p 5432 2>/dev/null || (exec 3<>/dev/tcp/127.0.0.1/5432) 2>/dev/null; }
redis_up() { redis-cli -h 127.0.0.1 -p 6379 ping 2>/dev/null | grep -q PONG || \
  { exec 3<>/dev/tcp/127.0.0.1/6379 && printf 'PING\r\n' >&3 && head -c 5 <&3 | grep -q PONG; } 2>/dev/null; }

wait_for() {
  local name=$1 check=$2
  for _ in $(seq 1 30); do
    if $check; then echo "$name is up"; return 0; fi
    sleep 1
  done
  echo "ERROR: $name is not reachable on 127.0.0.1" >&2
  return 1
}

if ! pg_up; then
  echo "PostgreSQL is down; starting it"
  if command -v pg_ctlcluster >/dev/null && [ -d /etc/postgresql ]; then
    pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql | head -n1)" main start || true
  else
    echo "ERROR: PostgreSQL is not installed here (need PostgreSQL 15 on 127.0.0.1:5432)" >&2
    exit 1
  fi
fi
wait_for PostgreSQL pg_up

if ! redis_up; then
  echo "Redis is down; starting it"
  if command -v redis-server >/dev/null; then
    mkdir -p /var/lib/redis /var/log/redis
    # persistent (AOF, fsync every second): a restart keeps the queued tasks (scripts/redis.conf)
    redis-server "$(dirname "$0")/redis.conf" --daemonize yes --port 6379 \
      --dir /var/lib/redis --logfile /var/log/redis/ci.log
  else
    echo "ERROR: Redis is not installed here (need Redis on 127.0.0.1:6379)" >&2
    exit 1
  fi
fi
wait_for Redis redis_up
# A Redis that was already running may have been started without persistence: say so (a restart
# of it would lose every queued task; the sweepers would re-dispatch them, but later).
if command -v redis-cli >/dev/null && \
   [ "$(redis-cli -h 127.0.0.1 -p 6379 config get appendonly 2>/dev/null | tail -n1)" = "no" ]; then
  echo "WARNING: Redis on 127.0.0.1:6379 runs without AOF persistence (see scripts/redis.conf)" >&2
fi
