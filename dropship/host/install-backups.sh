#!/usr/bin/env bash
# Installs rclone and one systemd timer per database service, which runs
# backup.sh as the deploy user on the schedule; timers of services no longer
# listed are removed. Safe to run again.
# apt_install and apt_update come from apt.sh.
# Usage: install-backups.sh APP_DIR PROJECT USER SCHEDULE [SERVICE...]
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
    "ExecStart=/bin/bash $1/.dropship/backup.sh backup $1 $2 $4"
}

timer_unit() { # PROJECT SERVICE SCHEDULE
  printf '%s\n' \
    '# Managed by dropship.' \
    '[Unit]' \
    "Description=dropship: back up service $2 of $1 ($3)" \
    "X-Dropship-Project=$1" \
    '' \
    '[Timer]' \
    "OnCalendar=$3" \
    'Persistent=true' \
    'AccuracySec=1s' \
    '' \
    '[Install]' \
    'WantedBy=timers.target'
}

main() {
  local app_dir=$1 project=$2 user=$3 schedule=$4 service unit wanted=" "
  shift 4
  systemd-analyze calendar "$schedule" >/dev/null || { echo "not a systemd calendar time: ${schedule}" >&2; exit 2; }
  command -v rclone >/dev/null 2>&1 || apt_install rclone
  # So that the deploy user can read the timers' journal.
  usermod --append --groups systemd-journal "$user"
  for service in "$@"; do
    unit=$(unit_name "$project" "$service")
    wanted="${wanted}${unit}.timer "
    service_unit "$app_dir" "$project" "$user" "$service" >"/etc/systemd/system/${unit}.service"
    timer_unit "$project" "$service" "$schedule" >"/etc/systemd/system/${unit}.timer"
  done
  for unit in /etc/systemd/system/dropship-backup-"$project"-*.timer; do
    # The glob also matches the units of a project named "${project}-<more>".
    grep -qxF "X-Dropship-Project=${project}" "$unit" 2>/dev/null || continue
    case "$wanted" in *" ${unit##*/} "*) continue ;; esac
    systemctl disable --now "${unit##*/}" >/dev/null 2>&1 || true
    rm -f "$unit" "${unit%.timer}.service"
    echo "removed ${unit##*/}"
  done
  systemctl daemon-reload
  for service in "$@"; do
    unit=$(unit_name "$project" "$service")
    systemctl enable --now "${unit}.timer" >/dev/null
    echo "backups of ${service}: $(systemctl show -P NextElapseUSecRealtime "${unit}.timer" 2>/dev/null || echo scheduled) (${schedule})"
  done
}

main "$@"
