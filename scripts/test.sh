#!/usr/bin/env bash
# The project's test command (README "Run the tests"; CI calls it too):
# formatting, lints, every test of the workspace, the criterion benches once each, a 10 s seckill-bench smoke,
# the fuzz targets for a bounded time, then schemathesis against a live server. Fails on the first error.
set -euo pipefail
cd "$(dirname "$0")/.."

echo "== services (Redis, Redis Cluster, MariaDB, Kafka-API broker)"
bash scripts/services.sh up
echo "== browser (Debian chromium + chromedriver, playwright-core)"
bash scripts/install-browser.sh
echo "== buyer page against a stand-in server"
node --test scripts/browser/page.test.mjs
# Test data of earlier runs: the cluster is ours alone (tests only), so it is
# emptied; on the shared Redis only the tests' own keys are removed.
for port in 7000 7001 7002; do redis-cli -h 127.0.0.1 -p "$port" flushall >/dev/null; done
redis-cli -h 127.0.0.1 -p 6379 --scan --pattern 'seckill-test:*' | xargs -r -n 500 redis-cli -h 127.0.0.1 -p 6379 del >/dev/null
echo "== cargo fmt --check"
cargo fmt --all -- --check
echo "== cargo clippy (warnings are errors)"
cargo clippy --workspace --all-targets --locked -- -D warnings
echo "== cargo test"
cargo test --workspace --locked
echo "== criterion benches, each benchmark once (test mode, debug build; Redis for redis_lua)"
cargo test -p bench --benches --locked
echo "== seckill-bench smoke (10 s open loop, the sale's invariants checked)"
bash scripts/bench-smoke.sh
echo "== fuzz (cargo-fuzz, every target for FUZZ_SECONDS, default 20 s)"
bash scripts/fuzz.sh
echo "== OpenAPI conformance (schemathesis, admin and buyer runs)"
bash scripts/schemathesis.sh
echo "== all checks passed"
