#!/usr/bin/env bash
# Deploys one release of the compose app: registry login, pull, pre-deploy
# hooks, up, health check, post-deploy hooks, release record, image prune.
# Usage: deploy.sh --dir DIR --project NAME --tag TAG --compose-file F [...]
#          [--health-url URL --health-timeout SECONDS]
#          [--pre-deploy CMD ...] [--post-deploy CMD ...]
#          [--registry SERVER --registry-user USER]   (password on stdin)
#          [--files-digest SHA]   (of the uploaded files: when it changes, containers
#                                  are recreated, since bind-mounted files keep their old inode)
set -eu

log() { printf 'dropship: %s\n' "$*"; }

run_hooks() {
  local kind=$1 hook
  shift
  for hook in "$@"; do
    log "${kind} hook: ${hook}"
    if ! bash -c "$hook"; then
      log "${kind} hook failed: ${hook}" >&2
      return 1
    fi
  done
}

check_health() {
  local url=$1 timeout=$2 deadline answer=""
  deadline=$(( $(date +%s) + timeout ))
  log "health check: ${url} (up to ${timeout}s)"
  while :; do
    if answer=$(curl -sS -o /dev/null -w '%{http_code}' --max-time 5 "$url" 2>&1) && [ "${answer:0:1}" = 2 ]; then
      log "healthy: ${url} answered ${answer}"
      return 0
    fi
    if [ "$(date +%s)" -ge "$deadline" ]; then
      log "unhealthy: ${url} did not answer 2xx within ${timeout}s; last answer: ${answer}" >&2
      docker compose ps >&2 || true
      docker compose logs --tail 20 >&2 || true
      return 1
    fi
    sleep 2
  done
}

main() {
  local dir="" project="" tag="" health_url="" health_timeout=60 registry="" registry_user="" files_digest=""
  local compose_files=() pre=() post=()
  while [ "$#" -gt 0 ]; do
    case "$1" in
      --dir) dir=$2 ;;
      --project) project=$2 ;;
      --tag) tag=$2 ;;
      --compose-file) compose_files+=("$2") ;;
      --health-url) health_url=$2 ;;
      --health-timeout) health_timeout=$2 ;;
      --pre-deploy) pre+=("$2") ;;
      --post-deploy) post+=("$2") ;;
      --registry) registry=$2 ;;
      --registry-user) registry_user=$2 ;;
      --files-digest) files_digest=$2 ;;
      *) echo "deploy.sh: unknown option $1" >&2; exit 2 ;;
    esac
    shift 2
  done

  cd "$dir"
  # Hooks and people on the host then run plain `docker compose ...` against this app.
  COMPOSE_PROJECT_NAME=$project
  COMPOSE_FILE=$(IFS=:; echo "${compose_files[*]}")
  IMAGE_TAG=$tag
  export COMPOSE_PROJECT_NAME COMPOSE_FILE IMAGE_TAG

  if [ -n "$registry" ]; then
    log "registry login: ${registry_user}@${registry}"
    docker login "$registry" --username "$registry_user" --password-stdin >/dev/null
  fi
  log "release ${tag}: pulling images"
  docker compose pull --quiet
  run_hooks pre-deploy ${pre[@]+"${pre[@]}"}
  local up=(docker compose up --detach --remove-orphans)
  if [ -n "$files_digest" ] && [ -f .files-digest ] && [ "$(cat .files-digest)" != "$files_digest" ]; then
    log "uploaded files changed: recreating containers"
    up+=(--force-recreate)
  fi
  log "release ${tag}: starting"
  "${up[@]}"
  printf '%s\n' "$files_digest" >.files-digest
  if [ -n "$health_url" ]; then
    check_health "$health_url" "$health_timeout"
  fi
  run_hooks post-deploy ${post[@]+"${post[@]}"}
  printf '%s %s\n' "$(date -u +%Y-%m-%dT%H:%M:%SZ)" "$tag" >>releases.log
  printf '%s\n' "$tag" >RELEASE
  docker image prune --force >/dev/null
  log "release ${tag} is live"
}

main "$@"
