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

# Path of the cached actionlint binary, building it if it is missing.
actionlint_bin() {
  local cache bin stage
  cache=${DROPSHIP_CACHE:-$HOME/.cache/dropship}
  [[ $cache == /* ]] || cache="$PWD/$cache"
  bin="$cache/bin/actionlint-$ACTIONLINT_VERSION"
  if [[ ! -x $bin ]]; then
    command -v go >/dev/null 2>&1 || die "actionlint $ACTIONLINT_VERSION is not built and there is no 'go' to build it"
    log "building actionlint $ACTIONLINT_VERSION (once)"
    mkdir -p "$cache/bin"
    stage=$(mktemp -d "$cache/bin/.actionlint.XXXXXX")
    if ! GOTOOLCHAIN=local GOSUMDB=off CGO_ENABLED=0 GOBIN="$stage" \
      go install "$ACTIONLINT_PACKAGE@$ACTIONLINT_VERSION" >&2; then
      rm -rf "$stage"
      die "go install $ACTIONLINT_PACKAGE@$ACTIONLINT_VERSION failed"
    fi
    mv -f "$stage/actionlint" "$bin"
    rm -rf "$stage"
  fi
  printf '%s\n' "$bin"
}

main() {
  local root bin
  root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd -P)
  command -v shellcheck >/dev/null 2>&1 || die "shellcheck is not installed (make deps)"
  bin=$(actionlint_bin)

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
