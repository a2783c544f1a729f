#!/usr/bin/env bash
# Measures grab throughput of the release binary with wrk, both on this machine (so they share its cores).
# Until the bench crate lands this is the rerunnable measurement quoted in issue notes.
#
#   bash scripts/measure-grabs.sh               # embedded default: memory ledger, file log, SQLite
#   bash scripts/measure-grabs.sh production    # Redis ledger, Kafka log, MySQL writer (scripts/services.sh up)
#
# Each run: a campaign where every grab wins (reserve, durable append, 202), then a sold-out one (the
# cheap rejection path), then the order writer's rows/s while it drains a backlog, read from the stats
# endpoint (production: the writer process starts after the load, so the whole sale is its backlog).
set -euo pipefail
cd "$(dirname "$0")/.."
PROFILE=${1:-embedded}
command -v wrk >/dev/null || { echo "needs wrk (apt-get install wrk)" >&2; exit 2; }
cargo build --release -p gateway --bin seckill --example funnel_fixtures
FIXTURES_BIN="${CARGO_TARGET_DIR:-target}/release/examples/funnel_fixtures"
BIN="${CARGO_TARGET_DIR:-target}/release/seckill"
OUT=$(mktemp -d); DATA=$OUT/data
export SECKILL_ADMIN_TOKEN=bench-admin-token-0123456789 SECKILL_JWT_SECRET=bench-secret-bench-secret-bench-secret-00 SECKILL_LOG=warn
PIDS=()
cleanup() {
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  [ -n "${DB:-}" ] && mariadb -h 127.0.0.1 -u root -e "DROP DATABASE IF EXISTS $DB" 2>/dev/null
  rm -rf "$OUT"
}
trap cleanup EXIT
ARGS=(--listen 127.0.0.1:18080 --data-dir "$DATA" --no-demo)
if [ "$PROFILE" = production ]; then
  bash scripts/services.sh up >/dev/null
  DB=seckill_bench_$$
  mariadb -h 127.0.0.1 -u root -e "CREATE DATABASE $DB"
  export SECKILL_MYSQL_URL=mysql://root@127.0.0.1:3306/$DB SECKILL_KAFKA_TOPIC=seckill-bench-$$ SECKILL_KAFKA_GROUP=seckill-bench-$$
  ARGS+=(--config config/production.toml)
else
  ARGS+=(--writer-rows-per-s 1000000 --writer-batch-rows 1000)
fi
# One machine sends every request: rate limits off (never the in-flight cap).
SECKILL_LIMITS=off $BIN serve "${ARGS[@]}" > "$OUT/server.out" 2>"$OUT/server.err" &
PIDS+=($!)
for _ in $(seq 1 200); do curl -sf localhost:18080/healthz >/dev/null && break; sleep 0.1; done
H="Authorization: Bearer $SECKILL_ADMIN_TOKEN"; NOW=$(date +%s%3N)
mk() { curl -sf -X POST localhost:18080/admin/v1/campaigns -H "$H" -H 'Content-Type: application/json' -d "{\"id\":\"$1\",\"title\":\"t\",\"price_cents\":1,\"stock\":$2,\"per_user_limit\":$3,\"starts_at_ms\":$NOW,\"ends_at_ms\":$((NOW+3600000))}" >/dev/null; }
W=winners-$$; S=soldout-$$; F=funnel-$$; P=plain-$$
mk "$W" 1000000 100
mk "$S" 100 1
mk "$P" 1000000 100
curl -sf -X POST localhost:18080/admin/v1/campaigns -H "$H" -H 'Content-Type: application/json' -d "{\"id\":\"$F\",\"title\":\"t\",\"price_cents\":1,\"stock\":1000000,\"per_user_limit\":100,\"starts_at_ms\":$NOW,\"ends_at_ms\":$((NOW+3600000)),\"quiz\":true,\"quiz_questions\":1000,\"hidden_path\":true}" >/dev/null
python3 - "$OUT/tokens.txt" "$OUT/users.tsv" <<'PY'
import json, sys, urllib.request
req = urllib.request.Request("http://127.0.0.1:18080/admin/v1/tokens", method="POST",
  data=json.dumps({"user_ids": [f"u{i}" for i in range(10000)], "ttl_s": 3600}).encode(),
  headers={"Authorization": "Bearer bench-admin-token-0123456789", "Content-Type": "application/json"})
toks = json.load(urllib.request.urlopen(req))["tokens"]
open(sys.argv[1], "w").write("\n".join(toks.values()) + "\n")
open(sys.argv[2], "w").write("".join(f"{u}\t{t}\n" for u, t in toks.items()))
PY
echo "== [$PROFILE] every grab wins (reserve + durable append + 202): stock 1,000,000, 10,000 users x 100"
TOKENS=$OUT/tokens.txt CAMPAIGN=$W wrk -t2 -c256 -d10s --latency -s scripts/wrk-grab.lua http://127.0.0.1:18080 | grep -E "Requests/sec|status|p50|Latency|99%"
echo "== [$PROFILE] sold out (cheap rejection): stock 100"
TOKENS=$OUT/tokens.txt CAMPAIGN=$S wrk -t2 -c256 -d10s --latency -s scripts/wrk-grab.lua http://127.0.0.1:18080 | grep -E "Requests/sec|status|p50|Latency|99%"
echo "== [$PROFILE] GET /healthz (the floor: HTTP alone, no funnel), to compare with the sold-out path"
wrk -t2 -c256 -d10s --latency http://127.0.0.1:18080/healthz | grep -E "Requests/sec|Latency|99%"
# The full funnel (hidden path + quiz, every grab with its own single-use quiz token answered right)
# against the plain grab, same duration, same users, both winning every grab.
SECRET=${SECKILL_FUNNEL_SECRET:-$SECKILL_JWT_SECRET}
"$FIXTURES_BIN" "$SECRET" "$F" "$NOW" 1000 150000 < "$OUT/users.tsv" > "$OUT/fixtures.tsv"
sleep 1.1  # an answer counts from 1 s after its question
echo "== [$PROFILE] full funnel: hidden path + quiz (signature, age, answer, single use), then reserve + append + 202"
WRK_THREADS=2 FIXTURES=$OUT/fixtures.tsv wrk -t2 -c256 -d3s --latency -s scripts/wrk-funnel.lua http://127.0.0.1:18080 | grep -E "Requests/sec|status|p50|Latency|99%"
echo "== [$PROFILE] plain grab, same load (reserve + append + 202)"
TOKENS=$OUT/tokens.txt CAMPAIGN=$P wrk -t2 -c256 -d3s --latency -s scripts/wrk-grab.lua http://127.0.0.1:18080 | grep -E "Requests/sec|status|p50|Latency|99%"
echo "== [$PROFILE] GET quiz (a question and its signed token)"
QT=$(head -1 "$OUT/tokens.txt")
wrk -t2 -c256 -d5s --latency -H "Authorization: Bearer $QT" "http://127.0.0.1:18080/api/v1/campaigns/$F/quiz" | grep -E "Requests/sec|Latency|99%|Non-2xx"
if [ "$PROFILE" = production ]; then
  # Started only now, so it finds a backlog to drain; its ceiling is lifted
  # so the run shows what it can do.
  $BIN writer --config config/production.toml --writer-rows-per-s 1000000 --writer-batch-rows 1000 > "$OUT/writer.out" 2>"$OUT/writer.err" &
  PIDS+=($!)
  sleep 3  # joining the consumer group
fi
persisted() { curl -s "localhost:18080/admin/v1/campaigns/$W/stats" -H "$H" | python3 -c 'import json,sys; print(json.load(sys.stdin)["orders_persisted"])'; }
A=$(persisted); T0=$(date +%s%3N); sleep 5; B=$(persisted); T1=$(date +%s%3N)
echo "== [$PROFILE] writer: $((B - A)) rows in $((T1 - T0)) ms while draining = $(( (B - A) * 1000 / (T1 - T0) )) rows/s"
curl -s "localhost:18080/admin/v1/campaigns/$W/stats" -H "$H"; echo
