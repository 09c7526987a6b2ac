#!/usr/bin/env bash
# Turns on unattended security upgrades: the unattended-upgrades package, run
# daily by APT's timers with the distribution's default origins (its security
# archive among them). Safe to run again; an existing install is kept.
# apt_install and apt_update come from apt.sh.
# Usage: enable-security-upgrades.sh
set -eu

CONF=/etc/apt/apt.conf.d/21dropship-auto-upgrades

# Sorts after the package's 20auto-upgrades, so this value wins.
periodic_conf() {
  printf '%s\n' \
    '// Managed by dropship: refresh package lists and install security upgrades daily.' \
    'APT::Periodic::Update-Package-Lists "1";' \
    'APT::Periodic::Unattended-Upgrade "1";'
}

installed() { dpkg-query -W -f '${Status}' "$1" 2>/dev/null | grep -q ' installed$'; }

main() {
  if ! installed unattended-upgrades; then
    echo "installing unattended-upgrades"
    apt-cache show unattended-upgrades >/dev/null 2>&1 || apt_update
    apt_install unattended-upgrades
  fi
  if [ "$(cat "$CONF" 2>/dev/null || true)" != "$(periodic_conf)" ]; then
    periodic_conf >"${CONF}.new"
    mv -f "${CONF}.new" "$CONF"
    echo "wrote ${CONF}"
  fi
  systemctl enable --now apt-daily.timer apt-daily-upgrade.timer >/dev/null 2>&1
  local periodic
  periodic=$(apt-config dump APT::Periodic::Unattended-Upgrade)
  case "$periodic" in
    *'"1"'*) echo "unattended security upgrades: on (${periodic%;}, apt-daily-upgrade.timer enabled)" ;;
    *) echo "unattended upgrades are still off: ${periodic:-APT::Periodic::Unattended-Upgrade unset}" >&2; exit 1 ;;
  esac
}

main "$@"
