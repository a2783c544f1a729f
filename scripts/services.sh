#!/usr/bin/env bash
# Starts (up), stops (down) or reports (status) the services the tests and
# the production mode need, on loopback only. Idempotent: a service that
# already answers is left alone.
#
#   redis    127.0.0.1:6379  (preinstalled on the CI machine; started here if down)
#   mariadb  127.0.0.1:3306  (preinstalled; started here if down; used by the production writer)
#   redis cluster 127.0.0.1:7000-7002 (3 masters, no replicas, nothing on disk), for the cluster tests
#   kafka    127.0.0.1:9092  (tansu, a Kafka-API broker in Rust, SQLite storage; built here with
#            cargo install the first time, about 15 minutes)
#   nginx    installed only (Debian's package, by scripts/lb.sh install): the CDN and load
#            balancer of the production shape; scripts/lb.sh up starts one per use
#
# The Kafka fault tests also call: kafka-stop (TERM, then KILL), kafka-kill (KILL at once),
# kafka-start (restart on the same storage), kafka-pause / kafka-resume (SIGSTOP / SIGCONT).
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

# ---------------------------------------------------------------- kafka (tansu)
# The broker keeps its SQLite storage, log and pid file under $KAFKA_DIR, so a
# restart (kafka-stop, then kafka-start) finds every acknowledged message again.
TOOLS_DIR=${SECKILL_TOOLS_DIR:-/var/tmp/seckill-tools}
TANSU=$TOOLS_DIR/bin/tansu
KAFKA_DIR=${SECKILL_SERVICES_DIR:-/var/tmp/seckill-services}/tansu
KAFKA_PID_FILE=$KAFKA_DIR/tansu.pid
KAFKA_PORT=9092

kafka_pid() { # prints the broker's pid when its pid file names a live tansu
  local pid
  pid=$(cat "$KAFKA_PID_FILE" 2>/dev/null) || return 1
  [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null && grep -q tansu "/proc/$pid/cmdline" 2>/dev/null || return 1
  echo "$pid"
}

# A Metadata v4 request (all topics) by hand: a broker that answers it with our
# correlation id is up for clients, which an open port alone does not show.
kafka_up() {
  local reply
  # The braces keep the 2>/dev/null from becoming permanent for the whole script.
  { exec 3<>"/dev/tcp/127.0.0.1/$KAFKA_PORT"; } 2>/dev/null || return 1
  # size 20 | api_key 3 | version 4 | correlation 0x5eccd11 | client_id "probe" | topics null | no auto-create
  printf '\x00\x00\x00\x14\x00\x03\x00\x04\x05\xec\xcd\x11\x00\x05probe\xff\xff\xff\xff\x00' >&3
  reply=$(timeout 2 head -c 8 <&3 | od -An -tx1 | tr -d ' \n') || true
  exec 3<&- 3>&-
  [ "${reply:8:8}" = "05eccd11" ]
}

kafka_install() {
  [ -x "$TANSU" ] && return 0
  echo "services: installing the tansu broker into $TOOLS_DIR (cargo install, about 15 minutes)" >&2
  cargo install --locked --root "$TOOLS_DIR" tansu --version '^0.6' --features libsql
}

kafka_start() {
  kafka_install
  if kafka_pid >/dev/null; then
    kafka_resume
    wait_for kafka kafka_up 50 2>/dev/null && return 0
    # Alive but not answering: tansu 0.6's storage task can die (a panic) while
    # the process lives on, so restart it on the same storage.
    echo "services: kafka (pid $(kafka_pid || echo '?')) does not answer; restarting it" >&2
    kafka_stop KILL
  fi
  mkdir -p "$KAFKA_DIR"
  rm -f "$KAFKA_PID_FILE"
  # In a session of its own (setsid), so that whoever ran this script (a test
  # restarting the broker, a CI step) does not take the broker down with its
  # process group. The shell writes its own pid, then becomes the broker.
  # The storage URL is relative, so the broker runs in its own directory.
  (cd "$KAFKA_DIR" && setsid -f sh -c 'echo $$ >"$1"; shift; exec "$@"' sh "$KAFKA_PID_FILE" \
    "$TANSU" broker --listener-url "tcp://127.0.0.1:$KAFKA_PORT" \
    --advertised-listener-url "tcp://127.0.0.1:$KAFKA_PORT" --storage-engine sqlite://tansu.db \
    >>"$KAFKA_DIR/tansu.log" 2>&1 </dev/null)
  wait_for kafka kafka_up 300 || { echo "services: see $KAFKA_DIR/tansu.log" >&2; return 1; }
}

kafka_stop() { # signal: TERM (then KILL after 10 s) or KILL
  local pid sig=${1:-TERM}
  pid=$(kafka_pid) || { rm -f "$KAFKA_PID_FILE"; return 0; }
  kill -CONT "$pid" 2>/dev/null || true # a paused broker cannot act on TERM
  kill -"$sig" "$pid" 2>/dev/null || true
  for _ in $(seq 1 100); do
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.1
  done
  kill -KILL "$pid" 2>/dev/null || true
  rm -f "$KAFKA_PID_FILE"
}

kafka_pause() { local pid; pid=$(kafka_pid) || { echo "services: kafka is not running" >&2; return 1; }; kill -STOP "$pid"; }
kafka_resume() { local pid; pid=$(kafka_pid) || { echo "services: kafka is not running" >&2; return 1; }; kill -CONT "$pid"; }

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
      echo "services: mariadb is not installed (apt-get install mariadb-server); the MySQL store tests need it" >&2
      exit 1
    fi
  fi
  kafka_up || kafka_start
  # Not fatal: only the tests behind nginx need it, and `lb.sh up` tries again.
  bash "$(dirname "$0")/lb.sh" install \
    || echo "services: nginx could not be installed (bash scripts/lb.sh install); the tests behind nginx will fail" >&2
  status
}

status() {
  redis_up && echo "redis    127.0.0.1:6379 up" || echo "redis    127.0.0.1:6379 DOWN"
  mariadb_up && echo "mariadb  127.0.0.1:3306 up" || echo "mariadb  127.0.0.1:3306 DOWN"
  cluster_up && echo "redis cluster 127.0.0.1:7000-7002 up" || echo "redis cluster 127.0.0.1:7000-7002 DOWN"
  if kafka_up; then echo "kafka    127.0.0.1:$KAFKA_PORT up (tansu pid $(kafka_pid || echo '?'))"
  elif kafka_pid >/dev/null && grep -q '^State:.*T' "/proc/$(kafka_pid)/status"; then echo "kafka    127.0.0.1:$KAFKA_PORT PAUSED"
  else echo "kafka    127.0.0.1:$KAFKA_PORT DOWN"; fi
}

down() {
  # The machine's own Redis and MariaDB are shared with other work: leave them.
  local p
  for p in $CLUSTER_PORTS; do
    redis-cli -h 127.0.0.1 -p "$p" shutdown nosave >/dev/null 2>&1 || true
  done
  rm -rf "${CLUSTER_DIR:?}"
  kafka_stop TERM # its storage stays, like a real broker's
  status
}

case "${1:-status}" in
  up) up ;;
  down) down ;;
  status) status ;;
  kafka-start) kafka_start ;;
  kafka-stop) kafka_stop TERM ;;
  kafka-kill) kafka_stop KILL ;;
  kafka-pause) kafka_pause ;;
  kafka-resume) kafka_resume ;;
  *) echo "usage: $0 up|down|status|kafka-start|kafka-stop|kafka-kill|kafka-pause|kafka-resume" >&2; exit 2 ;;
esac
