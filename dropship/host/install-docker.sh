#!/usr/bin/env bash
# Installs Docker Engine with the compose v2 plugin and configures container
# log rotation. Probes first: an engine that already works is left in place.
# Safe to run again after it was cut off half-way (a dropped SSH connection, a
# reboot): an interrupted dpkg run is finished before anything else.
# apt_install and apt_update come from apt.sh: they wait while apt is busy, as
# it is on a fresh droplet.
# Usage: install-docker.sh SOURCE LOG_MAX_SIZE LOG_MAX_FILE
#   SOURCE: distro (the distribution's packages) or docker-apt (Docker's apt repository)
set -eu

dpkg_interrupted() {
  [ -n "$(ls -A /var/lib/dpkg/updates 2>/dev/null)" ] || [ -n "$(dpkg --audit 2>/dev/null)" ]
}

# apt refuses to run after an interrupted dpkg ("you must manually run 'dpkg
# --configure -a'"). The interrupted run's own processes may still hold the
# lock for a moment: wait for it like apt does.
finish_interrupted_dpkg() {
  dpkg_interrupted || return 0
  echo "finishing an interrupted package installation (dpkg --configure -a)"
  local waited=0 out
  until out=$(DEBIAN_FRONTEND=noninteractive dpkg --force-confold --configure -a 2>&1); do
    case "$out" in
      *"lock"*) [ "$waited" -lt "$(apt_lock_wait)" ] || { printf '%s\n' "$out" >&2; return 1; } ;;
      *) printf '%s\n' "$out" >&2; return 1 ;;
    esac
    sleep 2
    waited=$((waited + 2))
  done
  [ -z "$out" ] || printf '%s\n' "$out"
  # Packages cut off while being unpacked are reinstalled.
  apt_install --fix-broken
}

has_package() { apt-cache show "$1" >/dev/null 2>&1; }

# `systemctl reload docker` only sends SIGHUP and returns: a restart right after
# it could stop the daemon before it applied live-restore, and stop the
# containers with it (a clean-clone run caught that).
wait_for_live_restore() {
  local waited=0 limit=30
  until [ "$(docker info --format '{{.LiveRestoreEnabled}}' 2>/dev/null)" = true ]; do
    [ "$waited" -lt "$limit" ] || { echo "docker did not apply live-restore within ${limit}s of its reload" >&2; return 1; }
    sleep 1
    waited=$((waited + 1))
  done
}

install_from_distro() {
  # Ubuntu ships compose v2 as docker-compose-v2, Debian 13 as docker-compose;
  # Debian 13 also splits the client out of docker.io into docker-cli.
  local packages=(docker.io)
  if has_package docker-compose-v2; then packages+=(docker-compose-v2); else packages+=(docker-compose); fi
  if has_package docker-cli; then packages+=(docker-cli); fi
  apt_install "${packages[@]}"
}

install_from_docker_apt() {
  # shellcheck source=/dev/null
  . /etc/os-release
  apt_install ca-certificates curl
  install -m 0755 -d /etc/apt/keyrings
  curl -fsSL "https://download.docker.com/linux/${ID}/gpg" -o /etc/apt/keyrings/docker.asc
  chmod a+r /etc/apt/keyrings/docker.asc
  echo "deb [arch=$(dpkg --print-architecture) signed-by=/etc/apt/keyrings/docker.asc] https://download.docker.com/linux/${ID} ${VERSION_CODENAME} stable" \
    >/etc/apt/sources.list.d/docker.list
  apt_update
  apt_install docker-ce docker-ce-cli containerd.io docker-buildx-plugin docker-compose-plugin
}

# live-restore: containers keep running while the daemon restarts (a security update's
# restart of docker.service, needrestart's included). Docker refuses it in swarm mode, so
# a Swarm's servers go without: there the Swarm starts a restarted daemon's tasks again.
daemon_json() {
  local max_size=$1 max_file=$2 live_restore=$3
  if [ "$live_restore" = true ]; then
    printf '{\n  "live-restore": true,\n  "log-driver": "json-file",\n  "log-opts": {"max-size": "%s", "max-file": "%s"}\n}\n' "$max_size" "$max_file"
  else
    printf '{\n  "log-driver": "json-file",\n  "log-opts": {"max-size": "%s", "max-file": "%s"}\n}\n' "$max_size" "$max_file"
  fi
}

main() {
  local source=$1 max_size=$2 max_file=$3 live_restore=${4:-true} wanted changed=false
  finish_interrupted_dpkg
  # The engine reads daemon.json on its first start, which the package
  # install triggers: written first, it applies from the start.
  mkdir -p /etc/docker
  wanted=$(daemon_json "$max_size" "$max_file" "$live_restore")
  if [ "$(cat /etc/docker/daemon.json 2>/dev/null || true)" != "$wanted" ]; then
    printf '%s\n' "$wanted" >/etc/docker/daemon.json
    echo "wrote /etc/docker/daemon.json"
    changed=true
  fi

  if docker version >/dev/null 2>&1 && docker compose version >/dev/null 2>&1; then
    echo "docker already installed: $(docker --version)"
    if [ "$changed" = true ]; then
      # A reload applies live-restore to the running daemon, so that the restart
      # (which the log options need) leaves the containers running.
      if [ "$live_restore" = true ]; then
        echo "restarting docker for the new daemon.json (containers keep running)"
      else
        echo "restarting docker for the new daemon.json (without live-restore: its containers restart)"
      fi
      systemctl reload docker
      [ "$live_restore" = false ] || wait_for_live_restore
      # Restarts shortly before (an upgrade's, another up's) must not trip systemd's start limit.
      systemctl reset-failed docker.service
      systemctl restart docker
    fi
  else
    echo "installing docker (${source})"
    apt_update
    case "$source" in
      distro) install_from_distro ;;
      docker-apt) install_from_docker_apt ;;
      *) echo "unknown docker source: ${source}" >&2; exit 2 ;;
    esac
  fi
  systemctl enable --now docker >/dev/null 2>&1
  docker compose version
}

main "$@"
