#!/usr/bin/env bash
# Runs every cargo-fuzz target (fuzz/fuzz_targets, libFuzzer) for a bounded
# time from its committed seed corpus; fails on the first crash, hang or
# out-of-memory and names the reproducer. Part of scripts/test.sh; alone:
#
#   bash scripts/fuzz.sh                 # every target, FUZZ_SECONDS each
#   FUZZ_SECONDS=300 bash scripts/fuzz.sh router jwt
#
# Replay a reproducer:  <target dir>/x86_64-unknown-linux-gnu/release/<target> <file>
#
# Env: FUZZ_SECONDS (default 20) per target; SECKILL_TOOLS_DIR (default
# /var/tmp/seckill-tools) where cargo-fuzz is installed; FUZZ_TARGET_DIR
# (default $CARGO_TARGET_DIR/fuzz, or /var/tmp/seckill-target/fuzz).
#
# Sanitizer: none. The workspace forbids `unsafe`, so AddressSanitizer has no
# memory errors of ours to find; what we hunt is panics (failed asserts,
# overflow: debug assertions and overflow checks are on), hangs and runaway
# memory, which libFuzzer itself catches. An ASan build also recompiles every
# crate of the gateway (librdkafka, the MySQL and Redis clients) with
# instrumentation, which on this 2-core machine costs many minutes more.
set -euo pipefail
cd "$(dirname "$0")/.."

CARGO_FUZZ_VERSION=0.13.1
TOOLS_DIR=${SECKILL_TOOLS_DIR:-/var/tmp/seckill-tools}
TARGET_DIR=${FUZZ_TARGET_DIR:-${CARGO_TARGET_DIR:-/var/tmp/seckill-target}/fuzz}
SECONDS_EACH=${FUZZ_SECONDS:-20}
export PATH="$TOOLS_DIR/bin:$PATH"

if ! [[ "$SECONDS_EACH" =~ ^[1-9][0-9]*$ ]]; then
  echo "fuzz: FUZZ_SECONDS must be a positive whole number, not '$SECONDS_EACH'" >&2
  exit 2
fi
if ! rustup run nightly rustc --version >/dev/null 2>&1; then
  echo "fuzz: the nightly toolchain is missing (rustup toolchain install nightly)" >&2
  exit 1
fi
if ! cargo-fuzz --version 2>/dev/null | grep -qx "cargo-fuzz $CARGO_FUZZ_VERSION"; then
  echo "== installing cargo-fuzz $CARGO_FUZZ_VERSION into $TOOLS_DIR"
  cargo install --locked --root "$TOOLS_DIR" "cargo-fuzz@$CARGO_FUZZ_VERSION"
fi

ALL_TARGETS=$(sed -n 's/^name = "\(.*\)"$/\1/p' fuzz/Cargo.toml | grep -vx seckill-fuzz)
TARGETS=${*:-$ALL_TARGETS}
for t in $TARGETS; do
  if ! grep -qx "$t" <<<"$ALL_TARGETS"; then
    echo "fuzz: no target '$t' (have: $(echo $ALL_TARGETS))" >&2
    exit 2
  fi
done

# Release with debug assertions and overflow checks; 16 codegen units build
# several times faster than cargo-fuzz's default of 1 and fuzz nearly as fast.
FLAGS=(--release --debug-assertions --sanitizer none --codegen-units 16 --target-dir "$TARGET_DIR")
# The fuzz crate builds with the workspace's own versions: its lock file is
# the workspace's (not committed), to which cargo adds libfuzzer-sys.
cp Cargo.lock fuzz/Cargo.lock
echo "== cargo fuzz build ($(echo $TARGETS))"
if [ "$TARGETS" = "$ALL_TARGETS" ]; then
  cargo +nightly fuzz build "${FLAGS[@]}" # one cargo run builds them all
else
  for t in $TARGETS; do
    cargo +nightly fuzz build "${FLAGS[@]}" "$t"
  done
fi
BIN_DIR=$TARGET_DIR/x86_64-unknown-linux-gnu/release

# Runs start from a scratch copy of the seeds, so what the fuzzer learns does
# not grow the repository; reproducers are kept under the scratch dir.
SCRATCH=$(mktemp -d "${TMPDIR:-/tmp}/seckill-fuzz.XXXXXX")
failed=0
for t in $TARGETS; do
  mkdir -p "$SCRATCH/corpus/$t" "$SCRATCH/artifacts/$t"
  cp -R "fuzz/corpus/$t/." "$SCRATCH/corpus/$t/"
  seeds=$(find "$SCRATCH/corpus/$t" -type f | wc -l)
  echo "== fuzz $t: ${SECONDS_EACH}s from $seeds seeds"
  log=$SCRATCH/$t.log
  # -timeout: one input taking over 10 s is a hang; -rss_limit_mb: a runaway
  # allocation is a finding too. libFuzzer exits non-zero on either, or on a
  # panic (which aborts), and writes the input to the artifact prefix.
  if "$BIN_DIR/$t" -max_total_time="$SECONDS_EACH" -timeout=10 -rss_limit_mb=2048 \
      -max_len=4096 -print_final_stats=1 -artifact_prefix="$SCRATCH/artifacts/$t/" \
      "$SCRATCH/corpus/$t" >"$log" 2>&1; then
    grep -E '^stat::number_of_executed_units|^stat::peak_rss_mb' "$log" | tr '\n' ' ' || true
    echo "corpus now $(find "$SCRATCH/corpus/$t" -type f | wc -l) inputs"
  else
    failed=1
    echo "!! fuzz $t FAILED; last lines of $log:" >&2
    tail -n 40 "$log" >&2
    for a in "$SCRATCH/artifacts/$t"/*; do
      [ -e "$a" ] || continue
      echo "!! reproducer: $a (replay: $BIN_DIR/$t $a)" >&2
    done
  fi
done
if [ "$failed" -ne 0 ]; then
  echo "fuzz: a target failed; scratch dir kept: $SCRATCH" >&2
  exit 1
fi
rm -rf "$SCRATCH"
echo "== fuzz: all targets ran ${SECONDS_EACH}s each without a finding"
