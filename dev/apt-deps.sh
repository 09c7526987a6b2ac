#!/usr/bin/env bash
# Installs the Debian packages dropship's tools and tests use, when missing:
# the linter shellcheck, debootstrap (test host image), docker-registry (registry),
# passt (the test hosts' network), e2fsprogs and mount (their data volumes),
# pebble (the local ACME CA), openssl (its listener certificate, origin keys),
# the OpenSSH client, curl, haproxy (a Swarm's load balancer). The outer Docker engine is dev/docker-engine.sh's job.
set -euo pipefail

main() {
  local wanted=(shellcheck:shellcheck debootstrap:debootstrap docker-registry:docker-registry pasta:passt mkfs.ext4:e2fsprogs losetup:mount ssh:openssh-client sshd:openssh-server curl:curl pebble:pebble openssl:openssl haproxy:haproxy)
  local missing=() entry
  for entry in "${wanted[@]}"; do
    command -v "${entry%%:*}" >/dev/null 2>&1 || missing+=("${entry##*:}")
  done
  [ "${#missing[@]}" -eq 0 ] && return 0
  echo "deps: installing ${missing[*]} (apt)" >&2
  apt-get -o DPkg::Lock::Timeout=600 update -qq
  DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=600 install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}

main "$@"
