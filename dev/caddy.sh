#!/usr/bin/env bash
# Caddy, the version dropship's edge pins (edge.image: the official caddy image
# of this version on droplets), for the test hosts' edge images
# (dev/build-images.sh, dev/build-shop-images.sh) and the edge's system tests.
#
# Built once from Go modules into
# ${DROPSHIP_CACHE:-$HOME/.cache/dropship}/bin/caddy-<version> (needs `go`
# and the Go module proxy the first time; about two minutes) and reused
# afterwards. A static binary: the images need no libc for it.
#
# Usage: dev/caddy.sh path            prints the binary's path (building it)
#        dev/caddy.sh <caddy args>    runs it, e.g. `dev/caddy.sh version`
set -euo pipefail

readonly CADDY_VERSION=v2.11.9  # the tag of dropship/config/sections.py's EDGE_IMAGE
readonly CADDY_PACKAGE=github.com/caddyserver/caddy/v2/cmd/caddy

log() { printf 'caddy: %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

# shellcheck source=dev/lib/go-tool.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib/go-tool.sh"

go_tool_main caddy "$CADDY_PACKAGE" "$CADDY_VERSION" "$@"
