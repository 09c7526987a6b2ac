#!/usr/bin/env bash
# Creates the non-root deploy user: docker group, the deploy key, the app
# directory it owns, and sudo only when asked for.
# Usage: create-deploy-user.sh USER PUBLIC_KEY APP_DIR SUDO
set -eu

main() {
  local user=$1 public_key=$2 app_dir=$3 sudo=$4 uid
  # The settings refuse system directories and accounts by name; these are the host's own answers.
  if [ -d "$app_dir" ] && [ ! -e "${app_dir}/.dropship-machine" ] && [ -n "$(ls -A "$app_dir")" ]; then
    echo "dropship: app.directory ${app_dir} already holds files that dropship did not put there; set app.directory to a directory of its own (or empty this one)" >&2
    exit 1
  fi
  uid=$(id -u "$user" 2>/dev/null || true)
  if [ -n "$uid" ] && [ "$uid" -lt 1000 ]; then
    echo "dropship: deploy.user ${user} is a system account on this host (uid ${uid}); set deploy.user to a user of its own, such as deploy" >&2
    exit 1
  fi
  getent group docker >/dev/null || groupadd --system docker
  if ! id "$user" >/dev/null 2>&1; then
    useradd --create-home --shell /bin/bash "$user"
    echo "created user ${user}"
  fi
  usermod --append --groups docker "$user"

  local home
  home=$(getent passwd "$user" | cut -d: -f6)
  install -d -m 700 -o "$user" -g "$user" "${home}/.ssh"
  printf '%s\n' "$public_key" >"${home}/.ssh/authorized_keys.new"
  chown "$user:$user" "${home}/.ssh/authorized_keys.new"
  chmod 600 "${home}/.ssh/authorized_keys.new"
  mv -f "${home}/.ssh/authorized_keys.new" "${home}/.ssh/authorized_keys"

  install -d -m 750 -o "$user" -g "$user" "$app_dir"

  local sudoers="/etc/sudoers.d/dropship-${user}"
  if [ "$sudo" = "true" ]; then
    printf '%s ALL=(ALL) NOPASSWD:ALL\n' "$user" >"${sudoers}.new"
    chmod 440 "${sudoers}.new"
    visudo -cf "${sudoers}.new" >/dev/null
    mv -f "${sudoers}.new" "$sudoers"
  else
    rm -f "$sudoers"
  fi
  echo "deploy user ${user}: groups $(id -nG "$user")"
}

main "$@"
