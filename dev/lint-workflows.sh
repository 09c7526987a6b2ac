#!/usr/bin/env bash
# Lints every GitHub Actions workflow in .github/workflows with actionlint,
# which also runs shellcheck on their `run:` blocks.
#
# actionlint is built once from Go modules into
# ${DROPSHIP_CACHE:-$HOME/.cache/dropship}/bin/actionlint-<version> (needs
# `go` and the Go module proxy the first time) and reused afterwards.
#
# Usage: dev/lint-workflows.sh [workflow files]   (default: every workflow)
set -euo pipefail

readonly ACTIONLINT_VERSION=v1.7.12
readonly ACTIONLINT_PACKAGE=github.com/rhysd/actionlint/cmd/actionlint

log() { printf 'lint-workflows: %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

# shellcheck source=dev/lib/go-tool.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib/go-tool.sh"

main() {
  local root bin
  root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd -P)
  command -v shellcheck >/dev/null 2>&1 || die "shellcheck is not installed (make deps)"
  bin=$(go_tool_bin actionlint "$ACTIONLINT_PACKAGE" "$ACTIONLINT_VERSION")

  local workflows=("$@")
  if ((${#workflows[@]} == 0)); then
    cd "$root"
    shopt -s nullglob
    workflows=(.github/workflows/*.yml .github/workflows/*.yaml)
    shopt -u nullglob
    ((${#workflows[@]})) || die "no workflows in .github/workflows"
  fi
  "$bin" -shellcheck "$(command -v shellcheck)" "${workflows[@]}"
  log "${#workflows[@]} workflow(s) clean: ${workflows[*]}"
}

main "$@"
