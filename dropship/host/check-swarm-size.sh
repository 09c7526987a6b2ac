#!/usr/bin/env bash
# Refuses an `up` that would leave the stack with fewer servers than its Swarm has, unless the setting
# allows it. Runs on the first server as its admin, before any other step of the `up` changes anything.
# Going back to one server, it takes that server out of dropship's Swarm first (its stack stops; the
# release starts the app with compose): Docker's live-restore, which the bootstrap turns on again for
# one server, cannot start in swarm mode.
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
  if [ "$servers" -eq 1 ] && [ "$(docker node inspect self --format '{{index .Spec.Labels "dropship.data"}}')" = true ]; then
    echo "back to one server: leaving the Swarm (the app stops until its release starts it with compose)"
    docker swarm leave --force
    return 0
  fi
  echo "the Swarm has $members server(s); the settings list $servers"
}

main "$@"
