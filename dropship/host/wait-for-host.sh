#!/usr/bin/env bash
# Waits until a freshly booted server is ready for apt and logins.
set -eu

main() {
  if command -v cloud-init >/dev/null 2>&1; then
    echo "waiting for cloud-init to finish"
    # Exit 2 means "done with recoverable errors": the host is still usable.
    cloud-init status --wait >/dev/null || [ "$?" -eq 2 ]
  fi
  # shellcheck source=/dev/null
  . /etc/os-release
  echo "host ready: ${PRETTY_NAME}"
}

main "$@"
