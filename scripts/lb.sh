#!/usr/bin/env bash
# nginx as the CDN and the load balancer of the production shape, on loopback only
# (README "Production shape behind nginx"): it serves the CDN folder the gateways
# publish into (item pages, assets, quiz images) with cache headers, and balances
# /api and /admin over the gateways. Config: deploy/nginx/seckill.conf.template.
#
#   bash scripts/lb.sh install            Debian's nginx, with apt-get, when missing
#   bash scripts/lb.sh up --listen 127.0.0.1:8080 --cdn DIR \
#        --gateway 127.0.0.1:8081 --gateway 127.0.0.1:8082 [--run-dir DIR] [--user NAME]
#                                         renders the config into the run dir, checks it
#                                         (nginx -t) and starts nginx, or reloads the one
#                                         already running there; returns once it answers
#   bash scripts/lb.sh down [--run-dir DIR]   graceful stop (quit), bounded
#   bash scripts/lb.sh status [--run-dir DIR] exit 0 when it answers, 3 when not
#
# The run dir (default /var/tmp/seckill-services/nginx) holds the rendered nginx.conf,
# the pid file, logs/ (error.log, access.log) and tmp/. Workers run as the invoking
# user; as root, as root too unless --user says otherwise (the CDN folder must be
# readable by them).
set -euo pipefail
# Bash 5.2 would put the matched text for an `&` in a ${var//pattern/replacement}.
shopt -u patsub_replacement 2>/dev/null || true

ROOT=$(cd "$(dirname "$0")/.." && pwd)
TEMPLATE=$ROOT/deploy/nginx/seckill.conf.template
RUN_DIR=${SECKILL_SERVICES_DIR:-/var/tmp/seckill-services}/nginx
NGINX=${NGINX:-/usr/sbin/nginx}

say() { echo "lb: $*"; }
die() { echo "lb: ERROR: $*" >&2; exit 1; }

# ------------------------------------------------------------------ install
# as_root, apt_install
. "$ROOT/scripts/lib/apt.sh"

ensure_nginx() {
  if [ ! -x "$NGINX" ]; then
    command -v apt-get >/dev/null 2>&1 || die "apt-get not found: install nginx by hand (or set NGINX=/path/to/nginx)"
    say "installing Debian's nginx"
    # nginx-light would do as well; `nginx` is the package every Debian release has.
    # The package's own service (which Debian starts on port 80 where an init system
    # runs) is none of ours: this script starts its own nginx.
    apt_install nginx
  fi
  [ -x "$NGINX" ] || die "$NGINX is missing after the install"
}

install() {
  ensure_nginx
  "$NGINX" -v 2>&1 | sed 's/^/lb: /'
}

# ------------------------------------------------------------------ helpers
nginx_pid() { # prints the pid when the run dir's pid file names a live nginx master
  local pid
  pid=$(cat "$RUN_DIR/nginx.pid" 2>/dev/null) || return 1
  [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null && grep -q nginx "/proc/$pid/cmdline" 2>/dev/null || return 1
  echo "$pid"
}

# GET /lb-health from the address in the run dir, by hand (no curl needed): the answer
# must carry the instance id of the config last rendered there, which tells our nginx,
# with its current config, from anything else on that port.
answers() {
  local listen instance reply
  listen=$(cat "$RUN_DIR/listen" 2>/dev/null) || return 1
  instance=$(cat "$RUN_DIR/instance" 2>/dev/null) || return 1
  { exec 3<>"/dev/tcp/${listen%:*}/${listen##*:}"; } 2>/dev/null || return 1
  printf 'GET /lb-health HTTP/1.0\r\nHost: lb\r\n\r\n' >&3
  reply=$(timeout 2 cat <&3 2>/dev/null) || true
  exec 3<&- 3>&-
  [[ $reply == *"seckill-lb $instance"* ]]
}

wait_for() { # probe, tries of 0.1 s
  local probe=$1 tries=$2
  for _ in $(seq 1 "$tries"); do
    if $probe; then return 0; fi
    sleep 0.1
  done
  return 1
}

not_answering() { ! answers; }
gone() { ! kill -0 "$1" 2>/dev/null; }

loopback_addr() { # host:port with a 127.x.x.x host and a port in 1..65535
  [[ $1 =~ ^127\.[0-9]{1,3}\.[0-9]{1,3}\.[0-9]{1,3}:([0-9]{1,5})$ ]] \
    && [ "${BASH_REMATCH[1]}" -ge 1 ] && [ "${BASH_REMATCH[1]}" -le 65535 ]
}

# A path nginx's config can hold as it is (no quoting, no variables).
plain_path() { [[ $1 =~ ^/[A-Za-z0-9/._-]*$ ]]; }

show_error_log() {
  [ -f "$RUN_DIR/logs/error.log" ] && tail -n 20 "$RUN_DIR/logs/error.log" | sed 's/^/lb:   /' >&2
  return 0
}

# ------------------------------------------------------------------ up / down / status
up() {
  local listen="" cdn="" user="" gateways=() g
  while [ $# -gt 0 ]; do
    case "$1" in
      --listen) listen=${2:?--listen needs host:port}; shift 2 ;;
      --cdn) cdn=${2:?--cdn needs a directory}; shift 2 ;;
      --gateway) gateways+=("${2:?--gateway needs host:port}"); shift 2 ;;
      --run-dir) RUN_DIR=${2:?--run-dir needs a directory}; shift 2 ;;
      --user) user=${2:?--user needs a name}; shift 2 ;;
      *) die "up: unknown argument $1" ;;
    esac
  done
  [ -n "$listen" ] || die "up: --listen 127.0.0.1:PORT is required"
  [ -n "$cdn" ] || die "up: --cdn DIR is required (the gateways' <data dir>/cdn)"
  [ ${#gateways[@]} -gt 0 ] || die "up: at least one --gateway 127.0.0.1:PORT is required"
  # This script is the shape runnable on one machine: loopback only.
  loopback_addr "$listen" || die "up: --listen $listen is not 127.x.x.x:PORT"
  for g in "${gateways[@]}"; do
    loopback_addr "$g" || die "up: --gateway $g is not 127.x.x.x:PORT"
  done
  plain_path "/$cdn" || die "up: --cdn $cdn: only letters, digits and /._- please"
  plain_path "/$RUN_DIR" || die "up: --run-dir $RUN_DIR: only letters, digits and /._- please"
  mkdir -p "$cdn" "$RUN_DIR"
  # Absolute (nginx resolves relative paths against its prefix, the run dir).
  cdn=$(cd "$cdn" && pwd -P)
  RUN_DIR=$(cd "$RUN_DIR" && pwd -P)
  plain_path "$cdn" || die "up: --cdn $cdn: only letters, digits and /._- please"
  plain_path "$RUN_DIR" || die "up: --run-dir $RUN_DIR: only letters, digits and /._- please"
  [[ -z $user || $user =~ ^[a-z_][a-z0-9_-]*$ ]] || die "up: --user $user is not a user name"
  ensure_nginx
  mkdir -p "$RUN_DIR/logs" "$RUN_DIR/tmp"

  # Render.
  local conf user_line servers="" instance
  if [ -n "$user" ]; then
    user_line="user $user;"
  elif [ "$(id -u)" -eq 0 ]; then
    # Otherwise root's workers would run as nobody, who may not read the CDN folder.
    user_line="user root;"
  else
    user_line="# (not root: the workers run as $(id -un), like the master)"
  fi
  for g in "${gateways[@]}"; do
    servers+="        server $g max_fails=3 fail_timeout=5s;"$'\n'
  done
  instance="$(date +%s%N)-$$"
  conf=$(<"$TEMPLATE")
  conf=${conf//@USER_LINE@/"$user_line"}
  conf=${conf//@UPSTREAM_SERVERS@/"${servers%$'\n'}"}
  conf=${conf//@LISTEN@/"$listen"}
  conf=${conf//@CDN_DIR@/"$cdn"}
  conf=${conf//@RUN_DIR@/"$RUN_DIR"}
  conf=${conf//@INSTANCE@/"$instance"}
  [[ ! $conf =~ @[A-Z_]+@ ]] || die "up: a placeholder of $TEMPLATE was left unrendered"
  printf '%s\n' "$conf" >"$RUN_DIR/nginx.conf.new"

  # Check (-e: nginx's start-up error log, which otherwise is /var/log/nginx/error.log).
  local out
  if ! out=$("$NGINX" -t -q -p "$RUN_DIR/" -e "$RUN_DIR/logs/error.log" -c "$RUN_DIR/nginx.conf.new" 2>&1); then
    echo "$out" | sed 's/^/lb:   /' >&2
    die "up: nginx -t refused $RUN_DIR/nginx.conf.new"
  fi
  mv "$RUN_DIR/nginx.conf.new" "$RUN_DIR/nginx.conf"

  local pid old_listen
  old_listen=$(cat "$RUN_DIR/listen" 2>/dev/null || true)
  echo "$instance" >"$RUN_DIR/instance"
  echo "$listen" >"$RUN_DIR/listen"
  if pid=$(nginx_pid); then
    # Running on this run dir: reload, which keeps it serving throughout.
    [ "$old_listen" = "$listen" ] || say "moving from $old_listen to $listen"
    kill -HUP "$pid"
    wait_for answers 100 || { show_error_log; die "up: nginx (pid $pid) did not take the new config within 10 s"; }
    say "reloaded nginx (pid $pid) on $listen: CDN $cdn, gateways ${gateways[*]}"
    return 0
  fi
  # nginx daemonises (its own session), so it outlives this script; `down` stops it.
  if ! out=$("$NGINX" -p "$RUN_DIR/" -e "$RUN_DIR/logs/error.log" -c "$RUN_DIR/nginx.conf" 2>&1); then
    echo "$out" | sed 's/^/lb:   /' >&2
    show_error_log
    die "up: nginx did not start (is $listen taken?)"
  fi
  wait_for answers 100 || { show_error_log; die "up: nginx does not answer on $listen after 10 s"; }
  say "nginx (pid $(nginx_pid || echo '?')) on http://$listen: CDN $cdn, gateways ${gateways[*]}; run dir $RUN_DIR"
}

down() {
  local pid
  pid=$(nginx_pid) || { say "not running (run dir $RUN_DIR)"; return 0; }
  # Quit: stop accepting, finish what is in flight (worker_shutdown_timeout bounds it).
  kill -QUIT "$pid" 2>/dev/null || true
  if ! wait_for "gone $pid" 150; then
    say "nginx (pid $pid) still up 15 s after quit; stopping it (TERM, then KILL)"
    # The master leads its own process group (it daemonised): the workers are in it.
    kill -TERM -- "-$pid" 2>/dev/null || true
    wait_for "gone $pid" 50 || kill -KILL -- "-$pid" 2>/dev/null || true
  fi
  rm -f "$RUN_DIR/nginx.pid"
  say "stopped nginx (pid $pid)"
}

status() {
  local pid listen
  listen=$(cat "$RUN_DIR/listen" 2>/dev/null || echo '?')
  if answers; then
    echo "nginx    http://$listen up (pid $(nginx_pid || echo '?'), run dir $RUN_DIR)"
  elif pid=$(nginx_pid); then
    echo "nginx    http://$listen NOT ANSWERING (pid $pid, run dir $RUN_DIR)"
    return 3
  else
    echo "nginx    DOWN (run dir $RUN_DIR)"
    return 3
  fi
}

run_dir_only() { # parses [--run-dir DIR] for down and status
  while [ $# -gt 0 ]; do
    case "$1" in
      --run-dir) RUN_DIR=${2:?--run-dir needs a directory}; shift 2 ;;
      *) die "unknown argument $1" ;;
    esac
  done
}

cmd=${1:-status}
[ $# -gt 0 ] && shift
case "$cmd" in
  install) install ;;
  up) up "$@" ;;
  down) run_dir_only "$@"; down ;;
  status) run_dir_only "$@"; status ;;
  *) echo "usage: $0 install | up --listen 127.0.0.1:PORT --cdn DIR --gateway 127.0.0.1:PORT... [--run-dir DIR] [--user NAME] | down [--run-dir DIR] | status [--run-dir DIR]" >&2; exit 2 ;;
esac
