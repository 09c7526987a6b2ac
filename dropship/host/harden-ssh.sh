#!/usr/bin/env bash
# Turns off password logins, and root logins but with a key. Runs only after
# the deploy user has logged in with its key, and refuses to run if that user
# has no key. Root keeps key-only logins when it is the admin user (a
# droplet's): the bootstrap steps log in as root to run again.
# Usage: harden-ssh.sh DEPLOY_USER ADMIN_USER
set -eu

main() {
  local user=$1 admin=$2 home conf=/etc/ssh/sshd_config.d/00-dropship.conf root_login=no
  home=$(getent passwd "$user" | cut -d: -f6)
  if [ ! -s "${home}/.ssh/authorized_keys" ]; then
    echo "refusing to harden sshd: ${user} has no authorized key" >&2
    exit 1
  fi
  [ "$admin" != root ] || root_login=prohibit-password
  mkdir -p /etc/ssh/sshd_config.d
  if ! grep -Eqi '^[[:space:]]*Include[[:space:]]+/etc/ssh/sshd_config\.d/' /etc/ssh/sshd_config; then
    sed -i '1i Include /etc/ssh/sshd_config.d/*.conf' /etc/ssh/sshd_config
  fi
  # sshd keeps the first value it reads; 00- sorts before cloud-init's 50- file.
  cat >"${conf}.new" <<CONF
# Managed by dropship.
PermitRootLogin ${root_login}
PasswordAuthentication no
KbdInteractiveAuthentication no
PubkeyAuthentication yes
CONF
  if cmp -s "${conf}.new" "$conf"; then
    rm -f "${conf}.new"
  else
    mv -f "${conf}.new" "$conf"
    sshd -t
    systemctl reload ssh 2>/dev/null || systemctl reload sshd
  fi
  echo "sshd: passwords off, root login ${root_login}"
}

main "$@"
