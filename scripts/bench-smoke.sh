#!/usr/bin/env bash
# A 10 s smoke of seckill-bench (README test command; issue 10): starts the debug `seckill serve` on a
# free loopback port (rate limits off, a temporary data dir), then runs `seckill-bench` open loop for
# BENCH_SECONDS (10) at BENCH_RATE (500 req/s) with 20,000 distinct buyers on a 1,000-unit campaign:
# the sale sells out, and the run fails unless its invariants hold (every 202 stored, nothing stored
# unacknowledged, no buyer twice, exactly the stock sold, stock conserved). Charts and the JSON report
# go to $CARGO_TARGET_DIR/bench-smoke/.
set -euo pipefail
cd "$(dirname "$0")/.."

TARGET_DIR=${CARGO_TARGET_DIR:-/var/tmp/seckill-target}
OUT=$TARGET_DIR/bench-smoke
ADMIN_TOKEN=bench-smoke-admin-token-0123456789
JWT_SECRET=bench-smoke-jwt-secret-0123456789abcdef
say() { echo "bench-smoke: $*" >&2; }

CARGO_TARGET_DIR=$TARGET_DIR cargo build --locked --quiet -p gateway --bin seckill -p bench --bin seckill-bench

WORK=$(mktemp -d "${TMPDIR:-/tmp}/seckill-bench-smoke.XXXXXX")
SERVER_PID=
cleanup() {
  if [ -n "$SERVER_PID" ] && kill -0 "$SERVER_PID" 2>/dev/null; then
    kill -TERM "$SERVER_PID" 2>/dev/null || true
    for _ in $(seq 1 100); do kill -0 "$SERVER_PID" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$SERVER_PID" 2>/dev/null || true
  fi
  rm -rf "$WORK"
}
trap cleanup EXIT

SECKILL_ADMIN_TOKEN=$ADMIN_TOKEN SECKILL_JWT_SECRET=$JWT_SECRET SECKILL_LIMITS=off SECKILL_LOG=warn \
  "$TARGET_DIR/debug/seckill" serve --listen 127.0.0.1:0 --no-demo --data-dir "$WORK/data" \
  >"$WORK/stdout.log" 2>"$WORK/stderr.log" &
SERVER_PID=$!
BASE=
for _ in $(seq 1 300); do # up to 30 s
  BASE=$(sed -n 's/^seckill listening on //p' "$WORK/stdout.log" | head -n 1)
  [ -n "$BASE" ] && break
  kill -0 "$SERVER_PID" 2>/dev/null || { say "the server exited; its stderr:"; cat "$WORK/stderr.log" >&2; exit 1; }
  sleep 0.1
done
[ -n "$BASE" ] || { say "the server did not say it was listening within 30 s"; exit 1; }

mkdir -p "$OUT"
# Bounded: the run is BENCH_SECONDS plus set-up and read-back.
timeout 180 "$TARGET_DIR/debug/seckill-bench" --url "$BASE" --admin-token "$ADMIN_TOKEN" \
  --jwt-secret "$JWT_SECRET" --rate "${BENCH_RATE:-500}" --duration-s "${BENCH_SECONDS:-10}" \
  --connections 32 --stock 1000 --users 20000 --svg-dir "$OUT" --json | tee "$OUT/report.txt"
say "passed; charts and report in $OUT"
