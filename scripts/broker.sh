#!/usr/bin/env bash
# A private Redis broker for campaigns on one machine (the lab, demos, benchmarks): Debian's
# redis-server on 127.0.0.1, a random free port, a random password, its own run directory,
# no persistence (pathspider/campaign/localbroker.py does the work).
#
#   scripts/broker.sh start RUNDIR   start it; prints the URL (password included), which is
#                                    also in RUNDIR/url (mode 0600); the helper's PID in RUNDIR/pid
#   scripts/broker.sh stop RUNDIR    stop it (by that PID) and remove RUNDIR's files
#
# redis-server comes from scripts/install.sh; it is never assumed.
set -euo pipefail
cd "$(dirname "$0")/.."
py=.venv/bin/python
usage() { echo "usage: scripts/broker.sh start|stop RUNDIR" >&2; exit 2; }
[ $# -eq 2 ] || usage
rundir="$2"

start() {
  if [ -e "$rundir/pid" ] && kill -0 "$(cat "$rundir/pid")" 2>/dev/null; then
    echo "broker.sh: a broker already runs for $rundir (pid $(cat "$rundir/pid"))" >&2; exit 1
  fi
  command -v redis-server >/dev/null 2>&1 || {
    echo "broker.sh: redis-server is not installed (run scripts/install.sh)" >&2; exit 1; }
  mkdir -p "$rundir" && chmod 700 "$rundir"
  rm -f "$rundir/ready"
  mkfifo -m 600 "$rundir/ready"
  # The helper prints the URL once redis-server accepts connections, then waits for SIGTERM.
  setsid "$py" -m pathspider.campaign.localbroker --rundir "$rundir/redis" \
      >"$rundir/ready" 2>>"$rundir/broker.log" </dev/null &
  echo $! >"$rundir/pid"
  local url=""
  read -r -t 30 url <"$rundir/ready" || true
  rm -f "$rundir/ready"
  if [ -z "$url" ]; then
    echo "broker.sh: the broker did not start (see $rundir/broker.log)" >&2
    stop; exit 1
  fi
  (umask 077; printf '%s\n' "$url" >"$rundir/url")
  printf '%s\n' "$url"
}

stop() {
  [ -e "$rundir/pid" ] || { echo "broker.sh: no broker for $rundir" >&2; return 0; }
  local pid; pid="$(cat "$rundir/pid")"
  if kill -0 "$pid" 2>/dev/null; then
    kill -TERM "$pid"
    for _ in $(seq 150); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  fi
  rm -f "$rundir/pid" "$rundir/url" "$rundir/ready"
  rm -rf "$rundir/redis"
}

case "$1" in
  start) start ;;
  stop) stop ;;
  *) usage ;;
esac
