#!/usr/bin/env bash
# Ensure an outer Docker engine runs on this machine.
#
# If `docker info` already answers, nothing is done. Otherwise Debian's
# docker.io package is installed when dockerd is missing, and dockerd is
# started in the background with no bridge network and no iptables rules
# (every container here uses --network host and binds 127.0.0.1 only).
#
# Environment:
#   DROPSHIP_CACHE         state dir (default: $HOME/.cache/dropship);
#                          the daemon log and pid go to $DROPSHIP_CACHE/dockerd/
#   DOCKERD_START_TIMEOUT  seconds to wait for the engine (default: 60)
set -euo pipefail

log() { printf 'docker-engine: %s\n' "$*" >&2; }
die() { printf 'docker-engine: ERROR: %s\n' "$*" >&2; exit 1; }

engine_up() { docker info >/dev/null 2>&1; }

install_dockerd() {
  log "installing Debian's docker.io (provides dockerd, ~30 s)"
  apt-get -o DPkg::Lock::Timeout=600 update -qq >&2 \
    || die "step 'apt-get update' failed"
  DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=600 install -y -qq \
    --no-install-recommends docker.io >&2 \
    || die "step 'apt-get install docker.io' failed"
  command -v dockerd >/dev/null 2>&1 || die "docker.io installed but dockerd is still missing"
  command -v docker >/dev/null 2>&1 || die "docker.io installed but no docker client on PATH"
}

main() {
  local state="${DROPSHIP_CACHE:-$HOME/.cache/dropship}/dockerd"
  local timeout="${DOCKERD_START_TIMEOUT:-60}"

  if engine_up; then
    log "engine already running"
    return 0
  fi

  mkdir -p "$state"
  # Serialise concurrent callers (e.g. two make targets at once).
  exec 9>"$state/lock"
  flock -w "$timeout" 9 || die "step 'lock $state/lock' timed out"
  if engine_up; then
    log "engine already running"
    return 0
  fi

  if ! command -v dockerd >/dev/null 2>&1 || ! command -v docker >/dev/null 2>&1; then
    install_dockerd
  fi

  local pid=""
  if [[ -s "$state/dockerd.pid" ]]; then
    pid="$(cat "$state/dockerd.pid")"
    if ! kill -0 "$pid" 2>/dev/null; then
      pid=""
    fi
  fi
  if [[ -n "$pid" ]]; then
    log "dockerd (pid $pid) already started, waiting for it"
  else
    log "starting dockerd --bridge=none --iptables=false --ip-masq=false (log: $state/dockerd.log)"
    setsid nohup dockerd --bridge=none --iptables=false --ip-masq=false \
      >>"$state/dockerd.log" 2>&1 </dev/null &
    pid=$!
    echo "$pid" >"$state/dockerd.pid"
  fi

  local waited=0
  until engine_up; do
    if ! kill -0 "$pid" 2>/dev/null; then
      # Another dockerd (started by someone else) may have won the race.
      engine_up && break
      tail -n 20 "$state/dockerd.log" >&2 || true
      die "step 'start dockerd' failed: dockerd exited (see $state/dockerd.log)"
    fi
    if ((waited >= timeout)); then
      tail -n 20 "$state/dockerd.log" >&2 || true
      die "step 'wait for dockerd' timed out after ${timeout}s (see $state/dockerd.log)"
    fi
    sleep 1
    waited=$((waited + 1))
  done
  log "engine ready (dockerd pid $pid, ${waited}s)"
}

main "$@"
