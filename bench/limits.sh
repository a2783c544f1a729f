#!/usr/bin/env bash
# The limits of this machine and how close the engine comes to them, in one run (issue 10), written
# to BENCHMARKS.md by `seckill-bench report`. Every HTTP figure is seckill-bench, closed loop, with
# the same connections (LIMITS_CONNECTIONS, 64) for LIMITS_SECONDS (10) against release builds:
#
#   nginx static 200 (access log off) -> the HTTP limit
#   gateway /healthz, GET campaign, grab (memory ledger, every grab wins), full funnel, sold out
#   a realistic sale: 10,000 units, 1,000,000 distinct buyers, open loop at half the sold-out rate,
#     then the gateway's RSS
#   resident bytes per winning order (RSS slope over 200,000 winners after a 100,000-winner warm-up)
#   redis-benchmark EVALSHA of the grab's RESERVE script at the same concurrency -> the Redis limit
#   broker produce (idempotent, acks=all, order records) -> the Kafka limit
#   grab with the Redis ledger + Kafka log + MySQL writer, every grab wins
#   MySQL raw multi-row insert rows/s -> the store limit; the order writer's drain rows/s
#
# Usage: bash bench/limits.sh      (about 5 minutes after the build; needs scripts/services.sh up,
#                                   which it runs, and Debian nginx, which scripts/lb.sh installs)
# Results: bench/results/limits.jsonl, charts in bench/results/, the report in BENCHMARKS.md.
# Everything listens on 127.0.0.1 only; every run is bounded in time.
set -euo pipefail
cd "$(dirname "$0")/.."

TARGET_DIR=${CARGO_TARGET_DIR:-/var/tmp/seckill-target}
SECS=${LIMITS_SECONDS:-10}
CONNS=${LIMITS_CONNECTIONS:-64}
RESULTS_DIR=bench/results
RESULTS=$RESULTS_DIR/limits.jsonl
ADMIN_TOKEN=limits-admin-token-0123456789
JWT_SECRET=limits-jwt-secret-0123456789abcdef0123
export SECKILL_ADMIN_TOKEN=$ADMIN_TOKEN SECKILL_JWT_SECRET=$JWT_SECRET SECKILL_LOG=warn
say() { echo "limits: $*" >&2; }
die() { say "ERROR: $*"; exit 1; }

say "building the release binaries"
cargo build --release --locked --quiet -p gateway --bin seckill -p bench --bin seckill-bench
SECKILL=$TARGET_DIR/release/seckill
BENCH=$TARGET_DIR/release/seckill-bench
say "services (Redis, MariaDB, broker) and nginx"
bash scripts/services.sh up >/dev/null
bash scripts/lb.sh install >/dev/null
NGINX=${NGINX:-/usr/sbin/nginx}

WORK=$(mktemp -d "${TMPDIR:-/tmp}/seckill-limits.XXXXXX")
PIDS=()
DB=
cleanup() {
  for p in "${PIDS[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
  for p in "${PIDS[@]}"; do
    for _ in $(seq 1 100); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$p" 2>/dev/null || true
  done
  [ -n "$DB" ] && mariadb -h 127.0.0.1 -u root -e "DROP DATABASE IF EXISTS $DB" 2>/dev/null
  redis-cli -h 127.0.0.1 -p 6379 --scan --pattern 'seckill-limits:*' | xargs -r -n 500 redis-cli -h 127.0.0.1 -p 6379 del >/dev/null
  rm -rf "$WORK"
}
trap cleanup EXIT
mkdir -p "$RESULTS_DIR"
: > "$RESULTS"

# Runs seckill-bench with the common flags and appends its JSON line to the results. Buyer tokens
# are minted by the admin API before the clock starts (not signed per request by the load generator,
# which shares the cores: a grab then costs the generator about what a GET does).
bench() { # label url args...   (CONNECTIONS=N before it overrides LIMITS_CONNECTIONS)
  local label=$1 url=$2; shift 2
  say "== $label"
  env -u SECKILL_JWT_SECRET timeout 900 "$BENCH" --url "$url" --connections "${CONNECTIONS:-$CONNS}" --label "$label" --json "$@" \
    | tee "$WORK/$label.txt" >&2
  tail -n 1 "$WORK/$label.txt" >> "$RESULTS"
  grep -q '^{' <(tail -n 1 "$WORK/$label.txt") || die "$label: no report"
}
rate_of() { jq -r "select(.label == \"$1\") | .requests_per_s" "$RESULTS"; }
rss_of() { awk '/^VmRSS:/ { print $2 * 1024 }' "/proc/$1/status"; }

# Starts `seckill serve` (release, rate limits off) on a free port; sets GW_URL and GW_PID.
start_gateway() { # name args...
  local name=$1; shift
  SECKILL_LIMITS=off "$SECKILL" serve --listen 127.0.0.1:0 "$@" >"$WORK/$name.out" 2>"$WORK/$name.err" &
  GW_PID=$!
  PIDS+=("$GW_PID")
  GW_URL=
  for _ in $(seq 1 600); do
    GW_URL=$(sed -n 's/^seckill listening on //p' "$WORK/$name.out" | head -n 1)
    [ -n "$GW_URL" ] && return 0
    kill -0 "$GW_PID" 2>/dev/null || { cat "$WORK/$name.err" >&2; die "$name exited"; }
    sleep 0.1
  done
  die "$name did not start in 60 s"
}
stop_gateway() {
  kill -TERM "$GW_PID" 2>/dev/null || true
  for _ in $(seq 1 200); do kill -0 "$GW_PID" 2>/dev/null || return 0; sleep 0.1; done
  kill -KILL "$GW_PID" 2>/dev/null || true
}

# --- nginx: a static file, access log off, one worker per core: the HTTP limit ---
mkdir -p "$WORK/nginx/www" "$WORK/nginx/tmp"
printf 'ok\n' > "$WORK/nginx/www/ok.html"
NGINX_PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
cat > "$WORK/nginx/nginx.conf" <<EOF
$( [ "$(id -u)" -eq 0 ] && echo "user root;" )
worker_processes auto;
pid $WORK/nginx/nginx.pid;
error_log $WORK/nginx/error.log warn;
daemon off;
events { worker_connections 4096; }
http {
  access_log off;
  open_file_cache max=100 inactive=60s;
  sendfile on; tcp_nopush on; tcp_nodelay on;
  keepalive_requests 1000000;
  client_body_temp_path $WORK/nginx/tmp/body; proxy_temp_path $WORK/nginx/tmp/proxy;
  fastcgi_temp_path $WORK/nginx/tmp/fcgi; uwsgi_temp_path $WORK/nginx/tmp/uwsgi; scgi_temp_path $WORK/nginx/tmp/scgi;
  server { listen 127.0.0.1:$NGINX_PORT backlog=4096; root $WORK/nginx/www; }
}
EOF
"$NGINX" -c "$WORK/nginx/nginx.conf" -e "$WORK/nginx/error.log" &
PIDS+=($!)
for _ in $(seq 1 100); do curl -sf "http://127.0.0.1:$NGINX_PORT/ok.html" >/dev/null && break; sleep 0.1; done
bench nginx_static "http://127.0.0.1:$NGINX_PORT" --mode get --path /ok.html --duration-s "$SECS"

# --- the embedded default: memory ledger, file log (fsync before 202), SQLite, writer at its default ceiling ---
start_gateway embedded --no-demo --data-dir "$WORK/embedded"
bench healthz "$GW_URL" --mode get --path /healthz --duration-s "$SECS"
bench campaign_get "$GW_URL" --admin-token "$ADMIN_TOKEN" --mode campaign --duration-s "$SECS"
bench grab_memory "$GW_URL" --admin-token "$ADMIN_TOKEN" --mode grab --stock 10000000 --users 1000000 \
  --duration-s "$SECS" --svg-dir "$RESULTS_DIR/grab_memory" --drain-wait-s 600
bench funnel "$GW_URL" --admin-token "$ADMIN_TOKEN" --mode funnel --stock 10000000 --funnel-buyers 150000 \
  --duration-s "$SECS" --drain-wait-s 600
bench sold_out "$GW_URL" --admin-token "$ADMIN_TOKEN" --mode grab --stock 100 --users 1000000 --duration-s "$SECS"
stop_gateway

# --- a realistic sale, open loop, on a fresh gateway; then its resident memory ---
SOLD_OUT=$(rate_of sold_out)
RATE=$(awk -v r="$SOLD_OUT" 'BEGIN { printf "%d", r / 2 }')
DUR=$(( (1000000 + RATE - 1) / RATE ))
start_gateway realistic --no-demo --data-dir "$WORK/realistic"
CONNECTIONS=256 bench realistic_sale "$GW_URL" --admin-token "$ADMIN_TOKEN" --mode grab --stock 10000 --users 1000000 \
  --rate "$RATE" --duration-s "$DUR" --svg-dir "$RESULTS_DIR/realistic_sale"
echo "{\"label\":\"rss_1m\",\"rss_bytes\":$(rss_of "$GW_PID")}" >> "$RESULTS"
stop_gateway

# --- resident bytes per winning order: the slope of RSS over winners on one fresh gateway, between a
# 100,000-winner sale (which also warms the fixed costs: SQLite page caches, buffers) and 200,000 more ---
start_gateway per_order --no-demo --data-dir "$WORK/per_order"
bench per_order_warm "$GW_URL" --admin-token "$ADMIN_TOKEN" --mode grab --stock 100000 --users 100000 \
  --duration-s 30 --drain-wait-s 600
BEFORE=$(rss_of "$GW_PID")
bench per_order_sale "$GW_URL" --admin-token "$ADMIN_TOKEN" --mode grab --stock 200000 --users 200000 \
  --duration-s 30 --drain-wait-s 600
AFTER=$(rss_of "$GW_PID")
WINNERS=$(jq -r 'select(.label == "per_order_sale") | .winners' "$RESULTS")
[ "$WINNERS" -gt 0 ] || die "per_order_sale: no winners"
echo "{\"label\":\"bytes_per_order\",\"orders\":$WINNERS,\"rss_before\":$BEFORE,\"rss_after\":$AFTER,\"bytes\":$(( (AFTER - BEFORE) / WINNERS ))}" >> "$RESULTS"
stop_gateway

# --- Redis: the grab's script by EVALSHA, same concurrency, every call a new buyer who wins ---
say "== redis_evalsha"
SHA=$("$BENCH" lua reserve | redis-cli -h 127.0.0.1 -p 6379 -x SCRIPT LOAD)
K='seckill-limits:{b}'
redis-cli -h 127.0.0.1 -p 6379 HSET "$K:meta" total 1000000000 gen 1 buckets 1 >/dev/null
redis-cli -h 127.0.0.1 -p 6379 SET "$K:stock" 1000000000 >/dev/null
N=$(( SECS * 30000 ))
redis-benchmark -h 127.0.0.1 -p 6379 -c "$CONNS" -n "$N" -r 1000000000 --csv \
  EVALSHA "$SHA" 7 "$K:meta" "$K:stock" "$K:seq" "$K:last" "$K:active" "$K:holds" "$K:r:__rand_int__" \
  "u__rand_int__" 1 0 > "$WORK/redis.csv"
cat "$WORK/redis.csv" >&2
RPS=$(tail -n 1 "$WORK/redis.csv" | cut -d, -f2 | tr -d '"')
P99=$(tail -n 1 "$WORK/redis.csv" | cut -d, -f7 | tr -d '"')
LEFT=$(redis-cli -h 127.0.0.1 -p 6379 GET "$K:stock")
[ "$LEFT" -lt 1000000000 ] || die "redis-benchmark reserved nothing (stock still $LEFT)"
echo "{\"label\":\"redis_evalsha\",\"requests_per_s\":$RPS,\"latency_ms\":{\"p99\":$P99}}" >> "$RESULTS"

# --- the broker: produce with the order log's settings ---
say "== broker_produce"
timeout 300 "$BENCH" produce --topic "seckill-limits-produce-$$" --messages $(( SECS * 20000 )) --in-flight "$CONNS" \
  --label broker_produce | tee "$WORK/produce.txt" >&2
tail -n 1 "$WORK/produce.txt" >> "$RESULTS"

# --- production: Redis ledger, Kafka log, MySQL writer ---
DB=seckill_limits_$$
mariadb -h 127.0.0.1 -u root -e "CREATE DATABASE $DB"
export SECKILL_MYSQL_URL=mysql://root@127.0.0.1:3306/$DB SECKILL_KAFKA_TOPIC=seckill-limits-$$ SECKILL_KAFKA_GROUP=seckill-limits-$$
start_gateway production --config config/production.toml
"$SECKILL" writer --config config/production.toml >"$WORK/writer.out" 2>"$WORK/writer.err" &
WRITER_PID=$!
PIDS+=("$WRITER_PID")
bench grab_redis "$GW_URL" --admin-token "$ADMIN_TOKEN" --mode grab --stock 10000000 --users 1000000 \
  --duration-s "$SECS" --drain-wait-s 600
# The writer's drain: stop it, build a backlog, start it with its ceiling lifted, count rows/s.
kill -TERM "$WRITER_PID"; wait "$WRITER_PID" 2>/dev/null || true
bench backlog "$GW_URL" --admin-token "$ADMIN_TOKEN" --mode grab --stock 10000000 --users 1000000 \
  --duration-s "$SECS" --no-verify
BACKLOG_ID=$(jq -r 'select(.label == "backlog") | .campaign_id' "$RESULTS")
stats() { curl -sf "$GW_URL/admin/v1/campaigns/$BACKLOG_ID/stats" -H "Authorization: Bearer $ADMIN_TOKEN"; }
"$SECKILL" writer --config config/production.toml --writer-rows-per-s 1000000 >"$WORK/writer2.out" 2>"$WORK/writer2.err" &
PIDS+=($!)
say "== writer_drain"
FIRST= T0= LAST= T1=
for _ in $(seq 1 6000); do # up to 10 minutes
  S=$(stats); P=$(jq -r .orders_persisted <<<"$S"); Q=$(jq -r .orders_queued <<<"$S")
  if [ -z "$FIRST" ] && [ "$P" -gt 0 ]; then FIRST=$P; T0=$(date +%s%3N); fi
  LAST=$P; T1=$(date +%s%3N)
  [ "$Q" -eq 0 ] && break
  sleep 0.1
done
[ "$Q" -eq 0 ] || die "the writer did not drain the backlog in 10 minutes"
[ "$T1" -gt "$T0" ] || die "the backlog drained before it could be timed"
echo "{\"label\":\"writer_drain\",\"rows\":$((LAST - FIRST)),\"requests_per_s\":$(( (LAST - FIRST) * 1000 / (T1 - T0) ))}" >> "$RESULTS"
stop_gateway

# --- MySQL raw: multi-row INSERTs of 500 rows (the writer's batch) into a copy of the orders table ---
say "== mysql_raw_insert"
mariadb -h 127.0.0.1 -u root "$DB" -e "CREATE TABLE raw_orders LIKE orders"
ROWS=200000
python3 - "$ROWS" > "$WORK/raw.sql" <<'PY'
import sys
rows, batch = int(sys.argv[1]), 500
for b in range(0, rows, batch):
    vals = ",".join(
        f"('{i:032x}','raw','user-{i}',1,100,{1_700_000_000_000 + i},{1_700_000_900_000 + i},'queued',{1_700_000_000_000 + i})"
        for i in range(b, min(b + batch, rows)))
    print("INSERT INTO raw_orders (order_id,campaign_id,user_id,n,price_cents,created_at_ms,pay_by_ms,status,updated_at_ms) VALUES " + vals + ";")
PY
T0=$(date +%s%3N)
mariadb -h 127.0.0.1 -u root "$DB" < "$WORK/raw.sql"
T1=$(date +%s%3N)
GOT=$(mariadb -h 127.0.0.1 -u root -N "$DB" -e "SELECT COUNT(*) FROM raw_orders")
[ "$GOT" -eq "$ROWS" ] || die "raw insert stored $GOT of $ROWS rows"
echo "{\"label\":\"mysql_raw_insert\",\"rows\":$ROWS,\"requests_per_s\":$(( ROWS * 1000 / (T1 - T0) ))}" >> "$RESULTS"

say "== report"
CHARTS=()
for c in grab_memory/latency.svg grab_memory/throughput.svg realistic_sale/latency.svg realistic_sale/throughput.svg; do
  [ -f "$RESULTS_DIR/$c" ] && CHARTS+=(--chart "$RESULTS_DIR/$c")
done
"$BENCH" report --results "$RESULTS" --out BENCHMARKS.md "${CHARTS[@]}"
