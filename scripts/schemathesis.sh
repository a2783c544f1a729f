#!/usr/bin/env bash
# OpenAPI conformance: runs schemathesis (PyPI, pinned, in a venv under
# /var/tmp/seckill-tools) against the real `seckill` binary, embedded
# default, started here on a free loopback port with a temporary data dir.
# Two runs over every operation of /openapi.json: one with the admin token,
# one with a buyer token. Checks: no 5xx, response bodies match their
# schema, every status and content type is documented, documented response
# headers are present and match, a request the schema forbids (a `null` for
# an integer, a wrong type) is refused, a method a path lacks answers 405
# with `Allow`, and a missing or broken credential is refused. Before the
# runs, scripts/conformance/openapi_rules.py checks the statuses that follow
# from the server's structure (429 under /api/, 408 where a body is read...).
#
#   bash scripts/schemathesis.sh            # both runs
#   ST_RUNS=buyer bash scripts/schemathesis.sh
#
# Environment (all optional):
#   ST_MAX_EXAMPLES  test cases per operation and phase (default 40)
#   ST_MAX_TIME      time budget of each run, seconds (default 90): the fuzzing
#                    and stateful phases repeat until it is spent
#   ST_SEED          schemathesis seed (default fixed, for repeatable CI runs;
#                    `random` for a new one each time)
#   ST_SCHEMA        the document to test against (default: the server's own
#                    /openapi.json; a file to try a change before rebuilding)
#   ST_CHECKS        schemathesis checks, comma-separated (default above)
#   ST_RUNS          `buyer admin` (default; the admin run pauses and stops
#                    the campaigns, so it comes second), or one of them
#   SECKILL_BIN      the binary (default: the debug build in the shared target
#                    dir, built here when missing or stale)
# Reports (JUnit, and the ndjson event log) go to $ST_REPORT_DIR
# (default /var/tmp/seckill-target/schemathesis).
set -euo pipefail
cd "$(dirname "$0")/.."

ST_VERSION=4.32.5
TOOLS_DIR=${SECKILL_TOOLS_DIR:-/var/tmp/seckill-tools}
# Python 3.11.7 (this machine's default python3) can abort a run with
# "AST constructor recursion depth mismatch" (a CPython 3.11 bug hit by
# hypothesis); a newer interpreter is used when the machine has one
# (pyenv's versions, or one on PATH), and the venv is per interpreter.
PY=python3
for cand in "${PYENV_ROOT:-$HOME/.pyenv}"/versions/3.13*/bin/python3 \
  "${PYENV_ROOT:-$HOME/.pyenv}"/versions/3.12*/bin/python3 \
  "$(command -v python3.13 || true)" "$(command -v python3.12 || true)"; do
  if [ -n "$cand" ] && [ -x "$cand" ] && "$cand" -c 'import venv, ensurepip' 2>/dev/null; then
    PY=$cand
    break
  fi
done
PY_TAG=$("$PY" -c 'import sys; print("%d.%d" % sys.version_info[:2])')
VENV=$TOOLS_DIR/schemathesis-$ST_VERSION-py$PY_TAG
TARGET_DIR=${CARGO_TARGET_DIR:-/var/tmp/seckill-target}
REPORT_DIR=${ST_REPORT_DIR:-$TARGET_DIR/schemathesis}
MAX_EXAMPLES=${ST_MAX_EXAMPLES:-40}
MAX_TIME=${ST_MAX_TIME:-90}
SEED=${ST_SEED:-8}
RUNS=${ST_RUNS:-buyer admin}
ADMIN_TOKEN=schemathesis-admin-token-0123456789
JWT_SECRET=schemathesis-jwt-secret-0123456789abcdef

say() { echo "schemathesis: $*" >&2; }

# Statuses that follow from the server's structure, whatever a run provokes.
python3 scripts/conformance/openapi_rules.py

# ------------------------------------------------------------------ install
if ! "$VENV/bin/st" --version 2>/dev/null | grep -q "$ST_VERSION"; then
  say "installing schemathesis $ST_VERSION into $VENV"
  rm -rf "$VENV"
  "$PY" -m venv "$VENV"
  "$VENV/bin/pip" install --quiet --disable-pip-version-check "schemathesis==$ST_VERSION"
fi

# ------------------------------------------------------------------ binary
if [ -z "${SECKILL_BIN:-}" ]; then
  CARGO_TARGET_DIR=$TARGET_DIR cargo build --locked --quiet -p gateway --bin seckill
  SECKILL_BIN=$TARGET_DIR/debug/seckill
fi

# ------------------------------------------------------------------ server
WORK=$(mktemp -d "${TMPDIR:-/tmp}/seckill-schemathesis.XXXXXX")
SERVER_PID=
stop_server() {
  if [ -n "$SERVER_PID" ] && kill -0 "$SERVER_PID" 2>/dev/null; then
    kill -TERM "$SERVER_PID" 2>/dev/null || true
    for _ in $(seq 1 100); do # up to 10 s for a clean exit, then KILL
      kill -0 "$SERVER_PID" 2>/dev/null || break
      sleep 0.1
    done
    kill -KILL "$SERVER_PID" 2>/dev/null || true
    wait "$SERVER_PID" 2>/dev/null || true
  fi
  SERVER_PID=
}
cleanup() {
  stop_server
  rm -rf "$WORK"
}
trap cleanup EXIT

SECKILL_ADMIN_TOKEN=$ADMIN_TOKEN SECKILL_JWT_SECRET=$JWT_SECRET SECKILL_LIMITS=off \
  SECKILL_LOG=${SECKILL_LOG:-warn} \
  "$SECKILL_BIN" serve --listen 127.0.0.1:0 --no-demo --data-dir "$WORK/data" \
  >"$WORK/stdout.log" 2>"$WORK/stderr.log" &
SERVER_PID=$!
BASE=
for _ in $(seq 1 300); do # up to 30 s
  BASE=$(sed -n 's/^seckill listening on //p' "$WORK/stdout.log" | head -n 1)
  [ -n "$BASE" ] && break
  if ! kill -0 "$SERVER_PID" 2>/dev/null; then
    say "the server exited before it was ready; its stderr:"
    cat "$WORK/stderr.log" >&2
    exit 1
  fi
  sleep 0.1
done
if [ -z "$BASE" ]; then
  say "the server did not say it was listening within 30 s"
  exit 1
fi
say "server $SECKILL_BIN (pid $SERVER_PID) on $BASE"

# curl with the admin token; fails loudly on a status other than the one expected.
admin() { # method path body expected-status
  local status
  status=$(curl -sS -o "$WORK/reply" -w '%{http_code}' -X "$1" "$BASE$2" \
    -H "Authorization: Bearer $ADMIN_TOKEN" -H 'Content-Type: application/json' --data "$3")
  if [ "$status" != "$4" ]; then
    say "$1 $2 answered $status (expected $4): $(cat "$WORK/reply")"
    exit 1
  fi
}

# What the runs need: the campaigns the document's examples name (so the
# examples phase reaches real ones: a plain live sale with plenty of stock,
# and a quiz sale with hidden paths and a small bank), and a buyer token.
NOW_MS=$(($(date +%s) * 1000))
admin POST /admin/v1/campaigns "{\"id\":\"phone-drop-1\",\"title\":\"Phone\",\"price_cents\":99900,
  \"stock\":1000000,\"starts_at_ms\":$((NOW_MS - 60000)),\"ends_at_ms\":$((NOW_MS + 86400000)),
  \"per_user_limit\":100}" 201
admin POST /admin/v1/campaigns "{\"id\":\"phone-drop-2\",\"title\":\"Phone\",\"price_cents\":99900,
  \"stock\":1000,\"starts_at_ms\":$((NOW_MS - 60000)),\"ends_at_ms\":$((NOW_MS + 86400000)),
  \"quiz\":true,\"quiz_questions\":10,\"hidden_path\":true,\"load_test\":true}" 201
admin POST /admin/v1/campaigns/phone-drop-2/preload '' 200
admin POST /admin/v1/tokens '{"user_ids":["alice"],"ttl_s":86400}' 200
BUYER_TOKEN=$(python3 -c 'import json,sys; print(json.load(sys.stdin)["tokens"]["alice"])' <"$WORK/reply")
# One order of that buyer, so order lookups and payment reach a real one.
status=$(curl -sS -o "$WORK/reply" -w '%{http_code}' -X POST "$BASE/api/v1/campaigns/phone-drop-1/grab" \
  -H "Authorization: Bearer $BUYER_TOKEN" -H 'Content-Type: application/json' --data '{}')
if [ "$status" != 202 ]; then
  say "the setup grab answered $status: $(cat "$WORK/reply")"
  exit 1
fi
ORDER_ID=$(python3 -c 'import json,sys; print(json.load(sys.stdin)["order_id"])' <"$WORK/reply")
sed "s/@ORDER_ID@/$ORDER_ID/" scripts/conformance/schemathesis.toml >"$WORK/schemathesis.toml"

# ------------------------------------------------------------------ runs
SCHEMA=${ST_SCHEMA:-$BASE/openapi.json}
[ -f "$SCHEMA" ] && SCHEMA=$(realpath "$SCHEMA")
CHECKS=not_a_server_error,status_code_conformance,content_type_conformance
CHECKS=$CHECKS,response_headers_conformance,response_schema_conformance,negative_data_rejection
# Methods a path does not serve answer 405 with `Allow`; a request without
# or with a broken credential is refused where the document asks for one.
CHECKS=$CHECKS,unsupported_method,allow_header_conformance,ignored_auth
CHECKS=${ST_CHECKS:-$CHECKS}
mkdir -p "$REPORT_DIR"
failed=()
for run in $RUNS; do
  case $run in
    admin) token=$ADMIN_TOKEN ;;
    buyer) token=$BUYER_TOKEN ;;
    *) say "unknown run '$run' (admin or buyer)"; exit 2 ;;
  esac
  seed_args=()
  [ "$SEED" != random ] && seed_args=(--seed "$SEED")
  say "run '$run': up to $MAX_EXAMPLES cases per operation and phase, at most ${MAX_TIME}s"
  started=$SECONDS
  # The outer timeout is a backstop (schemathesis stops itself at --max-time).
  # A request may take up to the server's own per-request timeout (30 s).
  # From the scratch dir: schemathesis and hypothesis leave state in the
  # working directory.
  if (cd "$WORK" && timeout $((MAX_TIME + 120)) "$VENV/bin/st" --config-file "$WORK/schemathesis.toml" \
    run "$SCHEMA" \
    --url "$BASE" \
    --header "Authorization: Bearer $token" \
    --checks "$CHECKS" \
    --max-examples "$MAX_EXAMPLES" \
    --max-time "$MAX_TIME" \
    --request-timeout 60 \
    --workers 2 \
    --generation-database none \
    --no-color \
    "${seed_args[@]}" \
    --report junit,ndjson \
    --report-junit-path "$REPORT_DIR/$run.junit.xml" \
    --report-ndjson-path "$REPORT_DIR/$run.ndjson"); then
    say "run '$run' passed in $((SECONDS - started))s"
  else
    say "run '$run' FAILED after $((SECONDS - started))s (reports in $REPORT_DIR)"
    failed+=("$run")
  fi
  if ! kill -0 "$SERVER_PID" 2>/dev/null; then
    say "the server died during run '$run'; its stderr:"
    tail -n 50 "$WORK/stderr.log" >&2
    exit 1
  fi
done

stop_server
if [ ${#failed[@]} -gt 0 ]; then
  say "FAILED: ${failed[*]}"
  exit 1
fi
say "all runs passed"
