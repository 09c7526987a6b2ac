#!/usr/bin/env bash
# A local "fresh VPS" for tests: a Debian 13 (trixie) container running systemd
# and sshd, on the machine's network (--network host), reachable as
# root@127.0.0.1 port 2222 with a generated key. It has no Docker: installing
# Docker is dropship's job.
#
# Usage: dev/testhost.sh build|start|stop|status|ssh-config
#   build       build the image once (debootstrap + docker import), cached by tag
#   start       build if needed, start the container, inject the root key,
#               wait until ssh works
#   stop        remove the container and its /var/lib/docker volume
#   status      print whether it runs (exit 0 if it does, 1 if not)
#   ssh-config  print an ssh_config block for Host $TESTHOST_NAME
#
# Environment:
#   DROPSHIP_CACHE          state dir (default: $HOME/.cache/dropship); the key
#                           pair is $DROPSHIP_CACHE/testhost/id_ed25519
#   TESTHOST_KEY            root key pair, generated there if missing
#                           (default: $DROPSHIP_CACHE/testhost/id_ed25519)
#   TESTHOST_NAME           container name (default: dropship-testhost)
#   TESTHOST_IMAGE          image tag (default: dropship-testhost:trixie-2)
#   TESTHOST_PORT           sshd port on 127.0.0.1, set in the container when
#                           it is created (default: 2222); one image serves
#                           every port
#   TESTHOST_ADDRESS        own network: a loopback address such as 127.0.0.2; the
#                           host then runs with --network none, connected by
#                           pasta, and answers there on 22, 80 and 443 (sshd on
#                           22, TESTHOST_PORT unused), Docker's defaults inside
#   TESTHOST_FORWARD        with TESTHOST_ADDRESS: comma-separated ports whose
#                           127.0.0.1:<port> inside reaches this machine's
#                           loopback (default: 5000, the registry)
#   TESTHOST_ROOT_PASSWORD  root password set at start (default: dropship-testhost)
#   TESTHOST_START_TIMEOUT  seconds to wait for ssh (default: 120)
#   DEBIAN_MIRROR           Debian mirror URL (default: the first .../debian
#                           URI in this machine's apt sources)
set -euo pipefail

SUITE=trixie
# Bump IMAGE_REV whenever the image recipe below changes.
IMAGE_REV=2
INCLUDE=openssh-server,sudo,ca-certificates,curl,iproute2,procps,systemd-sysv,dbus

log() { printf 'testhost: %s\n' "$*" >&2; }
die() { printf 'testhost: ERROR: %s\n' "$*" >&2; exit 1; }

usage() {
  printf 'usage: %s build|start|stop|status|ssh-config\n' "${0##*/}" >&2
  exit 2
}

ensure_apt_pkg() { # COMMAND PACKAGE
  command -v "$1" >/dev/null 2>&1 && return 0
  log "installing $2 (apt)"
  apt-get -o DPkg::Lock::Timeout=600 update -qq >&2 \
    || die "step 'apt-get update' failed"
  DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=600 install -y -qq \
    --no-install-recommends "$2" >&2 \
    || die "step 'apt-get install $2' failed"
}

# The Debian mirror this machine's apt uses (deb822 .sources or one-line .list).
debian_mirror() {
  if [[ -n "${DEBIAN_MIRROR:-}" ]]; then
    printf '%s\n' "$DEBIAN_MIRROR"
    return 0
  fi
  local files=() f url
  for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.sources /etc/apt/sources.list.d/*.list; do
    [[ -f "$f" ]] && files+=("$f")
  done
  ((${#files[@]})) || die "step 'find Debian mirror': no apt sources on this machine; set DEBIAN_MIRROR"
  url="$(awk '
      /^[[:space:]]*URIs:/ { for (i = 2; i <= NF; i++) print $i; next }
      /^[[:space:]]*deb[[:space:]]/ {
        for (i = 2; i <= NF; i++) if ($i !~ /^\[/ && $i !~ /\]$/ && $i !~ /=/) { print $i; break }
      }' "${files[@]}" | grep -E '^https?://[^ ]+/debian/?$' | head -n 1)" || true
  [[ -n "$url" ]] || die "step 'find Debian mirror': no .../debian URI in /etc/apt/sources*; set DEBIAN_MIRROR"
  printf '%s\n' "${url%/}"
}

image_exists() { docker image inspect "$IMAGE" >/dev/null 2>&1; }

# Pristine debootstrap output, cached as a tarball so a rebuild of the image
# (e.g. after IMAGE_REV changes) does not need debootstrap again.
ensure_rootfs_tar() { # TAR
  local tar="$1" mirror tmp
  [[ -s "$tar" ]] && { log "using cached rootfs $tar"; return 0; }
  ensure_apt_pkg debootstrap debootstrap
  mirror="$(debian_mirror)"
  mkdir -p "${tar%/*}"
  tmp="$(mktemp -d "${tar%/*}/debootstrap.XXXXXX")"
  log "running debootstrap --variant=minbase $SUITE (~1 min; log: $tmp.log)"
  if ! debootstrap --variant=minbase --include="$INCLUDE" "$SUITE" "$tmp/rootfs" "$mirror" \
    >"$tmp.log" 2>&1; then
    tail -n 20 "$tmp.log" >&2 || true
    rm -rf "$tmp"
    die "step 'debootstrap $SUITE' failed (see $tmp.log)"
  fi
  log "saving rootfs tarball $tar"
  tar -C "$tmp/rootfs" --numeric-owner -cf "$tar.part" . || die "step 'tar rootfs' failed"
  mv "$tar.part" "$tar"
  rm -rf "$tmp" "$tmp.log"
}

# Test-host-only sshd settings (port, loopback address): a drop-in that sorts
# first, so they survive whatever hardening dropship applies. Written into each
# container when it is created (the image has no port of its own).
sshd_testhost_conf() {
  cat <<EOF
# dropship test host: sshd shares the machine's network namespace.
Port $PORT
ListenAddress $LISTEN
EOF
}

# Turn the pristine rootfs into a droplet-like host, like a fresh cloud VPS:
# PermitRootLogin yes in sshd_config, PasswordAuthentication yes in a
# cloud-init style drop-in.
configure_rootfs() { # DIR
  local root="$1"
  install -d -m 755 "$root/etc/ssh/sshd_config.d"
  cat >"$root/etc/ssh/sshd_config.d/50-cloud-init.conf" <<'EOF'
PasswordAuthentication yes
EOF
  sed -i -E 's/^#?PermitRootLogin .*/PermitRootLogin yes/' "$root/etc/ssh/sshd_config"
  grep -q '^PermitRootLogin yes' "$root/etc/ssh/sshd_config" \
    || echo 'PermitRootLogin yes' >>"$root/etc/ssh/sshd_config"
  # No kernel modules can be loaded from a container; this unit would leave
  # systemd "degraded".
  ln -sf /dev/null "$root/etc/systemd/system/systemd-modules-load.service"
  # Like a fresh VPS: no stale package lists, no downloaded packages.
  rm -rf "$root"/var/lib/apt/lists/* "$root"/var/cache/apt/*.bin "$root"/var/cache/apt/archives/*.deb
  install -d -m 755 "$root/var/lib/apt/lists/partial"
  : >"$root/etc/machine-id"
}

cmd_build() {
  if image_exists; then
    log "image $IMAGE already built"
    return 0
  fi
  local tar tmp
  tar="$CACHE/rootfs/debootstrap-$SUITE-$(printf '%s' "$INCLUDE" | sha256sum | cut -c1-8).tar"
  ensure_rootfs_tar "$tar"
  tmp="$(mktemp -d "$CACHE/rootfs/build.XXXXXX")"
  # shellcheck disable=SC2064 # expand $tmp now
  trap "rm -rf '$tmp'" EXIT
  log "building image $IMAGE (configure sshd, docker import)"
  tar -C "$tmp" --numeric-owner -xf "$tar" || die "step 'unpack rootfs' failed"
  configure_rootfs "$tmp"
  tar -C "$tmp" --numeric-owner -c . | docker import \
    -c 'CMD ["/sbin/init"]' -c 'ENV container=docker' \
    -m "dropship test host: Debian $SUITE minbase, sshd on 127.0.0.1 (port set per container)" \
    - "$IMAGE" >/dev/null || die "step 'docker import $IMAGE' failed"
  rm -rf "$tmp"
  trap - EXIT
  log "image $IMAGE built"
}

ensure_key() {
  if [[ -s "$KEY" && -s "$KEY.pub" ]]; then
    # A key from a git checkout arrives world-readable, which ssh refuses.
    chmod 600 "$KEY"
    return 0
  fi
  log "generating root key pair $KEY"
  mkdir -p "${KEY%/*}"
  rm -f "$KEY" "$KEY.pub"
  ssh-keygen -q -t ed25519 -N '' -C "dropship-testhost" -f "$KEY" \
    || die "step 'ssh-keygen' failed"
}

ssh_opts() {
  printf '%s\n' -i "$KEY" -p "$PORT" -o BatchMode=yes -o IdentitiesOnly=yes \
    -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null \
    -o LogLevel=ERROR -o ConnectTimeout=3
}

ssh_works() {
  local opts
  mapfile -t opts < <(ssh_opts)
  ssh "${opts[@]}" "root@$ADDRESS" true </dev/null >/dev/null 2>&1
}

root_login_disabled() {
  docker exec "$NAME" test -f /etc/ssh/sshd_config.d/00-dropship.conf 2>/dev/null
}

# sshd answers with its host key: enough once dropship has turned root logins off.
sshd_answers() {
  ssh-keyscan -T 2 -p "$PORT" "$ADDRESS" 2>/dev/null | grep -q .
}

container_state() { # prints running|exited|...|absent
  local state
  if state="$(docker inspect -f '{{.State.Status}}' "$NAME" 2>/dev/null)" && [[ -n "$state" ]]; then
    printf '%s\n' "$state"
  else
    echo absent
  fi
}

port_in_use() {
  ss -Hltn "sport = :$PORT" 2>/dev/null | grep -q .
}

# --- own network: TESTHOST_ADDRESS=127.0.0.N ------------------------------------
# The host gets a network namespace of its own (--network none), connected to
# this machine by pasta: it answers on its own loopback address at ports 22, 80
# and 443, like a droplet on its public address; inside, 127.0.0.1:<port> of
# TESTHOST_FORWARD reaches this machine's loopback (the registry), and other
# traffic (apt) leaves as ordinary connections of this machine. Nothing but
# loopback addresses appears in this machine's namespace.

own_network() { [[ -n $OWN_ADDRESS ]]; }

netns_path() { printf '/run/netns/%s\n' "$NAME"; }

pasta_pidfile() { printf '%s/testhost/%s.pasta.pid\n' "$CACHE" "$NAME"; }

network_connected() {
  local pidfile netns pid
  pidfile=$(pasta_pidfile)
  netns=$(netns_path)
  if [[ ! -f $pidfile || ! -e $netns ]] || ! kill -0 "$(cat "$pidfile")" 2>/dev/null; then
    return 1
  fi
  pid=$(docker inspect -f '{{.State.Pid}}' "$NAME") || return 1
  [[ $(stat -L -c %i "$netns") == "$(stat -L -c %i "/proc/$pid/ns/net")" ]]
}

connect_network() {
  command -v pasta >/dev/null 2>&1 || ensure_apt_pkg pasta passt
  disconnect_network
  local pid netns pidfile forwards=() port
  pid=$(docker inspect -f '{{.State.Pid}}' "$NAME") || die "step 'docker inspect $NAME' failed"
  netns=$(netns_path)
  mkdir -p /run/netns "$(dirname "$(pasta_pidfile)")"
  touch "$netns"
  mount --bind "/proc/$pid/ns/net" "$netns" || die "step 'bind the network namespace of $NAME' failed"
  for port in 22 80 443; do forwards+=(-t "$OWN_ADDRESS/$port:$port"); done
  for port in ${FORWARD//,/ }; do forwards+=(-T "$port"); done
  pidfile=$(pasta_pidfile)
  log "connecting $NAME at $OWN_ADDRESS (22, 80, 443; inside, 127.0.0.1:{$FORWARD} reach this machine)"
  pasta --runas 0:0 --config-net --netns "$netns" "${forwards[@]}" -u none -U none \
    -P "$pidfile" -l "$CACHE/testhost/$NAME.pasta.log" || die "step 'pasta' failed (log: $CACHE/testhost/$NAME.pasta.log)"
}

disconnect_network() {
  local pidfile netns
  pidfile=$(pasta_pidfile)
  if [[ -f $pidfile ]]; then
    local pid waited=0
    pid=$(cat "$pidfile")
    kill "$pid" 2>/dev/null || true
    # pasta holds the namespace file open until it exits: unmounting before that fails
    while kill -0 "$pid" 2>/dev/null && ((waited < 50)); do
      sleep 0.1
      waited=$((waited + 1))
    done
    rm -f "$pidfile"
  fi
  netns=$(netns_path)
  if [[ -e $netns ]]; then
    if grep -q " $netns " /proc/self/mountinfo; then
      umount "$netns" || die "step 'unmount $netns' failed"
    fi
    rm -f "$netns"
  fi
}

cmd_start() {
  command -v ssh >/dev/null 2>&1 || ensure_apt_pkg ssh openssh-client
  cmd_build
  ensure_key
  local state
  state="$(container_state)"
  case "$state" in
    running)
      # A restarted container has a new network namespace: connect that one (a droplet's
      # network comes back with it after a reboot).
      if own_network && ! network_connected; then
        log "container $NAME runs without its network (restarted?): connecting it again"
        connect_network
      fi
      # Possibly hardened by dropship already: root may no longer log in.
      log "container $NAME already running"
      return 0 ;;
    absent)
      if ! own_network && port_in_use; then
        die "step 'start': port 127.0.0.1:$PORT is already taken by another process"
      fi
      log "starting container $NAME (systemd, sshd on 127.0.0.1:$PORT)"
      docker create --name "$NAME" --hostname "$NAME" --network "$NETWORK" \
        --cap-add ALL --cap-drop SYS_RESOURCE \
        --security-opt seccomp=unconfined --security-opt apparmor=unconfined \
        --security-opt systempaths=unconfined --cgroupns host \
        -v /sys/fs/cgroup:/sys/fs/cgroup:rw --tmpfs /run --tmpfs /run/lock \
        -v "$NAME-docker:/var/lib/docker" "$IMAGE" /sbin/init >/dev/null \
        || die "step 'docker create $NAME' failed"
      local conf
      conf="$(mktemp)"
      sshd_testhost_conf >"$conf"
      chmod 644 "$conf"
      docker cp "$conf" "$NAME:/etc/ssh/sshd_config.d/00-testhost.conf" >/dev/null \
        || { rm -f "$conf"; die "step 'docker cp 00-testhost.conf' failed"; }
      rm -f "$conf"
      docker start "$NAME" >/dev/null || die "step 'docker start $NAME' failed" ;;
    *)
      log "container $NAME is $state, starting it again"
      docker start "$NAME" >/dev/null || die "step 'docker start $NAME' failed" ;;
  esac
  own_network && connect_network

  log "injecting root key and password"
  docker exec -i "$NAME" sh -c \
    'install -d -m 700 /root/.ssh && cat >/root/.ssh/authorized_keys && chmod 600 /root/.ssh/authorized_keys' \
    <"$KEY.pub" || die "step 'inject root key' failed"
  printf 'root:%s\n' "$PASSWORD" | docker exec -i "$NAME" chpasswd \
    || die "step 'set root password' failed"

  log "waiting for ssh root@$ADDRESS -p $PORT (up to ${TIMEOUT}s)"
  local waited=0
  until ssh_works || { root_login_disabled && sshd_answers; }; do
    if [[ "$(container_state)" != running ]]; then
      docker logs --tail 30 "$NAME" >&2 || true
      die "step 'wait for ssh': container $NAME stopped"
    fi
    if ((waited >= TIMEOUT)); then
      docker exec "$NAME" systemctl --no-pager status ssh >&2 || true
      die "step 'wait for ssh' timed out after ${TIMEOUT}s"
    fi
    sleep 1
    waited=$((waited + 1))
  done
  log "ready: ssh -i $KEY -p $PORT root@$ADDRESS"
}

# The test host shares the machine's network namespace. A Docker engine started
# inside it before /etc/docker/daemon.json turns the bridge and iptables off
# (e.g. by apt's postinst) creates docker0 (172.17.0.1/16) and NAT rules on the
# machine itself. The outer engine runs with --bridge=none, so such a docker0
# is always a leak from a test host.
bridge_leaked() {
  ip link show docker0 >/dev/null 2>&1 && ! docker network inspect bridge >/dev/null 2>&1
}

clean_bridge_leak() {
  bridge_leaked || return 0
  log "WARNING: docker0 exists on this machine: an engine in the test host ran without daemon.json {\"bridge\":\"none\",\"iptables\":false,\"ip-masq\":false}; removing it and Docker's iptables rules"
  ip link delete docker0 || log "could not delete docker0"
  command -v iptables >/dev/null 2>&1 || return 0
  iptables -t nat -D PREROUTING -m addrtype --dst-type LOCAL -j DOCKER 2>/dev/null || true
  iptables -t nat -D OUTPUT ! -d 127.0.0.0/8 -m addrtype --dst-type LOCAL -j DOCKER 2>/dev/null || true
  iptables -t nat -D POSTROUTING -s 172.17.0.0/16 ! -o docker0 -j MASQUERADE 2>/dev/null || true
  iptables -t nat -F DOCKER 2>/dev/null || true
  iptables -t nat -X DOCKER 2>/dev/null || true
  iptables -D FORWARD -j DOCKER-USER 2>/dev/null || true
  iptables -D FORWARD -j DOCKER-ISOLATION-STAGE-1 2>/dev/null || true
  iptables -D FORWARD -o docker0 -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT 2>/dev/null || true
  iptables -D FORWARD -o docker0 -j DOCKER 2>/dev/null || true
  iptables -D FORWARD -i docker0 ! -o docker0 -j ACCEPT 2>/dev/null || true
  iptables -D FORWARD -i docker0 -o docker0 -j ACCEPT 2>/dev/null || true
  local c
  for c in DOCKER DOCKER-ISOLATION-STAGE-1 DOCKER-ISOLATION-STAGE-2 DOCKER-USER; do
    iptables -F "$c" 2>/dev/null || true
  done
  for c in DOCKER DOCKER-ISOLATION-STAGE-1 DOCKER-ISOLATION-STAGE-2 DOCKER-USER; do
    iptables -X "$c" 2>/dev/null || true
  done
}

cmd_stop() {
  disconnect_network
  if [[ "$(container_state)" != absent ]]; then
    log "removing container $NAME"
    docker rm -f "$NAME" >/dev/null || die "step 'docker rm $NAME' failed"
  fi
  if docker volume inspect "$NAME-docker" >/dev/null 2>&1; then
    log "removing volume $NAME-docker"
    docker volume rm "$NAME-docker" >/dev/null || die "step 'docker volume rm $NAME-docker' failed"
  fi
  clean_bridge_leak
  log "stopped"
}

cmd_status() {
  local state
  bridge_leaked && log "WARNING: docker0 exists on this machine (leaked by an engine in the test host; 'stop' removes it)"
  state="$(container_state)"
  if [[ "$state" == running ]]; then
    if ssh_works; then
      echo "running: ssh root@127.0.0.1 -p $PORT answers"
    else
      echo "running: container up, ssh on 127.0.0.1:$PORT not answering (yet)"
    fi
    return 0
  fi
  echo "not running (container $NAME: $state)"
  return 1
}

cmd_ssh_config() {
  cat <<EOF
Host $NAME
  HostName 127.0.0.1
  Port $PORT
  User root
  IdentityFile $KEY
  IdentitiesOnly yes
  StrictHostKeyChecking no
  UserKnownHostsFile /dev/null
  LogLevel ERROR
EOF
}

main() {
  [[ $# -eq 1 ]] || usage
  CACHE="${DROPSHIP_CACHE:-$HOME/.cache/dropship}"
  NAME="${TESTHOST_NAME:-dropship-testhost}"
  OWN_ADDRESS="${TESTHOST_ADDRESS:-}"
  FORWARD="${TESTHOST_FORWARD:-5000}"
  if [[ -n $OWN_ADDRESS ]]; then
    [[ $OWN_ADDRESS =~ ^127\.[0-9]+\.[0-9]+\.[0-9]+$ && $OWN_ADDRESS != 127.0.0.1 ]] ||
      die "TESTHOST_ADDRESS must be a loopback address other than 127.0.0.1, such as 127.0.0.2; got '$OWN_ADDRESS'"
    PORT=22 NETWORK=none ADDRESS=$OWN_ADDRESS LISTEN=0.0.0.0
  else
    PORT="${TESTHOST_PORT:-2222}" NETWORK=host ADDRESS=127.0.0.1 LISTEN=127.0.0.1
  fi
  IMAGE="${TESTHOST_IMAGE:-dropship-testhost:$SUITE-$IMAGE_REV}"
  PASSWORD="${TESTHOST_ROOT_PASSWORD:-dropship-testhost}"
  TIMEOUT="${TESTHOST_START_TIMEOUT:-120}"
  KEY="${TESTHOST_KEY:-$CACHE/testhost/id_ed25519}"
  if [[ "$1" != ssh-config ]] && ! docker info >/dev/null 2>&1; then
    die "step 'docker info': no Docker engine answers (run dev/docker-engine.sh first)"
  fi
  case "$1" in
    build) cmd_build ;;
    start) cmd_start ;;
    stop) cmd_stop ;;
    status) cmd_status ;;
    ssh-config) cmd_ssh_config ;;
    *) usage ;;
  esac
}

main "$@"
