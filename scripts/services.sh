#!/usr/bin/env bash
# Starts (up), stops (down) or reports (status) the services the tests and
# the production mode need, on loopback only. Idempotent: a service that
# already answers is left alone.
#
#   redis    127.0.0.1:6379  (preinstalled on the CI machine; started here if down)
#   mariadb  127.0.0.1:3306  (preinstalled; started here if down; used by the production writer)
#
# The Kafka-API broker and the 3-node Redis Cluster join this script with the
# production-backends work.
set -euo pipefail

redis_up() { redis-cli -h 127.0.0.1 -p 6379 ping 2>/dev/null | grep -q PONG; }
mariadb_up() { mariadb -h 127.0.0.1 -P 3306 -u root -e 'SELECT 1' >/dev/null 2>&1; }

wait_for() { # name, probe function, tries of 0.1 s
  local name=$1 probe=$2 tries=${3:-100}
  for _ in $(seq 1 "$tries"); do
    if $probe; then return 0; fi
    sleep 0.1
  done
  echo "services: $name did not come up" >&2
  return 1
}

up() {
  if ! redis_up; then
    command -v redis-server >/dev/null || { echo "services: redis-server is not installed (apt-get install redis-server)" >&2; exit 1; }
    mkdir -p /var/lib/redis /var/log/redis
    redis-server --daemonize yes --bind 127.0.0.1 -::1 --port 6379 --save "" --appendonly no \
      --dir /var/lib/redis --logfile /var/log/redis/ci.log
    wait_for redis redis_up
  fi
  if ! mariadb_up; then
    if command -v mariadbd >/dev/null || [ -x /usr/sbin/mariadbd ]; then
      start-stop-daemon --start --oknodo --background --exec /usr/sbin/mariadbd
      wait_for mariadb mariadb_up 300
    else
      echo "services: mariadb is not installed; the production writer tests will need it" >&2
    fi
  fi
  status
}

status() {
  redis_up && echo "redis    127.0.0.1:6379 up" || echo "redis    127.0.0.1:6379 DOWN"
  mariadb_up && echo "mariadb  127.0.0.1:3306 up" || echo "mariadb  127.0.0.1:3306 DOWN"
}

down() {
  # The machine's own Redis and MariaDB are shared with other work: leave them.
  echo "services: nothing of ours to stop yet"
}

case "${1:-status}" in
  up) up ;;
  down) down ;;
  status) status ;;
  *) echo "usage: $0 up|down|status" >&2; exit 2 ;;
esac
