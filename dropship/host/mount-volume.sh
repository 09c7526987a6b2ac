#!/usr/bin/env bash
# Mounts the stack's data volume before Docker uses it, and keeps Docker's
# named volumes on it: a new server that gets the same volume finds the app's
# data (Postgres, Redis, Caddy's certificates) where compose left it.
#
# Usage: mount-volume.sh DEVICE MOUNT_PATH
#   DEVICE      the volume by a stable path, e.g. /dev/disk/by-id/scsi-0DO_Volume_shop-data
#   MOUNT_PATH  where it is mounted, e.g. /mnt/data
#
# fstab gets two lines, both `nofail` (a missing volume must not stop the boot;
# Docker then waits for it instead, see the drop-in below):
#   DEVICE MOUNT_PATH ext4 ...
#   MOUNT_PATH/docker-volumes /var/lib/docker/volumes none bind ...
# Environment: DROPSHIP_FSTAB, DROPSHIP_DOCKER_VOLUMES, DROPSHIP_UNIT_DIR and
# DROPSHIP_DEVICE_WAIT (seconds) exist for the tests.
set -eu

FSTAB=${DROPSHIP_FSTAB:-/etc/fstab}
DOCKER_VOLUMES=${DROPSHIP_DOCKER_VOLUMES:-/var/lib/docker/volumes}
UNIT_DIR=${DROPSHIP_UNIT_DIR:-/etc/systemd/system}
MARK="# dropship data volume"

fail() { printf 'dropship: %s\n' "$*" >&2; exit 1; }

# A volume attached a moment ago may not have its by-id link yet.
wait_for_device() { # DEVICE
  local waited=0 limit=${DROPSHIP_DEVICE_WAIT:-120}
  until [ -b "$1" ]; do
    [ "$waited" -lt "$limit" ] || fail "no block device at $1 after ${limit}s: is the volume attached to this server?"
    [ "$waited" -gt 0 ] || echo "waiting for $1"
    sleep 2
    waited=$((waited + 2))
  done
}

ensure_ext4() { # DEVICE
  local type
  type=$(blkid -p -o value -s TYPE "$1" 2>/dev/null || true)
  case "$type" in
    ext4) ;;
    "")
      # blkid finds no signature at all: a blank volume, made ext4 once. Anything else is refused.
      if [ -n "$(blkid -p -o value -s PTTYPE "$1" 2>/dev/null || true)" ]; then
        fail "$1 has a partition table and no ext4 file system; dropship mounts whole ext4 volumes only"
      fi
      echo "formatting blank volume $1 as ext4"
      mkfs.ext4 -q "$1"
      ;;
    *) fail "$1 holds a ${type} file system; dropship mounts ext4 volumes only (DigitalOcean: initial_filesystem_type ext4)" ;;
  esac
}

# Replaces dropship's lines in fstab (marked) with these, atomically.
write_fstab() { # DEVICE MOUNT_PATH
  local device=$1 mount_path=$2 new
  new=$(mktemp "${FSTAB}.XXXXXX")
  if [ -f "$FSTAB" ]; then grep -v -F "$MARK" "$FSTAB" >"$new" || true; fi
  {
    printf '%s defaults,nofail,discard,noatime 0 2 %s\n' "${device} ${mount_path} ext4" "$MARK"
    printf '%s none bind,nofail,x-systemd.requires-mounts-for=%s 0 0 %s\n' \
      "${mount_path}/docker-volumes ${DOCKER_VOLUMES}" "$mount_path" "$MARK"
  } >>"$new"
  chmod 644 "$new"
  mv -f "$new" "$FSTAB"
}

# Docker starts only once its volumes directory is the volume's, also at boot.
write_docker_dropin() {
  mkdir -p "${UNIT_DIR}/docker.service.d"
  printf '[Unit]\nRequiresMountsFor=%s\n' "$DOCKER_VOLUMES" >"${UNIT_DIR}/docker.service.d/dropship-volume.conf"
}

has_systemd() { [ -d /run/systemd/system ]; }

is_mounted() { findmnt --mountpoint "$1" >/dev/null 2>&1; }

mounted_source() { findmnt --noheadings --output SOURCE --mountpoint "$1" 2>/dev/null | head -n 1; }

main() {
  [ "$#" -eq 2 ] || fail "usage: mount-volume.sh DEVICE MOUNT_PATH"
  local device=$1 mount_path=$2 real docker_was_active=false
  wait_for_device "$device"
  real=$(readlink -f "$device")
  if is_mounted "$mount_path"; then
    [ "$(readlink -f "$(mounted_source "$mount_path")")" = "$real" ] \
      || fail "$mount_path is already mounted from $(mounted_source "$mount_path"), not from $device"
  else
    ensure_ext4 "$device"
  fi
  write_fstab "$device" "$mount_path"
  write_docker_dropin
  if has_systemd; then systemctl daemon-reload; fi

  mkdir -p "$mount_path"
  is_mounted "$mount_path" || mount --fstab "$FSTAB" "$mount_path"
  mkdir -p "${mount_path}/docker-volumes"
  chmod 701 "${mount_path}/docker-volumes"

  if ! is_mounted "$DOCKER_VOLUMES"; then
    # A server that ran Docker before it had the volume: its named volumes move onto the volume once.
    if has_systemd && systemctl is-active --quiet docker.service; then
      echo "stopping Docker to move its named volumes onto ${mount_path}"
      systemctl stop docker.socket docker.service
      docker_was_active=true
    fi
    if [ -d "$DOCKER_VOLUMES" ] && [ -n "$(ls -A "$DOCKER_VOLUMES")" ]; then
      if [ -n "$(ls -A "${mount_path}/docker-volumes")" ]; then
        fail "both ${DOCKER_VOLUMES} and ${mount_path}/docker-volumes hold volumes; move one aside by hand"
      fi
      cp -a "${DOCKER_VOLUMES}/." "${mount_path}/docker-volumes/"
    fi
    mkdir -p "$DOCKER_VOLUMES"
    mount --fstab "$FSTAB" "$DOCKER_VOLUMES"
    if [ "$docker_was_active" = true ]; then systemctl start docker.service; fi
  fi
  echo "volume ${device} mounted at ${mount_path}; Docker's named volumes are in ${mount_path}/docker-volumes"
}

main "$@"
