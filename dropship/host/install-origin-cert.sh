#!/usr/bin/env bash
# Writes the origin certificate (PEM, from stdin) beside its key, atomically.
#
# Usage: install-origin-cert.sh TLS_DIR < cert.pem
set -eu

main() {
  [ "$#" -eq 1 ] || { echo "usage: install-origin-cert.sh TLS_DIR < cert.pem" >&2; exit 2; }
  local dir=$1
  [ -s "$dir/key.pem" ] || { echo "dropship: no origin key in $dir (origin-key.sh makes it first)" >&2; exit 1; }
  cat >"$dir/cert.pem.new"
  grep -q -- '-----BEGIN CERTIFICATE-----' "$dir/cert.pem.new" \
    || { rm -f "$dir/cert.pem.new"; echo "dropship: stdin holds no PEM certificate" >&2; exit 1; }
  chmod 644 "$dir/cert.pem.new"
  mv -f "$dir/cert.pem.new" "$dir/cert.pem"
  echo "origin certificate installed in $dir/cert.pem"
}

main "$@"
