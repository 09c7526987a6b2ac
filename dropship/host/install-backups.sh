#!/usr/bin/env bash
# Installs rclone and one systemd timer per database service, which runs
# backup.py as the deploy user on the schedule; timers of services no longer
# listed are removed. `remove` (the step's delete) removes the project's timers
# and the backups' environment file. Safe to run again.
# apt_install and apt_update come from apt.sh.
# Usage: install-backups.sh install APP_DIR PROJECT USER SCHEDULE MACHINE SERVICE...
#        install-backups.sh remove APP_DIR PROJECT MACHINE
#   MACHINE: the id of the machine the timers are installed on (a line of their units). A replaced
#   machine's step is deleted after the new machine's is created; when the new one answers at the same
#   address, its units name another machine and nothing is removed.
set -eu

unit_name() { printf 'dropship-backup-%s-%s' "$1" "$2"; }

service_unit() { # APP_DIR PROJECT USER SERVICE
  printf '%s\n' \
    '# Managed by dropship.' \
    '[Unit]' \
    "Description=dropship: back up service $4 of $2" \
    'After=docker.service network-online.target' \
    'Wants=network-online.target' \
    '' \
    '[Service]' \
    'Type=oneshot' \
    "User=$3" \
    "EnvironmentFile=$1/.dropship/backup/.env" \
    "ExecStart=/usr/bin/python3 $1/.dropship/backup.py backup $1 $2 $4"
}

timer_unit() { # PROJECT SERVICE SCHEDULE MACHINE
  printf '%s\n' \
    '# Managed by dropship.' \
    '[Unit]' \
    "Description=dropship: back up service $2 of $1 ($3)" \
    "X-Dropship-Project=$1" \
    "X-Dropship-Machine=$4" \
    '' \
    '[Timer]' \
    "OnCalendar=$3" \
    'Persistent=true' \
    'AccuracySec=1s' \
    '' \
    '[Install]' \
    'WantedBy=timers.target'
}

project_timers() { # PROJECT: the project's timer units (the glob also matches a project "PROJECT-<more>")
  local unit
  for unit in /etc/systemd/system/dropship-backup-"$1"-*.timer; do
    grep -qxF "X-Dropship-Project=$1" "$unit" 2>/dev/null && printf '%s\n' "$unit"
  done
  return 0
}

remove_timer() { # UNIT_PATH
  systemctl disable --now "${1##*/}" >/dev/null 2>&1 || true
  rm -f "$1" "${1%.timer}.service"
  echo "removed ${1##*/}"
}

install() { # APP_DIR PROJECT USER SCHEDULE MACHINE SERVICE...
  local app_dir=$1 project=$2 user=$3 schedule=$4 machine=$5 service unit wanted=" "
  shift 5
  systemd-analyze calendar "$schedule" >/dev/null || { echo "not a systemd calendar time: ${schedule}" >&2; exit 2; }
  command -v rclone >/dev/null 2>&1 || apt_install rclone
  # So that the deploy user can read the timers' journal.
  usermod --append --groups systemd-journal "$user"
  for service in "$@"; do
    unit=$(unit_name "$project" "$service")
    wanted="${wanted}${unit}.timer "
    service_unit "$app_dir" "$project" "$user" "$service" >"/etc/systemd/system/${unit}.service"
    timer_unit "$project" "$service" "$schedule" "$machine" >"/etc/systemd/system/${unit}.timer"
  done
  for unit in $(project_timers "$project"); do
    case "$wanted" in *" ${unit##*/} "*) continue ;; esac
    remove_timer "$unit"
  done
  systemctl daemon-reload
  for service in "$@"; do
    unit=$(unit_name "$project" "$service")
    systemctl enable --now "${unit}.timer" >/dev/null
    echo "backups of ${service}: $(systemctl show -P NextElapseUSecRealtime "${unit}.timer" 2>/dev/null || echo scheduled) (${schedule})"
  done
}

remove() { # APP_DIR PROJECT MACHINE
  local app_dir=$1 project=$2 machine=$3 unit
  for unit in $(project_timers "$project"); do
    if ! grep -qxF "X-Dropship-Machine=${machine}" "$unit"; then
      echo "dropship: ${unit##*/} belongs to another machine than '${machine}' now: kept"
      return 0
    fi
    remove_timer "$unit"
  done
  systemctl daemon-reload
  rm -rf "${app_dir}/.dropship/backup"
}

main() {
  local verb=${1:-}
  shift || true
  case "$verb" in
    install) [ "$#" -ge 6 ] || { echo "usage: install-backups.sh install APP_DIR PROJECT USER SCHEDULE MACHINE SERVICE..." >&2; exit 2; }; install "$@" ;;
    remove) [ "$#" -eq 3 ] || { echo "usage: install-backups.sh remove APP_DIR PROJECT MACHINE" >&2; exit 2; }; remove "$@" ;;
    *) echo "unknown verb '${verb}': expected install or remove" >&2; exit 2 ;;
  esac
}

main "$@"
