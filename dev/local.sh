#!/usr/bin/env bash
# The `local` stack's lifecycle on this machine, behind `make up`, `make release`
# and `make down`: the outer Docker engine, the local registry, the example
# images, the test host, then the real `pulumi up -s local`.
#
# Usage: dev/local.sh up | release TAG | down
# Environment (set by the Makefile): PULUMI_BACKEND_URL, PULUMI_CONFIG_PASSPHRASE, DROPSHIP_CACHE.
set -euo pipefail

STACK=local
HOST_ADDRESS=127.0.0.2  # Pulumi.local.yaml's existingHost.address
DEV=$(cd "$(dirname "$0")" && pwd -P)
ROOT=$(dirname "$DEV")

step() { printf '\n==> %s\n' "$*" >&2; current_step=$*; }
on_error() { printf '\nmake: step failed: %s (see the output above)\n' "${current_step:-start}" >&2; }

pulumi_env() {
  # shellcheck source=offline/pulumi-env.sh
  . "$ROOT/offline/pulumi-env.sh"
  mkdir -p "${PULUMI_BACKEND_URL#file://}"
  cd "$ROOT"
  pulumi stack select "$STACK" >/dev/null 2>&1 || pulumi stack init "$STACK" >/dev/null
}

config_tag() {
  pulumi config get -s "$STACK" app.imageTag
}

# A JSON list on stdin, as space-separated words.
json_words() { "$ROOT/venv/bin/python" -c 'import json,sys; print(" ".join(json.load(sys.stdin)))'; }

hostnames() { pulumi config get -s "$STACK" existingHost.hostnames | json_words; }

bring_up_host() {
  step "outer Docker engine"
  bash "$DEV/docker-engine.sh"
  step "local registry on 127.0.0.1:5000"
  bash "$DEV/registry.sh" start
  step "the shop's images, tag $1"
  bash "$DEV/build-shop-images.sh" "$1"
  step "Pebble, the local ACME CA"
  local directory name
  bash "$DEV/pebble.sh" start
  directory=$(bash "$DEV/pebble.sh" directory)
  if [ "$(pulumi config get -s "$STACK" tls.acmeCa)" != "$directory" ]; then
    pulumi config set -s "$STACK" tls.acmeCa "$directory"
  fi
  for name in $(hostnames); do bash "$DEV/pebble.sh" resolve "$name" "$HOST_ADDRESS"; done
  step "test host at $HOST_ADDRESS (its own network)"
  TESTHOST_KEY="$DEV/dev_ed25519" TESTHOST_ADDRESS="$HOST_ADDRESS" bash "$DEV/testhost.sh" start
}

deploy() {
  step "pulumi up -s $STACK"
  pulumi up -s "$STACK" --yes --skip-preview --color never
  step "done"
  bash "$DEV/pebble.sh" root >"$ROOT/.pebble-root.pem"
  local names
  names=$(hostnames)
  printf 'The app answers at: %s\n' "$(pulumi stack output -s "$STACK" urls --json | json_words)"
  cat <<EOF
Its certificates are issued by Pebble, the local ACME CA; its root is in .pebble-root.pem
(a new one each time Pebble starts). To try it:
  curl --cacert .pebble-root.pem --resolve ${names%% *}:443:$HOST_ADDRESS https://${names%% *}/api/health
In a browser: add "$HOST_ADDRESS $names" to /etc/hosts and import .pebble-root.pem as a trusted authority.
EOF
}

cmd_up() {
  step "Pulumi engine"
  pulumi_env
  bring_up_host "$(config_tag)"
  deploy
}

cmd_release() {
  local tag=$1
  step "Pulumi engine"
  pulumi_env
  bring_up_host "$tag"
  step "app.imageTag = $tag"
  pulumi config set -s "$STACK" app.imageTag "$tag"
  deploy
}

cmd_down() {
  step "Pulumi engine"
  pulumi_env
  if TESTHOST_ADDRESS="$HOST_ADDRESS" bash "$DEV/testhost.sh" status >/dev/null 2>&1; then
    step "pulumi destroy -s $STACK"
    pulumi destroy -s "$STACK" --yes --skip-preview --color never
  else
    step "test host is gone: forgetting the stack's state (its config stays)"
    pulumi stack rm -s "$STACK" --yes --force --preserve-config
  fi
  step "removing the test host"
  TESTHOST_ADDRESS="$HOST_ADDRESS" bash "$DEV/testhost.sh" stop
  step "stopping the local registry and Pebble"
  bash "$DEV/registry.sh" stop
  bash "$DEV/pebble.sh" stop
}

main() {
  trap on_error ERR
  case "${1:-}" in
    up) cmd_up ;;
    release) [ -n "${2:-}" ] || { echo "usage: $0 release TAG" >&2; exit 2; }; cmd_release "$2" ;;
    down) cmd_down ;;
    *) echo "usage: $0 up | release TAG | down" >&2; exit 2 ;;
  esac
}

main "$@"
