#!/usr/bin/env bash
# Pebble, Let's Encrypt's ACME test server (Debian's pebble package), as the
# local stack's certificate authority, with pebble-challtestsrv as its DNS:
# the local hostnames resolve to the test host's own address, so Pebble's
# HTTP-01 validation reaches Caddy on the host's port 80, as Let's Encrypt
# reaches a droplet's.
#
# Usage: dev/pebble.sh start | stop | status | directory | root | resolve NAME ADDRESS
#   start      Pebble on 127.0.0.1:14000, its management API on 127.0.0.1:15000,
#              the DNS on 127.0.0.1:8053
#   directory  print the ACME directory as a test host's containers reach it:
#              https://<gateway>:14000/dir
#   root     print the root that signs the certificates Pebble issues (PEM);
#            Pebble makes a new one at every start
#   resolve  make NAME resolve to ADDRESS (an A record) for Pebble's validation
#
# Pebble's own HTTPS listener has a certificate signed by the test-only CA in
# examples/shop/local/acme-ca-root.pem (key: dev/pebble/acme-ca-key.pem), for
# 127.0.0.1, localhost and the gateway: the address a test host reaches this
# machine's loopback at (its namespace copies this machine's default route, and
# pasta maps the gateway to this machine's loopback).
#
# Environment:
#   DROPSHIP_CACHE    state dir (default: $HOME/.cache/dropship); files go to pebble/
set -euo pipefail

DEV=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd -P)
ROOT=$(dirname "$DEV")
STATE="${DROPSHIP_CACHE:-$HOME/.cache/dropship}/pebble"
CA_CERT="$ROOT/examples/shop/local/acme-ca-root.pem"
CA_KEY="$DEV/pebble/acme-ca-key.pem"
ACME_PORT=14000
ACME=127.0.0.1:$ACME_PORT
MANAGEMENT=127.0.0.1:15000
DNS=127.0.0.1:8053
DNS_MANAGEMENT=127.0.0.1:8055

log() { printf 'pebble: %s\n' "$*" >&2; }
die() { printf 'pebble: ERROR: %s\n' "$*" >&2; exit 1; }

usage() {
  printf 'usage: %s start | stop | status | directory | root | resolve NAME ADDRESS\n' "${0##*/}" >&2
  exit 2
}

# shellcheck source=dev/lib/debian.sh
. "$DEV/lib/debian.sh"

running() { # NAME: prints the pid of our process NAME
  local pid
  [[ -s "$STATE/$1.pid" ]] || return 1
  pid=$(cat "$STATE/$1.pid")
  kill -0 "$pid" 2>/dev/null || return 1
  printf '%s\n' "$pid"
}

gateway() { ip -4 route show default | awk '{print $3; exit}'; }

answers() { curl -fsS -o /dev/null --max-time 2 --cacert "$CA_CERT" "https://$ACME/dir" 2>/dev/null; }

listener_cert() {
  local sans="DNS:localhost,IP:127.0.0.1" gw
  gw=$(gateway)
  [[ -z "$gw" ]] || sans+=",IP:$gw"
  openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -subj "/CN=pebble" \
    -keyout "$STATE/listener-key.pem" -out "$STATE/listener.csr" 2>/dev/null
  printf 'subjectAltName=%s\nextendedKeyUsage=serverAuth\n' "$sans" >"$STATE/listener.ext"
  openssl x509 -req -in "$STATE/listener.csr" -CA "$CA_CERT" -CAkey "$CA_KEY" -CAserial "$STATE/ca.srl" -CAcreateserial \
    -days 30 -extfile "$STATE/listener.ext" -out "$STATE/listener.pem" 2>/dev/null \
    || die "step 'sign the listener certificate' failed"
  chmod 600 "$STATE/listener-key.pem"
}

write_config() {
  cat >"$STATE/pebble.json" <<EOF
{
  "pebble": {
    "listenAddress": "$ACME",
    "managementListenAddress": "$MANAGEMENT",
    "certificate": "$STATE/listener.pem",
    "privateKey": "$STATE/listener-key.pem",
    "httpPort": 80,
    "tlsPort": 443,
    "ocspResponderURL": "",
    "externalAccountBindingRequired": false
  }
}
EOF
}

cmd_start() {
  ensure_apt_pkg pebble pebble  # pebble-challtestsrv comes with it
  mkdir -p "$STATE"
  chmod 600 "$CA_KEY"
  if ! running challtestsrv >/dev/null; then
    log "starting pebble-challtestsrv (DNS on $DNS)"
    setsid pebble-challtestsrv -dns01 "$DNS" -http01 "" -https01 "" -tlsalpn01 "" \
      -management "$DNS_MANAGEMENT" -defaultIPv4 "" -defaultIPv6 "" \
      >"$STATE/challtestsrv.log" 2>&1 </dev/null &
    echo $! >"$STATE/challtestsrv.pid"
  fi
  local i
  for i in $(seq 1 50); do
    curl -s -o /dev/null --max-time 1 "http://$DNS_MANAGEMENT/" 2>/dev/null && break  # any answer (404) will do
    [[ $i -lt 50 ]] || { cat "$STATE/challtestsrv.log" >&2; die "step 'start pebble-challtestsrv': nothing answers on $DNS_MANAGEMENT"; }
    sleep 0.2
  done
  if running pebble >/dev/null && answers; then
    log "already running"
    return 0
  fi
  listener_cert
  write_config
  log "starting pebble (ACME directory https://$ACME/dir)"
  # No random sleeps before validations and no rejected nonces: tests stay fast and deterministic.
  PEBBLE_VA_NOSLEEP=1 PEBBLE_WFE_NONCEREJECT=0 PEBBLE_AUTHZREUSE=100 \
    setsid pebble -config "$STATE/pebble.json" -dnsserver "$DNS" >"$STATE/pebble.log" 2>&1 </dev/null &
  echo $! >"$STATE/pebble.pid"
  for i in $(seq 1 50); do
    answers && { log "ready"; return 0; }
    sleep 0.2
  done
  tail -n 20 "$STATE/pebble.log" >&2 || true
  die "step 'start pebble': nothing answers on https://$ACME/dir"
}

cmd_stop() {
  local name pid
  for name in pebble challtestsrv; do
    if pid=$(running "$name"); then
      kill "$pid"
      while kill -0 "$pid" 2>/dev/null; do sleep 0.1; done
      log "stopped $name"
    fi
    rm -f "$STATE/$name.pid"
  done
}

cmd_status() {
  if ! running pebble >/dev/null || ! answers; then echo "pebble: not running"; return 1; fi
  echo "pebble: running, ACME directory https://$ACME/dir"
}

cmd_directory() {
  local gw
  gw=$(gateway)
  [[ -n "$gw" ]] || die "step 'directory': this machine has no default route, so test hosts have no gateway to reach Pebble at"
  printf 'https://%s:%s/dir\n' "$gw" "$ACME_PORT"
}

cmd_root() {
  curl -fsS --max-time 5 --cacert "$CA_CERT" "https://$MANAGEMENT/roots/0" \
    || die "step 'fetch the root': Pebble's management API does not answer (dev/pebble.sh start)"
}

cmd_resolve() { # NAME ADDRESS: replaces what NAME resolved to before
  local name=$1 address=$2
  if ! curl -fsS --max-time 5 -o /dev/null -d "{\"host\":\"${name%.}.\"}" "http://$DNS_MANAGEMENT/clear-a" \
    || ! curl -fsS --max-time 5 -o /dev/null -d "{\"host\":\"${name%.}.\",\"addresses\":[\"$address\"]}" \
      "http://$DNS_MANAGEMENT/add-a"; then
    die "step 'resolve $name': pebble-challtestsrv does not answer (dev/pebble.sh start)"
  fi
}

main() {
  case "${1:-}" in
    start) cmd_start ;;
    stop) cmd_stop ;;
    status) cmd_status ;;
    directory) cmd_directory ;;
    root) cmd_root ;;
    resolve) [[ $# -eq 3 ]] || usage; cmd_resolve "$2" "$3" ;;
    *) usage ;;
  esac
}

main "$@"
