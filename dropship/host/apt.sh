# shellcheck shell=bash
# apt on a busy host, for the scripts that install packages (commands.py puts
# this text before theirs). A fresh droplet runs apt-daily and a first
# unattended upgrade in its first minutes: wait for apt's locks rather than
# fail, and retry transient repository failures.

# A first unattended upgrade on a 1-vCPU droplet can hold apt for several minutes.
apt_lock_wait() { echo 900; }

apt_options() {
  printf '%s\n' -o "DPkg::Lock::Timeout=$(apt_lock_wait)" -o Acquire::Retries=5
}

apt_install() {
  local options
  mapfile -t options < <(apt_options)
  DEBIAN_FRONTEND=noninteractive apt-get "${options[@]}" install -y -q --no-install-recommends "$@"
}

# DPkg::Lock::Timeout covers dpkg's lock only: `apt-get update` fails at once
# while another apt holds the package lists lock, so wait for that one here.
apt_update() {
  local options waited=0 limit out
  mapfile -t options < <(apt_options)
  limit=$(apt_lock_wait)
  until out=$(apt-get "${options[@]}" update -q 2>&1); do
    case "$out" in
      *"Could not get lock /var/lib/apt/lists/lock"*) ;;
      *) printf '%s\n' "$out" >&2; return 1 ;;
    esac
    if [ "$waited" -ge "$limit" ]; then
      printf '%s\n' "$out" >&2
      echo "apt's package lists lock was still held after ${limit}s" >&2
      return 1
    fi
    [ "$waited" -gt 0 ] || echo "waiting for apt's package lists lock ($(printf '%s\n' "$out" | grep -o 'held by process [0-9]* ([^)]*)' | head -n 1 || true))"
    sleep 3
    waited=$((waited + 3))
  done
  printf '%s\n' "$out"
}
