#!/usr/bin/env bash
# A local "fresh droplet" for tests: a Debian 13 (trixie) container running
# systemd, sshd and cloud-init, in a network namespace of its own (--network
# none) that pasta connects to this machine. It answers at its own loopback
# address (127.0.0.2, 127.0.0.3, ...) on 22, 80 and 443 like a droplet on its
# public address, boots like one (cloud-init from a NoCloud seed puts the root
# key in place and regenerates the SSH host keys; a first-boot unit keeps apt
# busy as apt-daily does), and can be given a data volume that outlives it at
# /dev/disk/by-id/scsi-0DO_Volume_<name>. It has no Docker: installing Docker
# is dropship's job.
#
# Usage: dev/testhost.sh build|start|stop|status|volume-rm|ssh-config
#   build       build the image once (debootstrap + docker import), cached by tag
#   start       build if needed, start the container with its first-boot seed,
#               connect its network, wait until ssh works
#   stop        remove the container, its /var/lib/docker volume and its network
#               (the data volume stays)
#   status      print whether it runs (exit 0 if it does, 1 if not)
#   volume-rm   delete the data volume TESTHOST_VOLUME (the host must be stopped)
#   ssh-config  print an ssh_config block for Host $TESTHOST_NAME
#
# Environment:
#   TESTHOST_ADDRESS        its own loopback address, other than 127.0.0.1
#                           (default: 127.0.0.2)
#   TESTHOST_NAME           container name (default: dropship-testhost)
#   TESTHOST_FORWARD        comma-separated ports whose 127.0.0.1:<port> inside
#                           reaches this machine's loopback (default: 5000, the
#                           registry)
#   TESTHOST_VOLUME         a data volume's name: an ext4 image file
#                           $DROPSHIP_CACHE/testhost/volumes/<name>.img, made on
#                           first use and attached as a block device at
#                           /dev/disk/by-id/scsi-0DO_Volume_<name>
#   TESTHOST_VOLUME_SIZE    its size when it is made (default: 1G)
#   TESTHOST_APT_BUSY       seconds the first-boot unit holds apt's package lists
#                           lock, and then dpkg's locks, around its apt-get
#                           update (default: 5); or 'held': each until a test
#                           touches /run/testhost-apt/release-lists (then
#                           release-dpkg), at most 900 s
#   TESTHOST_KEY            root key pair, generated if missing (default:
#                           $DROPSHIP_CACHE/testhost/id_ed25519)
#   TESTHOST_ROOT_PASSWORD  root password, set by cloud-init (default: dropship-testhost)
#   TESTHOST_IMAGE          image tag (default: dropship-testhost:trixie-4)
#   TESTHOST_START_TIMEOUT  seconds to wait for ssh (default: 120)
#   DROPSHIP_CACHE          state dir (default: $HOME/.cache/dropship)
#   DEBIAN_MIRROR           Debian mirror URL (default: the first .../debian
#                           URI in this machine's apt sources)
set -euo pipefail

SUITE=trixie
# Bump IMAGE_REV whenever the image recipe below changes.
IMAGE_REV=4
# debootstrap does not resolve virtual packages: cloud-init needs python3-cffi-backend named.
INCLUDE=openssh-server,sudo,ca-certificates,curl,iproute2,procps,systemd-sysv,dbus,cloud-init,python3-cffi-backend

log() { printf 'testhost: %s\n' "$*" >&2; }
die() { printf 'testhost: ERROR: %s\n' "$*" >&2; exit 1; }

usage() {
  printf 'usage: %s build|start|stop|status|volume-rm|ssh-config\n' "${0##*/}" >&2
  exit 2
}

# shellcheck source=dev/lib/debian.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib/debian.sh"

image_exists() { docker image inspect "$IMAGE" >/dev/null 2>&1; }

# Turn the pristine rootfs into a droplet-like host, like a fresh cloud VPS:
# PermitRootLogin yes in sshd_config, PasswordAuthentication yes in a
# cloud-init style drop-in, cloud-init reading a NoCloud seed (written per
# host at start), and a first-boot unit that keeps apt busy.
configure_rootfs() { # DIR
  local root="$1"
  install -d -m 755 "$root/etc/ssh/sshd_config.d"
  cat >"$root/etc/ssh/sshd_config.d/50-cloud-init.conf" <<'CONF'
PasswordAuthentication yes
CONF
  sed -i -E 's/^#?PermitRootLogin .*/PermitRootLogin yes/' "$root/etc/ssh/sshd_config"
  grep -q '^PermitRootLogin yes' "$root/etc/ssh/sshd_config" \
    || echo 'PermitRootLogin yes' >>"$root/etc/ssh/sshd_config"
  # No kernel modules can be loaded from a container; this unit would leave
  # systemd "degraded".
  ln -sf /dev/null "$root/etc/systemd/system/systemd-modules-load.service"
  # cloud-init: only the NoCloud seed (no probing for clouds that are not
  # there); the network is pasta's, not cloud-init's to configure.
  cat >"$root/etc/cloud/cloud.cfg.d/90-dropship-testhost.cfg" <<'CONF'
datasource_list: [NoCloud, None]
network:
  config: disabled
CONF
  install -d -m 700 "$root/var/lib/cloud/seed/nocloud"
  install -m 755 /dev/stdin "$root/usr/local/sbin/testhost-first-boot-apt" <<'PY'
#!/usr/bin/python3
"""A fresh droplet's first minutes: apt-daily refreshes the package lists and
unattended-upgrades installs updates, holding apt's locks while anyone else's
apt-get fails or waits. Here: the lists lock for APT_BUSY seconds, a real
apt-get update, then dpkg's locks for APT_BUSY seconds. APT_BUSY=held holds
each until /run/testhost-apt/release-lists (then release-dpkg) exists, so that
a test lets go of a lock once what it tests is seen waiting for it."""
import fcntl
import os
import subprocess
import time

BUSY = os.environ.get("APT_BUSY", "5")
RELEASES = "/run/testhost-apt"
HELD_AT_MOST = 900


def hold(paths: list[str], name: str) -> None:
    fds = [os.open(path, os.O_RDWR | os.O_CREAT, 0o640) for path in paths]
    for fd in fds:
        fcntl.lockf(fd, fcntl.LOCK_EX)  # apt and dpkg lock with fcntl(2), as lockf does
    if BUSY == "held":
        release = f"{RELEASES}/release-{name}"
        print(f"holding {' '.join(paths)} until {release} exists", flush=True)
        deadline = time.monotonic() + HELD_AT_MOST
        while not os.path.exists(release) and time.monotonic() < deadline:
            time.sleep(0.2)
    else:
        print(f"holding {' '.join(paths)} for {float(BUSY):g} s", flush=True)
        time.sleep(float(BUSY))
    for fd in fds:
        os.close(fd)
    print(f"let go of {' '.join(paths)}", flush=True)


os.makedirs(RELEASES, exist_ok=True)
hold(["/var/lib/apt/lists/lock"], "lists")
for _ in range(60):  # pasta connects the network a moment after boot
    if subprocess.run(["ip", "route", "show", "default"], capture_output=True, text=True).stdout.strip():
        break
    time.sleep(0.5)
subprocess.run(["apt-get", "update", "-q"], check=False)
hold(["/var/lib/dpkg/lock-frontend", "/var/lib/dpkg/lock"], "dpkg")
print("apt is idle", flush=True)
PY
  cat >"$root/etc/systemd/system/testhost-first-boot-apt.service" <<'UNIT'
[Unit]
Description=Test host: apt busy at first boot, like a fresh droplet's apt-daily
ConditionPathExists=!/var/lib/testhost-first-boot-apt.done

# Started, not waited for, as apt-daily's timer starts it: boot (and cloud-init's
# final stage) goes on while apt is busy.
[Service]
Type=exec
EnvironmentFile=-/etc/default/testhost-first-boot-apt
ExecStart=/usr/local/sbin/testhost-first-boot-apt
ExecStartPost=/usr/bin/touch /var/lib/testhost-first-boot-apt.done

[Install]
WantedBy=multi-user.target
UNIT
  ln -sf ../testhost-first-boot-apt.service "$root/etc/systemd/system/multi-user.target.wants/testhost-first-boot-apt.service"
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
  ensure_rootfs_tar "$tar" "$SUITE" "$INCLUDE"
  tmp="$(mktemp -d "$CACHE/rootfs/build.XXXXXX")"
  # shellcheck disable=SC2064 # expand $tmp now
  trap "rm -rf '$tmp'" EXIT
  log "building image $IMAGE (sshd, cloud-init, first-boot apt; docker import)"
  tar -C "$tmp" --numeric-owner -xf "$tar" || die "step 'unpack rootfs' failed"
  configure_rootfs "$tmp"
  tar -C "$tmp" --numeric-owner -c . | docker import \
    -c 'CMD ["/sbin/init"]' -c 'ENV container=docker' \
    -m "dropship test host: Debian $SUITE minbase, sshd, cloud-init (NoCloud seed per container)" \
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

ssh_works() {
  ssh -i "$KEY" -o BatchMode=yes -o IdentitiesOnly=yes -o StrictHostKeyChecking=no \
    -o UserKnownHostsFile=/dev/null -o LogLevel=ERROR -o ConnectTimeout=3 \
    "root@$ADDRESS" true </dev/null >/dev/null 2>&1
}

root_login_disabled() {
  docker exec "$NAME" test -f /etc/ssh/sshd_config.d/00-dropship.conf 2>/dev/null
}

# sshd answers with its host key: enough once dropship has turned root logins off.
sshd_answers() {
  ssh-keyscan -T 2 "$ADDRESS" 2>/dev/null | grep -q .
}

container_state() { # prints running|exited|...|absent
  local state
  if state="$(docker inspect -f '{{.State.Status}}' "$NAME" 2>/dev/null)" && [[ -n "$state" ]]; then
    printf '%s\n' "$state"
  else
    echo absent
  fi
}

# --- first boot: the NoCloud seed -----------------------------------------------
# What DigitalOcean's metadata service gives a new droplet: an instance id, a
# hostname, the root key (and root logins allowed), a root password.
seed_meta_data() {
  printf 'instance-id: %s-%s\nlocal-hostname: %s\n' "$NAME" "$(date +%s%N)" "$NAME"
}

seed_user_data() {
  cat <<USERDATA
#cloud-config
users: []
disable_root: false
ssh_pwauth: true
ssh_authorized_keys:
  - $(cat "$KEY.pub")
chpasswd:
  expire: false
  users:
    - {name: root, password: "$PASSWORD", type: text}
USERDATA
}

write_seed() {
  local dir
  dir=$(mktemp -d)
  mkdir "$dir/seed"
  seed_meta_data >"$dir/seed/meta-data"
  seed_user_data >"$dir/seed/user-data"
  chmod 600 "$dir/seed/user-data"
  printf 'APT_BUSY=%s\n' "$APT_BUSY" >"$dir/first-boot-apt"
  if ! { docker cp "$dir/seed/." "$NAME:/var/lib/cloud/seed/nocloud/" >/dev/null &&
    docker cp "$dir/first-boot-apt" "$NAME:/etc/default/testhost-first-boot-apt" >/dev/null; }; then
    rm -rf "$dir"
    die "step 'write the NoCloud seed into $NAME' failed"
  fi
  rm -rf "$dir"
}

# --- the data volume ------------------------------------------------------------
# An ext4 image file on this machine (DigitalOcean formats a volume created with
# initial_filesystem_type ext4), attached through a loop device as the block
# device a droplet sees at /dev/disk/by-id/scsi-0DO_Volume_<name>.

volume_file() { printf '%s/testhost/volumes/%s.img\n' "$CACHE" "$VOLUME"; }

volume_loop() { losetup -j "$(volume_file)" -O NAME -n 2>/dev/null | head -n 1; }

attach_volume() { # prints the loop device
  local file loop
  file=$(volume_file)
  if [[ ! -f $file ]]; then
    log "making data volume $VOLUME ($VOLUME_SIZE, ext4) at $file"
    mkdir -p "${file%/*}"
    if ! { truncate -s "$VOLUME_SIZE" "$file.part" && mkfs.ext4 -q -L "$VOLUME" "$file.part"; }; then
      rm -f "$file.part"
      die "step 'mkfs.ext4 $file' failed"
    fi
    mv "$file.part" "$file"
  fi
  loop=$(volume_loop)
  [[ -n $loop ]] || loop=$(losetup --find --show "$file") || die "step 'losetup $file' failed"
  printf '%s\n' "$loop"
}

detach_volume() {
  [[ -n $VOLUME && -f $(volume_file) ]] || return 0
  local loop
  while loop=$(volume_loop) && [[ -n $loop ]]; do
    losetup -d "$loop" || die "step 'losetup -d $loop' failed"
  done
}

cmd_volume_rm() {
  [[ -n $VOLUME ]] || die "volume-rm: set TESTHOST_VOLUME to the volume's name"
  [[ "$(container_state)" == absent ]] || die "volume-rm: host $NAME still exists; stop it first"
  detach_volume
  rm -f "$(volume_file)"
  log "data volume $VOLUME removed"
}

# --- the network ----------------------------------------------------------------
# The host has a network namespace of its own (--network none), connected to
# this machine by pasta: it answers on its own loopback address at ports 22, 80
# and 443, like a droplet on its public address; inside, 127.0.0.1:<port> of
# TESTHOST_FORWARD reaches this machine's loopback (the registry), and other
# traffic (apt) leaves as ordinary connections of this machine. Nothing but
# loopback addresses appears in this machine's namespace.

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
  for port in 22 80 443; do forwards+=(-t "$ADDRESS/$port:$port"); done
  for port in ${FORWARD//,/ }; do forwards+=(-T "$port"); done
  pidfile=$(pasta_pidfile)
  log "connecting $NAME at $ADDRESS (22, 80, 443; inside, 127.0.0.1:{$FORWARD} reach this machine)"
  pasta --quiet --runas 0:0 --config-net --netns "$netns" "${forwards[@]}" -u none -U none \
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

address_taken() {
  ss -Hltn "src $ADDRESS" 2>/dev/null | grep -q .
}

cmd_start() {
  command -v ssh >/dev/null 2>&1 || ensure_apt_pkg ssh openssh-client
  cmd_build
  ensure_key
  local state devices=()
  state="$(container_state)"
  case "$state" in
    running)
      # A restarted container has a new network namespace: connect that one (a
      # droplet's network comes back with it after a reboot).
      if ! network_connected; then
        log "container $NAME runs without its network (restarted?): connecting it again"
        connect_network
      fi
      # Possibly hardened by dropship already: root may no longer log in.
      log "container $NAME already running"
      return 0 ;;
    absent)
      address_taken && die "step 'start': $ADDRESS already has listeners (another test host?); pick another TESTHOST_ADDRESS"
      if [[ -n $VOLUME ]]; then
        devices=(--device "$(attach_volume):/dev/disk/by-id/scsi-0DO_Volume_$VOLUME")
      fi
      log "starting container $NAME (systemd, sshd, cloud-init first boot)"
      docker create --name "$NAME" --hostname "$NAME" --network none \
        --cap-add ALL --cap-drop SYS_RESOURCE \
        --security-opt seccomp=unconfined --security-opt apparmor=unconfined \
        --security-opt systempaths=unconfined --cgroupns host \
        -v /sys/fs/cgroup:/sys/fs/cgroup:rw --tmpfs /run --tmpfs /run/lock \
        -v "$NAME-docker:/var/lib/docker" "${devices[@]}" "$IMAGE" /sbin/init >/dev/null \
        || die "step 'docker create $NAME' failed"
      write_seed
      docker start "$NAME" >/dev/null || die "step 'docker start $NAME' failed" ;;
    *)
      log "container $NAME is $state, starting it again"
      if [[ -n $VOLUME ]]; then attach_volume >/dev/null; fi
      docker start "$NAME" >/dev/null || die "step 'docker start $NAME' failed" ;;
  esac
  connect_network

  log "waiting for ssh root@$ADDRESS (up to ${TIMEOUT}s)"
  local waited=0
  until ssh_works || { root_login_disabled && sshd_answers; }; do
    if [[ "$(container_state)" != running ]]; then
      docker logs --tail 30 "$NAME" >&2 || true
      die "step 'wait for ssh': container $NAME stopped"
    fi
    if ((waited >= TIMEOUT * 2)); then
      docker exec "$NAME" systemctl --no-pager status ssh cloud-init-network >&2 || true
      die "step 'wait for ssh' timed out after ${TIMEOUT}s"
    fi
    sleep 0.5
    waited=$((waited + 1))
  done
  log "ready: ssh -i $KEY root@$ADDRESS"
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
  detach_volume
  log "stopped"
}

cmd_status() {
  local state
  state="$(container_state)"
  if [[ "$state" == running ]]; then
    if ssh_works; then
      echo "running: ssh root@$ADDRESS answers"
    else
      echo "running: container up, ssh at $ADDRESS not answering (yet, or root logins are off)"
    fi
    return 0
  fi
  echo "not running (container $NAME: $state)"
  return 1
}

cmd_ssh_config() {
  cat <<SSHCONFIG
Host $NAME
  HostName $ADDRESS
  User root
  IdentityFile $KEY
  IdentitiesOnly yes
  StrictHostKeyChecking no
  UserKnownHostsFile /dev/null
  LogLevel ERROR
SSHCONFIG
}

main() {
  [[ $# -eq 1 ]] || usage
  CACHE="${DROPSHIP_CACHE:-$HOME/.cache/dropship}"
  NAME="${TESTHOST_NAME:-dropship-testhost}"
  ADDRESS="${TESTHOST_ADDRESS:-127.0.0.2}"
  [[ $ADDRESS =~ ^127\.[0-9]+\.[0-9]+\.[0-9]+$ && $ADDRESS != 127.0.0.1 ]] ||
    die "TESTHOST_ADDRESS must be a loopback address other than 127.0.0.1, such as 127.0.0.2; got '$ADDRESS'"
  FORWARD="${TESTHOST_FORWARD:-5000}"
  [[ $FORWARD =~ ^[0-9]+(,[0-9]+)*$ ]] || die "TESTHOST_FORWARD must be comma-separated ports such as 5000,5001; got '$FORWARD'"
  VOLUME="${TESTHOST_VOLUME:-}"
  [[ -z $VOLUME || $VOLUME =~ ^[a-z0-9][a-z0-9-]*$ ]] ||
    die "TESTHOST_VOLUME must be lowercase letters, digits and dashes (a DigitalOcean volume name); got '$VOLUME'"
  VOLUME_SIZE="${TESTHOST_VOLUME_SIZE:-1G}"
  APT_BUSY="${TESTHOST_APT_BUSY:-5}"
  [[ $APT_BUSY =~ ^([0-9]+|held)$ ]] || die "TESTHOST_APT_BUSY must be whole seconds or 'held'; got '$APT_BUSY'"
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
    volume-rm) cmd_volume_rm ;;
    ssh-config) cmd_ssh_config ;;
    *) usage ;;
  esac
}

main "$@"
