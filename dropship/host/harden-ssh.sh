#!/usr/bin/env bash
# Turns off root and password logins. Runs only after the deploy user has
# logged in with its key, and refuses to run if that user has no key.
# Usage: harden-ssh.sh DEPLOY_USER
set -eu

main() {
  local user=$1 home conf=/etc/ssh/sshd_config.d/00-dropship.conf
  home=$(getent passwd "$user" | cut -d: -f6)
  if [ ! -s "${home}/.ssh/authorized_keys" ]; then
    echo "refusing to harden sshd: ${user} has no authorized key" >&2
    exit 1
  fi
  mkdir -p /etc/ssh/sshd_config.d
  if ! grep -Eqi '^[[:space:]]*Include[[:space:]]+/etc/ssh/sshd_config\.d/' /etc/ssh/sshd_config; then
    sed -i '1i Include /etc/ssh/sshd_config.d/*.conf' /etc/ssh/sshd_config
  fi
  # sshd keeps the first value it reads; 00- sorts before cloud-init's 50- file.
  cat >"${conf}.new" <<'CONF'
# Managed by dropship.
PermitRootLogin no
PasswordAuthentication no
KbdInteractiveAuthentication no
PubkeyAuthentication yes
CONF
  mv -f "${conf}.new" "$conf"
  sshd -t
  systemctl reload ssh 2>/dev/null || systemctl reload sshd
  echo "sshd: root login and passwords are off"
}

main "$@"
