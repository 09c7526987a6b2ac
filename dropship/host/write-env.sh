#!/usr/bin/env bash
# Writes the app's .env from stdin: mode 600 from the moment it exists,
# replaced atomically. Never prints its content.
# Usage: write-env.sh APP_DIR   (content on stdin)
set -eu

main() {
  local dir=$1 tmp
  umask 077
  mkdir -p "$dir"
  tmp=$(mktemp "${dir}/.env.XXXXXX")
  trap 'rm -f "$tmp"' EXIT
  cat >"$tmp"
  chmod 600 "$tmp"
  mv -f "$tmp" "${dir}/.env"
  trap - EXIT
  echo "wrote ${dir}/.env ($(wc -l <"${dir}/.env") variables)"
}

main "$@"
