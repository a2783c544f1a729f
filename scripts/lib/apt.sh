# Sourced by the install scripts (install-browser.sh, lb.sh): Debian packages with apt-get.
# The sourcing script defines say() and die() first.

# Root runs apt-get directly; anyone else needs a working sudo.
as_root() {
  if [ "$(id -u)" -eq 0 ]; then
    "$@"
  elif command -v sudo >/dev/null 2>&1; then
    sudo "$@"
  else
    die "need root (or sudo) to run: $*"
  fi
}

apt_install() {
  # Without `apt-get update` first: the lists on the machine usually serve. Only when the install
  # fails (lists missing or stale, a version gone from the mirror) are they refreshed, once.
  local env=(env DEBIAN_FRONTEND=noninteractive)
  if as_root "${env[@]}" apt-get install -y -q --no-install-recommends "$@"; then
    return 0
  fi
  say "apt-get install failed; refreshing the package lists and trying once more"
  as_root "${env[@]}" apt-get update -q || die "apt-get update failed"
  as_root "${env[@]}" apt-get install -y -q --no-install-recommends "$@" \
    || die "apt-get install $* failed"
}
