#!/usr/bin/env bash
# rclone, for the tests of the backups: the client the hosts run (Debian's and
# Ubuntu's `rclone` package), and `rclone serve s3`, the S3-compatible storage
# the end-to-end tier backs up to.
#
# rclone is built once from Go modules into
# ${DROPSHIP_CACHE:-$HOME/.cache/dropship}/bin/rclone-<version> (needs `go`
# and the Go module proxy the first time) and reused afterwards.
#
# Usage: dev/rclone.sh path            prints the binary's path (building it)
#        dev/rclone.sh <rclone args>   runs it, e.g. `dev/rclone.sh version`
set -euo pipefail

readonly RCLONE_VERSION=v1.76.0
readonly RCLONE_PACKAGE=github.com/rclone/rclone

log() { printf 'rclone: %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

# shellcheck source=dev/lib/go-tool.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib/go-tool.sh"

go_tool_main rclone "$RCLONE_PACKAGE" "$RCLONE_VERSION" "$@"
