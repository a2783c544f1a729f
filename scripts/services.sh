#!/usr/bin/env bash
# Starts (up), stops (down) or reports (status) the services the tests and
# the production mode need, on loopback only. Idempotent: a service that
# already answers is left alone.
#
#   redis    127.0.0.1:6379  (preinstalled on the CI machine; started here if down)
#   mariadb  127.0.0.1:3306  (preinstalled; started here if down; used by the production writer)
#   redis cluster 127.0.0.1:7000-7002 (3 masters, no replicas, nothing on disk), for the cluster tests
#
# The Kafka-API broker joins this script with the rest of the production backends.
set -euo pipefail

redis_up() { redis-cli -h 127.0.0.1 -p 6379 ping 2>/dev/null | grep -q PONG; }
mariadb_up() { mariadb -h 127.0.0.1 -P 3306 -u root -e 'SELECT 1' >/dev/null 2>&1; }
CLUSTER_PORTS="7000 7001 7002"
CLUSTER_DIR=${SECKILL_SERVICES_DIR:-/var/tmp/seckill-services}/redis-cluster
cluster_up() { redis-cli -h 127.0.0.1 -p 7000 cluster info 2>/dev/null | grep -q 'cluster_state:ok'; }
node_up() { redis-cli -h 127.0.0.1 -p "$1" ping 2>/dev/null | grep -q PONG; }

cluster_start() {
  local p
  for p in $CLUSTER_PORTS; do
    if ! node_up "$p"; then
      # A fresh node each time: a stale nodes.conf would remember a topology
      # whose nodes are gone.
      rm -rf "${CLUSTER_DIR:?}/$p" && mkdir -p "$CLUSTER_DIR/$p"
      redis-server --daemonize yes --bind 127.0.0.1 --port "$p" --cluster-enabled yes \
        --cluster-config-file "$CLUSTER_DIR/$p/nodes.conf" --cluster-node-timeout 2000 \
        --dir "$CLUSTER_DIR/$p" --save "" --appendonly no --logfile "$CLUSTER_DIR/$p/redis.log"
    fi
  done
  for p in $CLUSTER_PORTS; do
    wait_for "redis node $p" "node_up $p"
  done
  if ! cluster_up; then
    # Nodes that already know each other but lost slots (a partial restart)
    # are reset so that create starts from a clean slate.
    for p in $CLUSTER_PORTS; do
      redis-cli -h 127.0.0.1 -p "$p" flushall >/dev/null 2>&1 || true
      redis-cli -h 127.0.0.1 -p "$p" cluster reset hard >/dev/null 2>&1 || true
    done
    redis-cli --cluster create 127.0.0.1:7000 127.0.0.1:7001 127.0.0.1:7002 \
      --cluster-replicas 0 --cluster-yes >/dev/null
    wait_for "redis cluster" cluster_up 200
  fi
}

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
  cluster_up || cluster_start
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
  cluster_up && echo "redis cluster 127.0.0.1:7000-7002 up" || echo "redis cluster 127.0.0.1:7000-7002 DOWN"
}

down() {
  # The machine's own Redis and MariaDB are shared with other work: leave them.
  local p
  for p in $CLUSTER_PORTS; do
    redis-cli -h 127.0.0.1 -p "$p" shutdown nosave >/dev/null 2>&1 || true
  done
  rm -rf "${CLUSTER_DIR:?}"
  status
}

case "${1:-status}" in
  up) up ;;
  down) down ;;
  status) status ;;
  *) echo "usage: $0 up|down|status" >&2; exit 2 ;;
esac
