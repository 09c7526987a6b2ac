#!/usr/bin/env bash
# A local image registry for tests: Debian's docker-registry (distribution v2)
# on 127.0.0.1:5000, no auth, storage under the state dir. Docker trusts
# registries on 127.0.0.0/8 without TLS, and host-network test hosts reach the
# same address.
#
# Usage: dev/registry.sh start|stop|status
#
# Environment:
#   DROPSHIP_CACHE          state dir (default: $HOME/.cache/dropship);
#                           config, data, log and pid go to $DROPSHIP_CACHE/registry/
#   REGISTRY_ADDR           listen address (default: 127.0.0.1:5000)
#   REGISTRY_START_TIMEOUT  seconds to wait for it to answer (default: 30)
set -euo pipefail

log() { printf 'registry: %s\n' "$*" >&2; }
die() { printf 'registry: ERROR: %s\n' "$*" >&2; exit 1; }

usage() {
  printf 'usage: %s start|stop|status\n' "${0##*/}" >&2
  exit 2
}

answers() { curl -fsS -o /dev/null --max-time 2 "http://$ADDR/v2/" 2>/dev/null; }

our_pid() {
  local pid
  [[ -s "$STATE/registry.pid" ]] || return 1
  pid="$(cat "$STATE/registry.pid")"
  kill -0 "$pid" 2>/dev/null || return 1
  printf '%s\n' "$pid"
}

# shellcheck source=dev/lib/debian.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib/debian.sh"

write_config() {
  mkdir -p "$STATE/data"
  cat >"$STATE/config.yml" <<EOF
version: 0.1
log:
  level: warn
storage:
  cache:
    blobdescriptor: inmemory
  filesystem:
    rootdirectory: $STATE/data
  delete:
    enabled: true
http:
  addr: $ADDR
  headers:
    X-Content-Type-Options: [nosniff]
EOF
}

cmd_start() {
  local pid
  if pid="$(our_pid)"; then
    answers && { log "already running (pid $pid) on $ADDR"; return 0; }
  elif answers; then
    die "step 'start': something else already serves a registry on $ADDR"
  fi
  ensure_apt_pkg docker-registry docker-registry
  mkdir -p "$STATE"
  write_config
  if [[ -z "${pid:-}" ]]; then
    log "starting docker-registry on $ADDR (data: $STATE/data, log: $STATE/registry.log)"
    setsid nohup docker-registry serve "$STATE/config.yml" \
      >>"$STATE/registry.log" 2>&1 </dev/null &
    pid=$!
    echo "$pid" >"$STATE/registry.pid"
  fi
  local waited=0
  until answers; do
    if ! kill -0 "$pid" 2>/dev/null; then
      tail -n 20 "$STATE/registry.log" >&2 || true
      die "step 'start docker-registry' failed: it exited (see $STATE/registry.log)"
    fi
    if ((waited >= TIMEOUT * 2)); then
      tail -n 20 "$STATE/registry.log" >&2 || true
      die "step 'wait for registry' timed out after ${TIMEOUT}s"
    fi
    sleep 0.5
    waited=$((waited + 1))
  done
  log "ready on http://$ADDR (pid $pid)"
}

cmd_stop() {
  local pid
  if ! pid="$(our_pid)"; then
    rm -f "$STATE/registry.pid"
    log "not running"
    return 0
  fi
  log "stopping docker-registry (pid $pid)"
  kill "$pid"
  local i
  for i in $(seq 1 50); do
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.2
  done
  if kill -0 "$pid" 2>/dev/null; then
    log "pid $pid still alive after 10 s (try $i), sending SIGKILL"
    kill -9 "$pid" 2>/dev/null || true
  fi
  rm -f "$STATE/registry.pid"
  log "stopped (data kept in $STATE/data)"
}

cmd_status() {
  local pid
  if pid="$(our_pid)" && answers; then
    echo "running (pid $pid) on $ADDR"
  elif answers; then
    echo "a registry answers on $ADDR, but not one started by this script"
  else
    echo "not running"
    return 1
  fi
}

main() {
  [[ $# -eq 1 ]] || usage
  STATE="${DROPSHIP_CACHE:-$HOME/.cache/dropship}/registry"
  ADDR="${REGISTRY_ADDR:-127.0.0.1:5000}"
  TIMEOUT="${REGISTRY_START_TIMEOUT:-30}"
  case "$1" in
    start) cmd_start ;;
    stop) cmd_stop ;;
    status) cmd_status ;;
    *) usage ;;
  esac
}

main "$@"
