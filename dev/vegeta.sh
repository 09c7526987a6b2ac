#!/usr/bin/env bash
# The vegeta HTTP load tool (constant request rate) that `make bench` drives
# through dev/harness/vegeta.py.
#
# vegeta is built once from Go modules into
# ${DROPSHIP_CACHE:-$HOME/.cache/dropship}/bin/vegeta-<version> (needs `go`
# and the Go module proxy the first time) and reused afterwards.
#
# Usage: dev/vegeta.sh path            prints the binary's path (building it)
#        dev/vegeta.sh <vegeta args>   runs it, e.g. `dev/vegeta.sh report r.bin`
set -euo pipefail

readonly VEGETA_VERSION=v12.13.0
readonly VEGETA_PACKAGE=github.com/tsenart/vegeta/v12

log() { printf 'vegeta: %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

# Path of the cached vegeta binary, building it if it is missing.
vegeta_bin() {
  local cache bin stage
  cache=${DROPSHIP_CACHE:-$HOME/.cache/dropship}
  [[ $cache == /* ]] || cache="$PWD/$cache"
  bin="$cache/bin/vegeta-$VEGETA_VERSION"
  if [[ ! -x $bin ]]; then
    command -v go >/dev/null 2>&1 || die "vegeta $VEGETA_VERSION is not built and there is no 'go' to build it"
    log "building vegeta $VEGETA_VERSION (once)"
    mkdir -p "$cache/bin"
    stage=$(mktemp -d "$cache/bin/.vegeta.XXXXXX")
    if ! GOTOOLCHAIN=local GOSUMDB=off CGO_ENABLED=0 GOBIN="$stage" \
      go install "$VEGETA_PACKAGE@$VEGETA_VERSION" >&2; then
      rm -rf "$stage"
      die "go install $VEGETA_PACKAGE@$VEGETA_VERSION failed"
    fi
    mv -f "$stage/vegeta" "$bin"
    rm -rf "$stage"
  fi
  printf '%s\n' "$bin"
}

main() {
  (($#)) || die "usage: dev/vegeta.sh path | <vegeta args>"
  local bin
  bin=$(vegeta_bin)
  if [[ $1 == path ]]; then
    printf '%s\n' "$bin"
  else
    exec "$bin" "$@"
  fi
}

main "$@"
