#!/usr/bin/env bash
# Builds the shop's images (examples/shop/images) from Debian packages and
# PyPI only, and pushes them to the local registry:
#   shop/base:BASE_REV   Debian 13 (debootstrap minbase) with python3,
#                        postgresql-17, redis-server, caddy: one layer every
#                        other image shares, so a host pulls it once
#   shop/api:TAG         the API, the worker and the migrations (release TAG)
#   shop/db:BASE_REV, shop/redis:BASE_REV, shop/caddy:BASE_REV
#                        the data services and the static files (web): they
#                        follow the base, not the release, so a release does
#                        not restart them
#   shop/edge:CADDY      dropship's edge for the local stack: the base with the
#                        Caddy dropship pins (dev/caddy.sh)
#
# Usage: dev/build-shop-images.sh TAG
# Environment: DROPSHIP_CACHE (default $HOME/.cache/dropship), REGISTRY
# (default 127.0.0.1:5000), DEBIAN_MIRROR (default: this machine's).
set -euo pipefail

BASE_REV=trixie-2
SUITE=trixie
INCLUDE=python3,postgresql-17,redis-server,caddy,ca-certificates,curl
PYTHON_VERSION=3.13  # trixie's python3

log() { printf 'build-shop-images: %s\n' "$*" >&2; }
die() { printf 'build-shop-images: ERROR: %s\n' "$*" >&2; exit 1; }

# shellcheck source=dev/lib/debian.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib/debian.sh"

# Docker speaks plain HTTP to a registry on loopback only.
registry_url() { case "$REGISTRY" in 127.* | localhost:*) echo "http://$REGISTRY" ;; *) echo "https://$REGISTRY" ;; esac; }

pushed() { # REF: already in the registry? (a registry that wants a login says no: it is built again)
  local name=${1#*/} repo tag
  repo=${name%:*} tag=${name##*:}
  curl -fsS -o /dev/null --max-time 5 -H 'Accept: application/vnd.docker.distribution.manifest.v2+json' \
    "$(registry_url)/v2/$repo/manifests/$tag" 2>/dev/null
}

push() { # REF LOG
  docker push "$1" >>"$2" 2>&1 || { tail -n 20 "$2" >&2; die "step 'docker push $1' failed (see $2)"; }
}

ensure_base() {
  local ref="$REGISTRY/shop/base:$BASE_REV" tar sum
  sum=$(printf %s "$INCLUDE" | sha256sum | cut -c1-12)
  tar="$CACHE/shop/rootfs-$SUITE-$sum.tar"
  pushed "$ref" && return 0
  if ! docker image inspect "$ref" >/dev/null 2>&1; then
    ensure_rootfs_tar "$tar" "$SUITE" "$INCLUDE"
    log "importing $ref (without apt's caches and lists, docs and translations)"
    local rootfs="$WORK/rootfs"
    mkdir -p "$rootfs"
    tar -C "$rootfs" --numeric-owner -xf "$tar"
    rm -rf "$rootfs"/var/cache/apt/* "$rootfs"/var/lib/apt/lists/* "$rootfs"/usr/share/doc/* \
      "$rootfs"/usr/share/man/* "$rootfs"/usr/share/locale/* "$rootfs"/usr/share/info/*
    tar -C "$rootfs" --numeric-owner -c . \
      | docker import --change 'ENV PATH=/usr/local/bin:/usr/bin:/bin' --change 'ENV LANG=C.UTF-8' - "$ref" >/dev/null \
      || die "step 'docker import $tar' failed"
    rm -rf "$rootfs"
  fi
  log "pushing $ref"
  push "$ref" "$WORK/base.log"
}

# The API's packages for the image's Python, from PyPI, cached by the requirements' content.
python_packages() {
  local requirements="$REPO/examples/shop/api/requirements.txt" dir sum
  sum=$(sha256sum "$requirements" | cut -c1-16)
  dir="$CACHE/shop/pylib-$PYTHON_VERSION-$sum"
  if [[ ! -d "$dir" ]]; then
    log "pip install --target for Python $PYTHON_VERSION (from PyPI)"
    python3 -m pip install --quiet --disable-pip-version-check --no-compile --target "$dir.part" \
      --python-version "$PYTHON_VERSION" --implementation cp --only-binary=:all: \
      --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
      -r "$requirements" >&2 || die "step 'pip install -r $requirements' failed"
    mv "$dir.part" "$dir"
  fi
  printf '%s\n' "$dir"
}

build() { # NAME TAG [CONTEXT]
  local name=$1 tag=$2 ctx=${3:-$REPO/examples/shop/images/$1} ref logf
  ref="$REGISTRY/shop/$name:$tag"
  logf="$WORK/$name.log"
  pushed "$ref" && [[ $name != api ]] && return 0
  log "building $ref"
  docker build --network none --build-arg "BASE=$REGISTRY/shop/base:$BASE_REV" --build-arg "RELEASE=$tag" \
    -t "$ref" "$ctx" >"$logf" 2>&1 || { tail -n 30 "$logf" >&2; die "step 'docker build $name' failed (see $logf)"; }
  log "pushing $ref"
  push "$ref" "$logf"
}

main() {
  [[ $# -eq 1 ]] || { printf 'usage: %s TAG\n' "${0##*/}" >&2; exit 2; }
  TAG=$1
  [[ "$TAG" =~ ^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$ ]] || die "bad TAG '$TAG': a Docker tag such as v2"
  CACHE="${DROPSHIP_CACHE:-$HOME/.cache/dropship}"
  REGISTRY="${REGISTRY:-127.0.0.1:5000}"
  REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
  docker info >/dev/null 2>&1 || die "step 'docker info': no Docker engine answers (run dev/docker-engine.sh first)"
  curl -s -o /dev/null --max-time 5 "$(registry_url)/v2/" \
    || die "step 'check registry': nothing answers on $(registry_url)/v2/ (locally: dev/registry.sh start)"
  mkdir -p "$CACHE/shop"
  WORK="$(mktemp -d "$CACHE/shop/build-$TAG.XXXXXX")"

  ensure_base
  local name
  for name in db redis caddy; do build "$name" "$BASE_REV"; done
  local caddy edge="$WORK/edge-context"
  caddy="$(bash "$REPO/dev/caddy.sh" path)" || die "step 'dev/caddy.sh path' failed"
  mkdir -p "$edge"
  cp -a "$REPO/examples/shop/images/edge/." "$edge/"
  cp "$caddy" "$edge/caddy"
  build edge "${caddy##*/caddy-v}" "$edge"  # .../bin/caddy-v2.11.9: shop/edge:2.11.9
  local ctx="$WORK/api-context"
  mkdir -p "$ctx"
  cp -a "$REPO/examples/shop/images/api/." "$ctx/"
  cp -a "$(python_packages)" "$ctx/pylib"
  mkdir -p "$ctx/app"
  cp -a "$REPO/examples/shop/api/shop" "$REPO/examples/shop/api/migrations" "$REPO/examples/shop/api/alembic.ini" "$ctx/app/"
  find "$ctx" -name __pycache__ -prune -exec rm -rf {} +
  build api "$TAG" "$ctx"
  rm -rf "$WORK"
  log "pushed $REGISTRY/shop/api:$TAG, shop/{db,redis,caddy}:$BASE_REV and shop/edge"
}

main "$@"
