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

# shellcheck source=dev/lib/go-tool.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib/go-tool.sh"

go_tool_main vegeta "$VEGETA_PACKAGE" "$VEGETA_VERSION" "$@"
