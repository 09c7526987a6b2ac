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

DAEMON_JSON=${DROPSHIP_DAEMON_JSON:-/etc/docker/daemon.json} # another path: tests/host/test_install_docker.py

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

# dropship's keys of /etc/docker/daemon.json set, the host's other keys kept (a host you already run stays
# yours); the file is rewritten only when a value differs. Prints "changed" or "same".
# live-restore: containers keep running while the daemon restarts (a security update's
# restart of docker.service, needrestart's included). Docker refuses it in swarm mode, so
# a Swarm's servers go without: there the Swarm starts a restarted daemon's tasks again.
merge_daemon_json() { # MAX_SIZE MAX_FILE LIVE_RESTORE
  command -v python3 >/dev/null 2>&1 || { apt_update && apt_install python3-minimal; } >&2
  python3 - "$DAEMON_JSON" "$@" <<'PY'
import json
import os
import sys

path, max_size, max_file, live_restore = sys.argv[1:5]
try:
    with open(path) as file:
        text = file.read()
except FileNotFoundError:
    text = ""
try:
    before = json.loads(text) if text.strip() else {}
except ValueError as error:
    sys.exit(f"dropship: {path} is not valid JSON ({error}); fix it or remove it, then run pulumi up again")
if not isinstance(before, dict):
    sys.exit(f"dropship: {path} is not a JSON object; fix it or remove it, then run pulumi up again")
config = dict(before)
# Another driver's options may mean nothing to json-file (dockerd would not start): they go with it.
options = config.get("log-opts") if config.get("log-driver") == "json-file" and isinstance(config.get("log-opts"), dict) else {}
config["log-driver"] = "json-file"
config["log-opts"] = {**options, "max-size": max_size, "max-file": max_file}
if live_restore == "true":
    config["live-restore"] = True
else:
    config.pop("live-restore", None)
if config == before and text.strip():
    print("same")
else:
    with open(path + ".new", "w") as file:
        file.write(json.dumps(config, indent=2, sort_keys=True) + "\n")
    os.replace(path + ".new", path)
    print("changed")
PY
}

METADATA_ADDRESS=169.254.169.254
METADATA_GUARD=dropship-metadata-guard.service

metadata_guard_unit() {
  # DOCKER-USER is the chain Docker leaves to its users, before its own forwarding rules; a daemon run
  # with "iptables": false has none, and then FORWARD is where containers' traffic passes.
  local rule="-d ${METADATA_ADDRESS}/32 -j REJECT"
  printf '%s\n' \
    '# Managed by dropship.' \
    '[Unit]' \
    "Description=dropship: containers cannot reach the metadata address ${METADATA_ADDRESS} (a droplet's user data holds its host key)" \
    'After=docker.service' \
    'PartOf=docker.service' \
    '' \
    '[Service]' \
    'Type=oneshot' \
    'RemainAfterExit=yes' \
    "ExecStart=/bin/sh -c 'chain=DOCKER-USER; iptables -n -L DOCKER-USER >/dev/null 2>&1 || chain=FORWARD; iptables -C \$\$chain ${rule} 2>/dev/null || iptables -I \$\$chain ${rule}'" \
    '' \
    '[Install]' \
    'WantedBy=docker.service'
}

guard_metadata() {
  # The host itself (cloud-init, the monitoring agent) still reaches the address: its traffic is not forwarded.
  local path=/etc/systemd/system/${METADATA_GUARD} unit
  unit=$(metadata_guard_unit)
  if [ "$(cat "$path" 2>/dev/null)" != "$unit" ]; then
    printf '%s\n' "$unit" >"$path"
    systemctl daemon-reload
  fi
  systemctl enable "$METADATA_GUARD" >/dev/null 2>&1
  systemctl restart "$METADATA_GUARD"
  echo "containers cannot reach ${METADATA_ADDRESS} (${METADATA_GUARD})"
}

main() {
  local source=$1 max_size=$2 max_file=$3 live_restore=${4:-true} merged changed=false
  finish_interrupted_dpkg
  # The engine reads daemon.json on its first start, which the package
  # install triggers: written first, it applies from the start.
  mkdir -p "$(dirname "$DAEMON_JSON")"
  merged=$(merge_daemon_json "$max_size" "$max_file" "$live_restore")
  if [ "$merged" = changed ]; then
    echo "wrote dropship's keys into ${DAEMON_JSON} (its other keys kept)"
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
  guard_metadata
  docker compose version
}

main "$@"
