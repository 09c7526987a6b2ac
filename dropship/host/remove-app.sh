#!/usr/bin/env bash
# Stops the app's containers and removes its directory (pulumi destroy).
# Named volumes are kept: data outlives the stack unless removed by hand.
# Usage: remove-app.sh APP_DIR PROJECT [MACHINE]
#   MACHINE: the id of the machine the app was deployed to (APP_DIR/.dropship-machine).
#   A replaced machine's step is deleted after the new machine's is created; when
#   the new one answers at the same address, its mark differs and nothing is removed.
set -eu

# dropship's edge (edge.routes) is shared by the host's stacks: only this stack's site and files go.
remove_from_edge() {
  local project=$1
  if [ -n "$(docker ps --quiet --filter name=^dropship-edge$)" ]; then
    docker exec dropship-edge rm -rf "/etc/caddy/sites/${project}.caddy" "/etc/caddy/stacks/${project}"
    docker exec dropship-edge caddy reload --config /etc/caddy/dropship.caddy --adapter caddyfile
    echo "removed ${project} from dropship's edge"
  fi
}

main() {
  local dir=$1 project=$2 machine=${3-} mark
  if [ -d "$dir" ] && [ ! -e "${dir}/.dropship-machine" ] && [ -n "$(ls -A "$dir")" ]; then
    echo "dropship: ${dir} has no mark of dropship's (.dropship-machine): its files are not dropship's to remove; nothing removed"
    return 0
  fi
  mark=$(cat "${dir}/.dropship-machine" 2>/dev/null || true)
  if [ -d "$dir" ] && [ "$mark" != "$machine" ]; then
    echo "dropship: ${dir} is the app of machine '${mark}' now, not of '${machine}': nothing removed"
    return 0
  fi
  if command -v docker >/dev/null 2>&1; then
    docker compose --project-name "$project" down --remove-orphans
    remove_from_edge "$project"
  fi
  if [ -d "$dir" ]; then
    find "$dir" -mindepth 1 -delete
    echo "removed the app from ${dir}"
  fi
}

main "$@"
