#!/usr/bin/env bash
# Installs what the browser tests (gateway/tests/browser.rs, dashboard.rs) need, idempotently:
#   - Debian's Chromium and ChromeDriver (/usr/bin/chromium, /usr/bin/chromedriver), with apt-get;
#   - playwright-core, at the exact version pinned in scripts/browser/package-lock.json, into
#     scripts/browser/node_modules (git-ignored), with `npm ci`.
# Playwright never downloads a browser of its own here: the scripts launch /usr/bin/chromium.
# Anything that is already in place is left alone; anything that cannot be installed fails loudly.
#
#   bash scripts/install-browser.sh
set -euo pipefail
cd "$(dirname "$0")/.."

BROWSER_DIR=scripts/browser
say() { echo "install-browser: $*"; }
die() { echo "install-browser: ERROR: $*" >&2; exit 1; }

# as_root, apt_install
. scripts/lib/apt.sh # (the script runs from the repository root)

# ---- 1. Chromium and ChromeDriver (Debian packages) ------------------------------------------
if [ -x /usr/bin/chromium ] && [ -x /usr/bin/chromedriver ]; then
  say "chromium and chromedriver already installed"
else
  command -v apt-get >/dev/null 2>&1 || die "apt-get not found: install Debian's chromium and chromium-driver by hand"
  say "installing Debian packages chromium and chromium-driver"
  apt_install chromium chromium-driver
fi
[ -x /usr/bin/chromium ] || die "/usr/bin/chromium is missing after the install"
[ -x /usr/bin/chromedriver ] || die "/usr/bin/chromedriver is missing after the install"
# Both must start: a broken install (missing shared library) shows here, not in the test.
chromium_version=$(/usr/bin/chromium --headless=new --no-sandbox --version 2>/dev/null || /usr/bin/chromium --version 2>&1) \
  || die "/usr/bin/chromium does not run: $chromium_version"
driver_version=$(/usr/bin/chromedriver --version 2>&1) || die "/usr/bin/chromedriver does not run: $driver_version"
say "$chromium_version"
say "$driver_version"

# ---- 2. playwright-core (npm, pinned by package-lock.json) -----------------------------------
command -v node >/dev/null 2>&1 || die "node not found (Node.js 20 or newer is needed)"
command -v npm >/dev/null 2>&1 || die "npm not found"
node_major=$(node -p 'process.versions.node.split(".")[0]')
[ "$node_major" -ge 20 ] || die "Node.js $(node --version) is too old: playwright-core needs 20 or newer"

[ -f "$BROWSER_DIR/package-lock.json" ] || die "$BROWSER_DIR/package-lock.json is missing"
want=$(node -p "require('./$BROWSER_DIR/package-lock.json').packages['node_modules/playwright-core'].version")
have=$(node -p "try { require('./$BROWSER_DIR/node_modules/playwright-core/package.json').version } catch (_) { '' }")
if [ "$have" = "$want" ]; then
  say "playwright-core $have already installed in $BROWSER_DIR/node_modules"
else
  say "installing playwright-core $want into $BROWSER_DIR/node_modules (npm ci)"
  # PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD: playwright-core downloads nothing itself; set anyway in case
  # a future version grows an install hook.
  (cd "$BROWSER_DIR" && PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1 npm ci --no-audit --no-fund) \
    || die "npm ci in $BROWSER_DIR failed"
  have=$(node -p "require('./$BROWSER_DIR/node_modules/playwright-core/package.json').version") \
    || die "playwright-core is missing after npm ci"
  [ "$have" = "$want" ] || die "npm ci installed playwright-core $have, want $want"
fi
# The module must load (it is ESM-importable from the scripts in $BROWSER_DIR).
(cd "$BROWSER_DIR" && node --input-type=module -e "import('playwright-core').then((m) => { if (!m.chromium) process.exit(1); })") \
  || die "playwright-core does not load from $BROWSER_DIR"
say "ready: /usr/bin/chromium, /usr/bin/chromedriver, playwright-core $have"
