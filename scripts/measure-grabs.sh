#!/usr/bin/env bash
# Measures grab throughput of the release binary with wrk, both on this machine (so they share its cores).
# Until the bench crate lands this is the rerunnable measurement quoted in issue notes.
set -euo pipefail
cd "$(dirname "$0")/.."
command -v wrk >/dev/null || { echo "needs wrk (apt-get install wrk)" >&2; exit 2; }
cargo build --release -p gateway --bin seckill
BIN="${CARGO_TARGET_DIR:-target}/release/seckill"
OUT=$(mktemp -d); DATA=$OUT/data
export SECKILL_ADMIN_TOKEN=bench-admin-token-0123456789 SECKILL_JWT_SECRET=bench-secret-bench-secret-bench-secret-00 SECKILL_LOG=warn
$BIN serve --listen 127.0.0.1:18080 --data-dir $DATA --no-demo > $OUT/server.out 2>$OUT/server.err &
PID=$!
trap "kill $PID 2>/dev/null; rm -rf $OUT" EXIT
for i in $(seq 1 100); do curl -sf localhost:18080/healthz >/dev/null && break; sleep 0.1; done
H="Authorization: Bearer $SECKILL_ADMIN_TOKEN"; NOW=$(date +%s%3N)
mk() { curl -sf -X POST localhost:18080/admin/v1/campaigns -H "$H" -H 'Content-Type: application/json' -d "{\"id\":\"$1\",\"title\":\"t\",\"price_cents\":1,\"stock\":$2,\"per_user_limit\":$3,\"starts_at_ms\":$NOW,\"ends_at_ms\":$((NOW+3600000))}" >/dev/null; }
mk winners 1000000 100
mk soldout 100 1
python3 - "$OUT/tokens.txt" <<'PY'
import json, sys, urllib.request
req = urllib.request.Request("http://127.0.0.1:18080/admin/v1/tokens", method="POST",
  data=json.dumps({"user_ids": [f"u{i}" for i in range(10000)], "ttl_s": 3600}).encode(),
  headers={"Authorization": "Bearer bench-admin-token-0123456789", "Content-Type": "application/json"})
toks = json.load(urllib.request.urlopen(req))["tokens"]
open(sys.argv[1], "w").write("\n".join(toks.values()) + "\n")
PY
echo "== every grab wins (reserve + durable append + 202): stock 1,000,000, 10,000 users x 100"
TOKENS=$OUT/tokens.txt CAMPAIGN=winners wrk -t2 -c256 -d10s --latency -s scripts/wrk-grab.lua http://127.0.0.1:18080 | grep -E "Requests/sec|status|p50|Latency|99%"
echo "== sold out (cheap rejection): stock 100"
TOKENS=$OUT/tokens.txt CAMPAIGN=soldout wrk -t2 -c256 -d10s --latency -s scripts/wrk-grab.lua http://127.0.0.1:18080 | grep -E "Requests/sec|status|p50|Latency|99%"
curl -s localhost:18080/admin/v1/campaigns/winners/stats -H "$H"; echo
sleep 3  # let the paced writer move on; the second stats line shows its rows/s
curl -s localhost:18080/admin/v1/campaigns/winners/stats -H "$H"; echo
ls -la "$DATA"
