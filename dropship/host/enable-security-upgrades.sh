#!/usr/bin/env bash
# Turns on unattended security upgrades: the unattended-upgrades package, run
# daily by APT's timers with the distribution's default origins (its security
# archive among them), plus Docker's own repository when Docker came from it,
# and a reboot at a time of day when an upgrade needs one (or never). Safe to
# run again; an existing install is kept.
# apt_install and apt_update come from apt.sh.
# Usage: enable-security-upgrades.sh DOCKER_INSTALL REBOOT_TIME
#   DOCKER_INSTALL: distro or docker-apt; REBOOT_TIME: HH:MM or never
set -eu

PERIODIC=/etc/apt/apt.conf.d/21dropship-auto-upgrades
# Sorts after the package's 50unattended-upgrades: lists add up, later values win.
POLICY=/etc/apt/apt.conf.d/52dropship-unattended-upgrades

# Sorts after the package's 20auto-upgrades, so this value wins.
periodic_conf() {
  printf '%s\n' \
    '// Managed by dropship: refresh package lists and install security upgrades daily.' \
    'APT::Periodic::Update-Package-Lists "1";' \
    'APT::Periodic::Unattended-Upgrade "1";'
}

policy_conf() {
  local docker_install=$1 reboot_time=$2
  echo '// Managed by dropship.'
  if [ "$docker_install" = docker-apt ]; then
    # Docker's repository is not one of the distribution's: without this line its
    # packages (the engine, containerd) would never be upgraded. unattended-upgrades
    # expands ${distro_codename} itself.
    # shellcheck disable=SC2016
    echo 'Unattended-Upgrade::Origins-Pattern { "origin=Docker,codename=${distro_codename},label=Docker CE"; };'
  fi
  if [ "$reboot_time" = never ]; then
    echo 'Unattended-Upgrade::Automatic-Reboot "false";'
  else
    echo 'Unattended-Upgrade::Automatic-Reboot "true";'
    echo 'Unattended-Upgrade::Automatic-Reboot-WithUsers "true";'
    printf 'Unattended-Upgrade::Automatic-Reboot-Time "%s";\n' "$reboot_time"
  fi
}

installed() { dpkg-query -W -f '${Status}' "$1" 2>/dev/null | grep -q ' installed$'; }

# Replaces FILE with stdin when it differs.
write_if_changed() {
  local file=$1 wanted
  wanted=$(cat)
  if [ "$(cat "$file" 2>/dev/null || true)" != "$wanted" ]; then
    printf '%s\n' "$wanted" >"${file}.new"
    mv -f "${file}.new" "$file"
    echo "wrote ${file}"
  fi
}

main() {
  local docker_install=$1 reboot_time=$2
  if ! installed unattended-upgrades; then
    echo "installing unattended-upgrades"
    apt-cache show unattended-upgrades >/dev/null 2>&1 || apt_update
    apt_install unattended-upgrades
  fi
  periodic_conf | write_if_changed "$PERIODIC"
  policy_conf "$docker_install" "$reboot_time" | write_if_changed "$POLICY"
  systemctl enable --now apt-daily.timer apt-daily-upgrade.timer >/dev/null 2>&1
  local periodic
  periodic=$(apt-config dump APT::Periodic::Unattended-Upgrade)
  case "$periodic" in
    *'"1"'*) echo "unattended security upgrades: on (${periodic%;}, apt-daily-upgrade.timer enabled)" ;;
    *) echo "unattended upgrades are still off: ${periodic:-APT::Periodic::Unattended-Upgrade unset}" >&2; exit 1 ;;
  esac
  echo "reboot when an upgrade needs it: ${reboot_time}"
}

main "$@"
