#!/usr/bin/env bash
# Turns off password logins, and root logins but with a key. Runs only after
# the deploy user has logged in with its key, and refuses to run if that user
# has no key. Root keeps key-only logins when it is the admin user (a
# droplet's): the bootstrap steps log in as root to run again.
#
# The settings live in a drop-in that sshd reads first, whatever the host's
# own sshd_config says (sshd keeps the first value it reads, so a
# `PasswordAuthentication yes` above the host's Include would otherwise win).
# A new drop-in goes live only if `sshd -t` accepts the whole configuration
# (otherwise the previous one is put back and sshd is not reloaded), and
# after the reload sshd's effective settings (`sshd -T`) are checked, for the
# deploy and admin users too (a Match block can override them).
# Usage: harden-ssh.sh DEPLOY_USER ADMIN_USER
set -eu

CONF=/etc/ssh/sshd_config.d/00-dropship.conf
MAIN=/etc/ssh/sshd_config
FIRST="Include ${CONF}"

reload_sshd() { systemctl reload ssh 2>/dev/null || systemctl reload sshd; }

# The drop-in, included on the main config's first line (a later include of the same file changes nothing).
include_first() {
  if [ "$(head -n 1 "$MAIN")" != "$FIRST" ]; then
    cp -p "$MAIN" "${MAIN}.dropship-backup"
    { printf '%s\n' "$FIRST"; cat "${MAIN}.dropship-backup"; } >"${MAIN}.new"
    chmod --reference="$MAIN" "${MAIN}.new"
    mv -f "${MAIN}.new" "$MAIN"
  fi
}

# Puts the previous files back when sshd would not accept the new ones.
restore() {
  if [ -e "${CONF}.previous" ]; then mv -f "${CONF}.previous" "$CONF"; else rm -f "$CONF"; fi
  [ ! -e "${MAIN}.dropship-backup" ] || mv -f "${MAIN}.dropship-backup" "$MAIN"
}

# `sshd -T` for a connection of USER: the settings that apply to it after every Match block.
effective() { # USER KEY
  sshd -T -C "user=$1,host=dropship-check,addr=192.0.2.1" 2>/dev/null | awk -v key="$2" '$1 == key { print $2; exit }'
}

check_effective() { # ROOT_LOGIN USER...
  local root_login=$1 user value problems=""
  shift
  for user in "$@"; do
    for key in passwordauthentication kbdinteractiveauthentication; do
      value=$(effective "$user" "$key")
      [ "$value" = no ] || problems="${problems} ${key}=${value:-unknown} for ${user};"
    done
  done
  value=$(effective root permitrootlogin)
  case "${root_login}:${value}" in
    no:no | prohibit-password:prohibit-password | prohibit-password:without-password) ;;
    *) problems="${problems} permitrootlogin=${value:-unknown} (wanted ${root_login});" ;;
  esac
  if [ -n "$problems" ]; then
    echo "dropship: sshd's effective settings still allow what dropship turned off:${problems} a Match block or a setting before dropship's include overrides them (sshd -T -C user=<user>,host=x,addr=192.0.2.1 shows them)" >&2
    return 1
  fi
}

main() {
  local user=$1 admin=$2 home root_login=no
  home=$(getent passwd "$user" | cut -d: -f6)
  if [ ! -s "${home}/.ssh/authorized_keys" ]; then
    echo "refusing to harden sshd: ${user} has no authorized key" >&2
    exit 1
  fi
  [ "$admin" != root ] || root_login=prohibit-password
  mkdir -p /etc/ssh/sshd_config.d
  cat >"${CONF}.new" <<CONF
# Managed by dropship: included on the first line of ${MAIN}, so that these win.
PermitRootLogin ${root_login}
PasswordAuthentication no
KbdInteractiveAuthentication no
PubkeyAuthentication yes
CONF
  rm -f "${CONF}.previous" "${MAIN}.dropship-backup"
  if cmp -s "${CONF}.new" "$CONF" && [ "$(head -n 1 "$MAIN")" = "$FIRST" ]; then
    rm -f "${CONF}.new"
  else
    [ ! -e "$CONF" ] || cp -p "$CONF" "${CONF}.previous"
    mv -f "${CONF}.new" "$CONF"
    include_first
    if ! errors=$(sshd -t 2>&1); then
      restore
      echo "dropship: sshd refuses the configuration with dropship's drop-in, so it was not applied (sshd still runs the previous one): ${errors}" >&2
      exit 1
    fi
    rm -f "${CONF}.previous" "${MAIN}.dropship-backup"
    reload_sshd
  fi
  check_effective "$root_login" "$user" "$admin"
  echo "sshd: passwords off, root login ${root_login} (checked with sshd -T)"
}

main "$@"
