#!/usr/bin/env bash
# Build the example app's images (examples/local/images/web, examples/local/images/edge)
# from Debian packages (and the edge's Caddy, dev/caddy.sh, from Go modules),
# with the release tag baked in, and push them to the local registry.
#
# Usage: dev/build-images.sh TAG
#   pushes $REGISTRY/dropship-example/web:TAG and .../edge:TAG
#
# Needs the outer Docker engine (dev/docker-engine.sh) and the registry
# (dev/registry.sh start).
#
# Environment:
#   DROPSHIP_CACHE  state dir (default: $HOME/.cache/dropship); downloaded
#                   packages go to debs/, build contexts and logs to a
#                   directory of this run's own under images/ (removed when
#                   the build succeeds), so that concurrent builds never meet
#   REGISTRY        registry host:port (default: 127.0.0.1:5000)
set -euo pipefail

# Debian packages per image; their files are extracted under rootfs/ in the
# image's build context.
WEB_DEBS=(busybox-static)
EDGE_DEBS=(busybox-static)

log() { printf 'build-images: %s\n' "$*" >&2; }
die() { printf 'build-images: ERROR: %s\n' "$*" >&2; exit 1; }

usage() {
  printf 'usage: %s TAG\n' "${0##*/}" >&2
  exit 2
}

# Download a package's .deb into the cache once; print its path.
fetch_deb() { # PACKAGE
  local pkg="$1" dir="$CACHE/debs" found
  mkdir -p "$dir"
  found="$(find "$dir" -maxdepth 1 -name "${pkg}_*.deb" -print -quit)"
  if [[ -z "$found" ]]; then
    log "downloading Debian package $pkg"
    # Into this run's directory first, then moved: a concurrent build never sees a partial .deb.
    local fetched="$WORK/debs"
    mkdir -p "$fetched"
    if ! (cd "$fetched" && apt-get -q -o APT::Sandbox::User=root download "$pkg" >/dev/null 2>&1); then
      log "apt-get download $pkg failed; running apt-get update and retrying"
      apt-get -o DPkg::Lock::Timeout=600 update -qq >&2 || die "step 'apt-get update' failed"
      (cd "$fetched" && apt-get -q -o APT::Sandbox::User=root download "$pkg" >&2) \
        || die "step 'apt-get download $pkg' failed"
    fi
    mv -f "$fetched/${pkg}"_*.deb "$dir/" || die "step 'apt-get download $pkg' left no ${pkg}_*.deb"
    found="$(find "$dir" -maxdepth 1 -name "${pkg}_*.deb" -print -quit)"
    [[ -n "$found" ]] || die "step 'apt-get download $pkg' left no ${pkg}_*.deb in $dir"
  fi
  printf '%s\n' "$found"
}

# Fresh build context: the image's directory from the repo, plus rootfs/ with
# the packages' files (docs and manuals left out).
stage_context() { # NAME DEB...
  local name="$1" ctx="$WORK/$1" pkg deb
  shift
  mkdir -p "$ctx/rootfs"
  cp -a "$REPO/examples/local/images/$name/." "$ctx/"
  for pkg in "$@"; do
    deb="$(fetch_deb "$pkg")"
    dpkg-deb -x "$deb" "$ctx/rootfs" || die "step 'dpkg-deb -x $deb' failed"
  done
  rm -rf "$ctx/rootfs/usr/share/doc" "$ctx/rootfs/usr/share/man" \
    "$ctx/rootfs/usr/share/lintian" "$ctx/rootfs/usr/share/bug" \
    "$ctx/rootfs/etc/init.d" "$ctx/rootfs/lib/systemd" "$ctx/rootfs/usr/lib/systemd"
  # Packages from a merged-/usr suite ship the loader under /usr/lib64 only.
  local d
  for d in lib lib64 bin sbin; do
    if [[ ! -e "$ctx/rootfs/$d" && -d "$ctx/rootfs/usr/$d" ]]; then
      ln -s "usr/$d" "$ctx/rootfs/$d"
    fi
  done
  printf '%s\n' "$ctx"
}

build_and_push() { # NAME CONTEXT
  local name="$1" ctx="$2" ref="$REGISTRY/dropship-example/$1:$TAG"
  local logf="$WORK/$1.log" start=$SECONDS
  log "building $ref (docker build --network host)"
  if ! docker build --network host --build-arg "RELEASE=$TAG" -t "$ref" "$ctx" >"$logf" 2>&1; then
    tail -n 30 "$logf" >&2 || true
    die "step 'docker build $name' failed (see $logf)"
  fi
  log "pushing $ref"
  if ! docker push "$ref" >>"$logf" 2>&1; then
    tail -n 30 "$logf" >&2 || true
    die "step 'docker push $ref' failed (see $logf)"
  fi
  log "$name done in $((SECONDS - start))s"
}

main() {
  [[ $# -eq 1 ]] || usage
  TAG="$1"
  [[ "$TAG" =~ ^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$ ]] \
    || die "bad TAG '$TAG': use letters, digits, '_', '.', '-' (a Docker tag)"
  CACHE="${DROPSHIP_CACHE:-$HOME/.cache/dropship}"
  REGISTRY="${REGISTRY:-127.0.0.1:5000}"
  REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"

  docker info >/dev/null 2>&1 \
    || die "step 'docker info': no Docker engine answers (run dev/docker-engine.sh first)"
  curl -fs -o /dev/null --max-time 5 "http://$REGISTRY/v2/" \
    || die "step 'check registry': nothing answers on http://$REGISTRY/v2/ (run dev/registry.sh start)"

  local ctx caddy
  caddy="$(bash "$REPO/dev/caddy.sh" path)" || die "step 'dev/caddy.sh path' failed"
  mkdir -p "$CACHE/images"
  WORK="$(mktemp -d "$CACHE/images/build-$TAG.XXXXXX")"
  ctx="$(stage_context web "${WEB_DEBS[@]}")"
  build_and_push web "$ctx"
  ctx="$(stage_context edge "${EDGE_DEBS[@]}")"
  mkdir -p "$ctx/rootfs/usr/bin"
  cp "$caddy" "$ctx/rootfs/usr/bin/caddy"
  cp "$REPO/examples/local/Caddyfile" "$ctx/Caddyfile"
  build_and_push edge "$ctx"
  rm -rf "$WORK"
  log "pushed $REGISTRY/dropship-example/{web,edge}:$TAG"
}

main "$@"
