#!/usr/bin/env bash
# The project's test command (README "Run the tests"; CI calls it too):
# formatting, lints, then every test of the workspace. Fails on the first error.
set -euo pipefail
cd "$(dirname "$0")/.."

echo "== services (Redis, Redis Cluster, MariaDB, Kafka-API broker)"
bash scripts/services.sh up
echo "== cargo fmt --check"
cargo fmt --all -- --check
echo "== cargo clippy (warnings are errors)"
cargo clippy --workspace --all-targets --locked -- -D warnings
echo "== cargo test"
cargo test --workspace --locked
echo "== all checks passed"
