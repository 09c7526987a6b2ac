# Functions for dev/ scripts that build from Debian packages: the caller
# defines log and die.
# shellcheck shell=bash

ensure_apt_pkg() { # COMMAND PACKAGE
  command -v "$1" >/dev/null 2>&1 && return 0
  log "installing $2 (apt)"
  apt-get -o DPkg::Lock::Timeout=600 update -qq >&2 \
    || die "step 'apt-get update' failed"
  DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=600 install -y -qq \
    --no-install-recommends "$2" >&2 \
    || die "step 'apt-get install $2' failed"
}

# The Debian mirror this machine's apt uses (deb822 .sources or one-line .list).
debian_mirror() {
  if [[ -n "${DEBIAN_MIRROR:-}" ]]; then
    printf '%s\n' "$DEBIAN_MIRROR"
    return 0
  fi
  local files=() f url
  for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.sources /etc/apt/sources.list.d/*.list; do
    [[ -f "$f" ]] && files+=("$f")
  done
  ((${#files[@]})) || die "step 'find Debian mirror': no apt sources on this machine; set DEBIAN_MIRROR"
  url="$(awk '
      /^[[:space:]]*URIs:/ { for (i = 2; i <= NF; i++) print $i; next }
      /^[[:space:]]*deb[[:space:]]/ {
        for (i = 2; i <= NF; i++) if ($i !~ /^\[/ && $i !~ /\]$/ && $i !~ /=/) { print $i; break }
      }' "${files[@]}" | grep -E '^https?://[^ ]+/debian/?$' | head -n 1)" || true
  [[ -n "$url" ]] || die "step 'find Debian mirror': no .../debian URI in /etc/apt/sources*; set DEBIAN_MIRROR"
  printf '%s\n' "${url%/}"
}

# Pristine debootstrap output, cached as a tarball so a rebuild of the image
# (e.g. after IMAGE_REV changes) does not need debootstrap again.
ensure_rootfs_tar() { # TAR SUITE INCLUDE
  local tar="$1" suite="$2" include="$3" mirror tmp
  [[ -s "$tar" ]] && { log "using cached rootfs $tar"; return 0; }
  ensure_apt_pkg debootstrap debootstrap
  mirror="$(debian_mirror)"
  mkdir -p "${tar%/*}"
  tmp="$(mktemp -d "${tar%/*}/debootstrap.XXXXXX")"
  log "running debootstrap --variant=minbase $suite (~1 min; log: $tmp.log)"
  if ! debootstrap --variant=minbase --include="$include" "$suite" "$tmp/rootfs" "$mirror" \
    >"$tmp.log" 2>&1; then
    tail -n 20 "$tmp.log" >&2 || true
    rm -rf "$tmp"
    die "step 'debootstrap $suite' failed (see $tmp.log)"
  fi
  log "saving rootfs tarball $tar"
  tar -C "$tmp/rootfs" --numeric-owner -cf "$tar.part" . || die "step 'tar rootfs' failed"
  mv "$tar.part" "$tar"
  rm -rf "$tmp" "$tmp.log"
}

