#!/usr/bin/env bash
# Runs as the deploy user: proves the key login works and docker needs no sudo.
set -eu

main() {
  docker version --format 'docker server {{.Server.Version}}'
  echo "logged in as $(id -un), groups: $(id -nG)"
}

main "$@"
