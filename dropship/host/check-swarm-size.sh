#!/usr/bin/env bash
# Refuses an `up` that would leave the stack with fewer servers than its Swarm has, unless the setting
# allows it. Runs on the first server as its admin, before any other step of the `up` changes anything.
#   check-swarm-size.sh SERVERS ALLOW(true|false) SETTING
set -eu

main() {
  local servers=$1 allow=$2 setting=$3 state members
  # A server without Docker yet, or not in a Swarm, has nothing to lose.
  command -v docker >/dev/null 2>&1 || exit 0
  state=$(docker info --format '{{.Swarm.LocalNodeState}}' 2>/dev/null) || exit 0
  [ "$state" = active ] || exit 0
  # Servers that are down still count: taking them out of the settings takes them out of the Swarm.
  members=$(docker node ls --quiet | wc -l)
  if [ "$members" -gt "$servers" ] && [ "$allow" != true ]; then
    echo "dropship: the Swarm has $members servers and the settings list $servers;" \
      "set $setting: true to take the others out (their tasks move to the servers that stay)" >&2
    exit 1
  fi
  echo "the Swarm has $members server(s); the settings list $servers"
}

main "$@"
