#!/usr/bin/env bash
# Stops the app's containers and removes its directory (pulumi destroy).
# Named volumes are kept: data outlives the stack unless removed by hand.
# Usage: remove-app.sh APP_DIR PROJECT
set -eu

main() {
  local dir=$1 project=$2
  if command -v docker >/dev/null 2>&1; then
    docker compose --project-name "$project" down --remove-orphans
  fi
  if [ -d "$dir" ]; then
    find "$dir" -mindepth 1 -delete
    echo "removed the app from ${dir}"
  fi
}

main "$@"
