#!/usr/bin/env bash
# Backs up, lists and restores the app's Postgres databases, as the deploy
# user, to an S3-compatible bucket through rclone. The systemd timer runs
# `backup`; people run `list` and `restore`. The bucket and its key come from
# the environment (the service's EnvironmentFile, mode 600): rclone's
# RCLONE_CONFIG_DROPSHIP_* for the remote `dropship:`, and DROPSHIP_BACKUP_BUCKET.
# A failed backup exits non-zero (the unit fails, the journal says why) and
# POSTs to DROPSHIP_BACKUP_FAILURE_URL when one is set.
# Usage: backup.sh backup APP_DIR PROJECT SERVICE
#        backup.sh list APP_DIR PROJECT SERVICE
#        backup.sh restore APP_DIR PROJECT SERVICE [NAME|latest]
set -eu
set -o pipefail

# pg_dump and pg_restore run in the service's own container, as its own user and
# database: the variables expand there.
# shellcheck disable=SC2016
DUMP='exec pg_dump --format=custom --username="${POSTGRES_USER:-postgres}" "${POSTGRES_DB:-${POSTGRES_USER:-postgres}}"'
# shellcheck disable=SC2016
RESTORE='exec pg_restore --clean --if-exists --no-owner --exit-on-error --username="${POSTGRES_USER:-postgres}" --dbname="${POSTGRES_DB:-${POSTGRES_USER:-postgres}}"'

fail() { echo "dropship backup: $*" >&2; exit 1; }

in_service() { # PROJECT SERVICE SCRIPT: runs SCRIPT in the service's running container, stdin passed on
  local id
  # By compose's labels, not its files: the timer has none of the release's compose files and settings.
  id=$(docker ps --quiet --filter "label=com.docker.compose.project=$1" --filter "label=com.docker.compose.service=$2" | head -n 1)
  [ -n "$id" ] || fail "service $2 of $1 has no running container"
  docker exec --interactive "$id" sh -c "$3"
}

prefix() { printf 'dropship:%s/%s/%s/' "${DROPSHIP_BACKUP_BUCKET:?DROPSHIP_BACKUP_BUCKET is not set}" "$1" "$2"; }

report_failure() { # MESSAGE
  local url=${DROPSHIP_BACKUP_FAILURE_URL:-}
  [ -n "$url" ] || return 0
  python3 - "$url" "$1" <<'PY' || echo "dropship backup: could not report the failure to its URL" >&2
import sys, urllib.request
urllib.request.urlopen(urllib.request.Request(sys.argv[1], data=sys.argv[2].encode(), method="POST"), timeout=15)
PY
}

backup() { # APP_DIR PROJECT SERVICE
  local name dump
  name="$(date -u +%Y%m%dT%H%M%SZ).dump"
  dump=$(mktemp "${TMPDIR:-/tmp}/dropship-backup.XXXXXX")
  # shellcheck disable=SC2064
  trap "rm -f '$dump'" EXIT
  in_service "$2" "$3" "$DUMP" </dev/null >"$dump" || fail "pg_dump of service $3 failed"
  [ -s "$dump" ] || fail "pg_dump of service $3 wrote nothing"
  rclone copyto --s3-no-check-bucket "$dump" "$(prefix "$2" "$3")$name" || fail "upload of $name failed"
  echo "dropship backup: service $3 -> $(prefix "$2" "$3")$name ($(stat -c %s "$dump") bytes)"
}

list() { # APP_DIR PROJECT SERVICE
  local names status=0
  names=$(rclone lsf --files-only "$(prefix "$2" "$3")") || status=$?
  # rclone exits 3 for a directory that does not exist: storage with directories before the first backup.
  [ "$status" -eq 0 ] || [ "$status" -eq 3 ] || fail "cannot list the backups of service $3 in $(prefix "$2" "$3") (rclone exited $status)"
  [ -z "$names" ] || printf '%s\n' "$names" | sort
}

restore() { # APP_DIR PROJECT SERVICE [NAME|latest]
  local name=${4:-latest}
  if [ "$name" = latest ]; then
    name=$(list "$@" | tail -n 1)
    [ -n "$name" ] || fail "no backup of service $3 in $(prefix "$2" "$3")"
  fi
  rclone cat "$(prefix "$2" "$3")$name" | in_service "$2" "$3" "$RESTORE" || fail "restore of $name into service $3 failed"
  echo "dropship backup: restored $name into service $3"
}

main() {
  local verb=${1:-}
  shift || true
  [ "$#" -ge 3 ] || fail "usage: backup.sh backup|list|restore APP_DIR PROJECT SERVICE [NAME|latest]"
  # Run by hand (not by its timer): the same environment file the timer's service reads.
  if [ -z "${DROPSHIP_BACKUP_BUCKET:-}" ] && [ -r "$1/.dropship/backup/.env" ]; then
    set -a
    # shellcheck source=/dev/null
    . "$1/.dropship/backup/.env"
    set +a
  fi
  case "$verb" in
    backup)
      local status=0
      (backup "$@") || status=$?
      if [ "$status" -ne 0 ]; then
        report_failure "backup of service $3 of $2 failed on $(hostname) (exit $status); see: journalctl -u 'dropship-backup-*'"
        exit "$status"
      fi
      ;;
    list) list "$@" ;;
    restore) restore "$@" ;;
    *) fail "unknown verb '${verb}': expected backup, list or restore" ;;
  esac
}

main "$@"
