#!/usr/bin/env bash
# The origin certificate's private key, made on the server once and never
# leaving it; prints a certificate signing request for the hostnames (public),
# which Cloudflare's origin CA signs (cloudflare.OriginCaCertificate).
#
# Usage: origin-key.sh TLS_DIR HOSTNAME...
#   TLS_DIR/key.pem   P-256 key, mode 600, made if missing (kept across runs)
set -eu

main() {
  [ "$#" -ge 2 ] || { echo "usage: origin-key.sh TLS_DIR HOSTNAME..." >&2; exit 2; }
  local dir=$1 sans="" name
  shift
  mkdir -p "$dir"
  chmod 700 "$dir"
  if [ ! -s "$dir/key.pem" ]; then
    (umask 077 && openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$dir/key.pem.new")
    mv -f "$dir/key.pem.new" "$dir/key.pem"
  fi
  for name in "$@"; do sans="${sans:+${sans},}DNS:${name}"; done
  openssl req -new -key "$dir/key.pem" -subj "/CN=$1" -addext "subjectAltName=${sans}"
}

main "$@"
