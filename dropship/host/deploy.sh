#!/usr/bin/env bash
# Deploys one release of the compose app, health-gated, and restores the
# previous release when the new one fails.
#
# Layout under DIR:
#   incoming/         what `pulumi up` uploaded, each at its path: compose files,
#                     extra files and directories, .env
#   releases/ID/      one immutable snapshot per release (files + .env + TAG)
#   releases/current  -> the release that serves
#   ./                the live copy compose runs from (a stable path, so that
#                     bind mounts and the project directory never move)
#   releases.log      one line per attempt: time, id, tag, outcome
#
# Usage: deploy.sh --dir DIR --project NAME --tag TAG --compose-file F [...]
#          [--health-url URL] [--health-timeout SECONDS] [--health-retries N]
#          [--upload PATH ...]   (uploaded files and directories, at their paths)
#          [--rolling SERVICE ...]   (recreated one at a time, each healthy before the next)
#          [--pre-deploy CMD ...] [--post-deploy CMD ...]
#          [--registry SERVER --registry-user USER]   (password on stdin)
#          [--keep N] [--lock-timeout SECONDS] [--files-digest SHA]
#          [--hostnames "NAME ..."] [--data-dir PATH] [--acme-ca URL] [--acme-ca-root PATH]
#          [--tls-mode acme|cloudflare-origin] [--tls-dir PATH]
#
# Compose (and the hooks) see IMAGE_TAG, DROPSHIP_HOSTNAMES (the stack's
# hostnames, space-separated, as a Caddyfile site address takes them),
# DROPSHIP_DATA_DIR (the data volume's mount path), DROPSHIP_REGISTRY (the
# registry server), DROPSHIP_ACME_CA and DROPSHIP_ACME_CA_ROOT (the ACME
# directory and the file with its root); each is empty when not set. And
# DROPSHIP_TLS_MODE (acme, or cloudflare-origin: the edge serves DIR/tls/cert.pem
# and key.pem) with DROPSHIP_TLS_DIR (--tls-dir, made here in both modes).
set -eu

log() { printf 'dropship: %s\n' "$*"; }
fail() { printf 'dropship: %s\n' "$*" >&2; exit 1; }

# --- the deploy lock: two `pulumi up`s against one host never interleave ---

take_lock() {
  local dir=$1 timeout=$2 holder
  exec 9>>"${dir}/.deploy.lock"
  if ! flock --nonblock 9; then
    holder=$(cat "${dir}/.deploy.lock.holder" 2>/dev/null || echo "unknown")
    log "waiting up to ${timeout}s for the deploy lock, held by ${holder}"
    if ! flock --wait "$timeout" 9; then
      holder=$(cat "${dir}/.deploy.lock.holder" 2>/dev/null || echo "unknown")
      fail "another deploy holds the lock of ${dir}: ${holder}; gave up after ${timeout}s"
    fi
  fi
  local client=${SSH_CLIENT:-local}
  printf '%s from %s, pid %s, since %s\n' "$(id -un)" "${client%% *}" "$$" "$(date -u +%Y-%m-%dT%H:%M:%SZ)" \
    >"${dir}/.deploy.lock.holder"
}

# --- compose against the live directory ---

# compose DIRECTORY ARGS...: the app's compose project with the files of DIRECTORY.
compose_in() {
  local directory=$1 file files=()
  shift
  for file in "${COMPOSE_FILES[@]}"; do files+=(--file "${directory}/${file}"); done
  docker compose --project-name "$PROJECT" --project-directory "$directory" "${files[@]}" "$@"
}

compose() { compose_in "$DIR" "$@"; }

release_images() { IMAGE_TAG=$(cat "${DIR}/releases/$1/TAG") compose_in "${DIR}/releases/$1" config --images | sort -u; }

# Copies a release's files into the live directory, each at its path, and
# removes the files the previous one had and this one has not (listed in
# .live-files). Files are rewritten in place (same inode) so that running bind
# mounts see them; .env is replaced atomically and stays mode 600.
make_live() {
  local release=$1 file name
  (cd "$release" && find . -type f ! -path ./TAG ! -path ./.env | sed 's|^\./||' | sort) >"${DIR}/.live-files.new"
  if [ -f "${DIR}/.live-files" ]; then
    comm -23 "${DIR}/.live-files" "${DIR}/.live-files.new" | while IFS= read -r name; do
      rm -f "${DIR:?}/${name}"
    done
  fi
  while IFS= read -r name; do
    file="${release}/${name}"
    [ "${name%/*}" = "$name" ] || mkdir -p "${DIR}/${name%/*}"
    cat "$file" >"${DIR}/${name}"
  done <"${DIR}/.live-files.new"
  mv -f "${DIR}/.live-files.new" "${DIR}/.live-files"
  if [ -f "$release/.env" ]; then
    install -m 600 "$release/.env" "${DIR}/.env.new"
    mv -f "${DIR}/.env.new" "${DIR}/.env"
  fi
}

snapshot() {
  local id=$1 release="${DIR}/releases/$1"
  mkdir -m 700 "$release"
  # What this release uploads, and nothing an earlier one left in incoming/.
  local path
  for path in "${COMPOSE_FILES[@]}" "${UPLOADS[@]}" .env; do
    [ -e "${DIR}/incoming/${path}" ] || continue
    [ "${path%/*}" = "$path" ] || mkdir -p "${release}/${path%/*}"
    cp -pR "${DIR}/incoming/${path}" "${release}/${path}"
  done
  printf '%s\n' "$TAG" >"$release/TAG"
  printf '%s\n' "$release"
}

# --- health ---

service_states() {
  local id
  for id in $(compose ps --all --quiet); do
    docker inspect --format '{{index .Config.Labels "com.docker.compose.service"}} {{.State.Status}} {{if .State.Health}}{{.State.Health.Status}}{{else}}-{{end}}' "$id"
  done
}

# Services that are not running, or whose healthcheck says unhealthy.
unhealthy_services() {
  service_states | awk '$2 != "running" || $3 == "unhealthy" {print $1 " (" $2 ($3 == "-" ? "" : ", " $3) ")"}' | paste -sd, -
}

# The last output of a container's healthcheck, on one line.
last_health_output() {
  docker inspect --format '{{if .State.Health}}{{range .State.Health.Log}}{{.Output}}{{end}}{{end}}' "$1" \
    | tr -s '\n' ' ' | tail -c 200
}

wait_healthy() { # SERVICE DEADLINE
  local service=$1 deadline=$2 state id
  while :; do
    state=$(service_states | awk -v s="$service" '$1 == s {print $2 "/" $3}' | sort -u | paste -sd, -)
    case "$state" in
      running/healthy | running/-) return 0 ;;
    esac
    if [ "$(date +%s)" -ge "$deadline" ] || [ "$state" = running/unhealthy ]; then
      id=$(compose ps --all --quiet "$service" | head -n 1)
      LAST_ANSWER="service ${service} is ${state:-missing}; last health check: $( [ -n "$id" ] && last_health_output "$id")"
      return 1
    fi
    sleep 1
  done
}

check_health() {
  local deadline=$1 attempt=0 code body
  LAST_ANSWER=""
  [ -n "$HEALTH_URL" ] || return 0
  log "health check: ${HEALTH_URL} (up to ${HEALTH_RETRIES} tries, ${HEALTH_TIMEOUT}s)"
  while [ "$attempt" -lt "$HEALTH_RETRIES" ]; do
    attempt=$((attempt + 1))
    body=$(mktemp)
    code=$(curl -sS -o "$body" -w '%{http_code}' --max-time 5 "$HEALTH_URL" 2>&1) || true
    LAST_ANSWER="HTTP ${code}: $(head -c 200 "$body" | tr '\n' ' ')"
    rm -f "$body"
    if [ "${code:0:1}" = 2 ]; then
      log "healthy: ${HEALTH_URL} answered ${code}"
      return 0
    fi
    [ "$(date +%s)" -lt "$deadline" ] || break
    sleep 2
  done
  return 1
}

# --- one release ---

start_release() {
  local deadline service
  deadline=$(( $(date +%s) + HEALTH_TIMEOUT ))
  for service in ${ROLLING[@]+"${ROLLING[@]}"}; do
    log "rolling: recreating ${service}"
    compose up --detach --no-deps "$service" || return 1
    wait_healthy "$service" "$deadline" || return 1
  done
  compose up --detach --remove-orphans || return 1
  check_health "$deadline" || return 1
  local bad
  bad=$(unhealthy_services)
  if [ -n "$bad" ]; then
    LAST_ANSWER="${LAST_ANSWER:+${LAST_ANSWER}; }not healthy: ${bad}"
    return 1
  fi
}

# pulumi-command reads output line by line and hangs on a line of 64 KiB or
# more: hooks' output (a migration printing a big JSON line) is folded below that.
readonly MAX_LINE_BYTES=16384

run_hooks() { # KIND DIRECTORY HOOK...
  local kind=$1 directory=$2 hook
  shift 2
  for hook in "$@"; do
    log "${kind} hook: ${hook}"
    # stdout and stderr folded apart, each staying where it was; pipefail keeps the hook's status.
    if ! (
      set -o pipefail
      { (cd "$directory" && bash -c "$hook") 2>&1 1>&3 3>&- | fold -b -w "$MAX_LINE_BYTES" >&2; } 3>&1 | fold -b -w "$MAX_LINE_BYTES"
    ); then
      LAST_ANSWER="${kind} hook failed: ${hook}"
      return 1
    fi
  done
}

# A failed release leaves its line in the log but no snapshot: kept releases are good ones.
discard() { rm -rf "${DIR:?}/releases/$1"; record "$1" "$2"; }

record() { printf '%s %s %s %s\n' "$(date -u +%Y-%m-%dT%H:%M:%SZ)" "$1" "$TAG" "$2" >>"${DIR}/releases.log"; }

roll_back() { # REASON PREVIOUS
  local reason=$1 previous=$2 previous_tag
  if [ -z "$previous" ]; then
    fail "release ${TAG} failed: ${reason}; there is no previous release to restore"
  fi
  previous_tag=$(cat "${previous}/TAG")
  log "release ${TAG} failed: ${reason}"
  log "restoring release ${previous_tag}"
  IMAGE_TAG=$previous_tag
  make_live "$previous"
  LAST_ANSWER=""
  if start_release; then
    fail "release ${TAG} failed and was rolled back: ${reason}. Release ${previous_tag} serves again."
  fi
  fail "release ${TAG} failed: ${reason}. Restoring ${previous_tag} failed too: ${LAST_ANSWER}"
}

prune() { # keeps the newest KEEP releases and their images
  local releases=() kept_images release count
  mapfile -t releases < <(find "${DIR}/releases" -mindepth 1 -maxdepth 1 -type d -printf '%f\n' | sort)
  count=${#releases[@]}
  if [ "$count" -gt "$KEEP" ]; then
    kept_images=$(for release in "${releases[@]:count-KEEP}"; do release_images "$release"; done | sort -u)
    for release in "${releases[@]:0:count-KEEP}"; do
      release_images "$release" | comm -23 - <(printf '%s\n' "$kept_images") | xargs -r docker image rm >/dev/null 2>&1 || true
      rm -rf "${DIR:?}/releases/${release}"
    done
  fi
  docker image prune --force >/dev/null
}

main() {
  DIR="" PROJECT="" TAG="" HEALTH_URL="" HEALTH_TIMEOUT=60 HEALTH_RETRIES=30 KEEP=3
  DROPSHIP_HOSTNAMES="" DROPSHIP_DATA_DIR="" DROPSHIP_ACME_CA="" DROPSHIP_ACME_CA_ROOT="" DROPSHIP_TLS_MODE=acme
  DROPSHIP_TLS_DIR=""
  local registry="" registry_user="" lock_timeout=600 pre=() post=()
  ROLLING=() COMPOSE_FILES=() UPLOADS=()
  while [ "$#" -gt 0 ]; do
    case "$1" in
      --dir) DIR=$2 ;;
      --project) PROJECT=$2 ;;
      --tag) TAG=$2 ;;
      --compose-file) COMPOSE_FILES+=("$2") ;;
      --upload) UPLOADS+=("$2") ;;
      --health-url) HEALTH_URL=$2 ;;
      --health-timeout) HEALTH_TIMEOUT=$2 ;;
      --health-retries) HEALTH_RETRIES=$2 ;;
      --rolling) ROLLING+=("$2") ;;
      --pre-deploy) pre+=("$2") ;;
      --post-deploy) post+=("$2") ;;
      --registry) registry=$2 ;;
      --registry-user) registry_user=$2 ;;
      --keep) KEEP=$2 ;;
      --lock-timeout) lock_timeout=$2 ;;
      --files-digest) ;;
      --hostnames) DROPSHIP_HOSTNAMES=$2 ;;
      --data-dir) DROPSHIP_DATA_DIR=$2 ;;
      --acme-ca) DROPSHIP_ACME_CA=$2 ;;
      --acme-ca-root) DROPSHIP_ACME_CA_ROOT=$2 ;;
      --tls-mode) DROPSHIP_TLS_MODE=$2 ;;
      --tls-dir) DROPSHIP_TLS_DIR=$2 ;;
      *) echo "deploy.sh: unknown option $1" >&2; exit 2 ;;
    esac
    shift 2
  done
  # Hooks and people on the host run plain `docker compose ...` against the live release.
  COMPOSE_PROJECT_NAME=$PROJECT
  COMPOSE_FILE=$(IFS=:; echo "${COMPOSE_FILES[*]}")
  IMAGE_TAG=$TAG
  DROPSHIP_REGISTRY=$registry
  if [ -n "$DROPSHIP_TLS_DIR" ]; then
    mkdir -p "$DROPSHIP_TLS_DIR"
    chmod 700 "$DROPSHIP_TLS_DIR"
  fi
  export COMPOSE_PROJECT_NAME COMPOSE_FILE IMAGE_TAG DROPSHIP_HOSTNAMES DROPSHIP_DATA_DIR DROPSHIP_REGISTRY \
    DROPSHIP_ACME_CA DROPSHIP_ACME_CA_ROOT DROPSHIP_TLS_MODE DROPSHIP_TLS_DIR

  take_lock "$DIR" "$lock_timeout"
  mkdir -p "${DIR}/releases"
  local previous="" id release
  previous=$(readlink -e "${DIR}/releases/current" 2>/dev/null || true)
  id="$(date -u +%Y%m%dT%H%M%SZ)-${TAG}"
  rm -rf "${DIR:?}/releases/${id}"
  release=$(snapshot "$id")
  log "release ${TAG} (${id})${previous:+, replacing $(cat "${previous}/TAG" 2>/dev/null)}"

  if [ -n "$registry" ]; then
    # The password serves this deploy's pulls only: a private docker config,
    # removed when the deploy ends, so that no credential stays on the host.
    DOCKER_CONFIG=$(mktemp -d)
    export DOCKER_CONFIG
    trap 'rm -rf "$DOCKER_CONFIG"' EXIT
    log "registry login: ${registry_user}@${registry}"
    if ! docker login "$registry" --username "$registry_user" --password-stdin >/dev/null 2>"${DOCKER_CONFIG}/login.log"; then
      cat "${DOCKER_CONFIG}/login.log" >&2
      discard "$id" login-failed
      fail "release ${TAG}: registry login to ${registry} failed; the previous release still serves"
    fi
  fi
  # Images of kept releases are still here: rolling back to one needs no pull.
  log "pulling images that are not here yet"
  if ! compose_in "$release" pull --policy missing --quiet; then
    discard "$id" pull-failed
    fail "release ${TAG}: pulling images failed; the previous release still serves"
  fi

  if ! run_hooks pre-deploy "$release" ${pre[@]+"${pre[@]}"}; then
    discard "$id" pre-deploy-failed
    fail "release ${TAG}: ${LAST_ANSWER}; nothing was changed, the previous release still serves"
  fi
  make_live "$release"
  log "release ${TAG}: starting"
  if ! start_release || ! run_hooks post-deploy "$DIR" ${post[@]+"${post[@]}"}; then
    discard "$id" rolled-back
    roll_back "${LAST_ANSWER:-compose up failed}" "$previous"
  fi
  ln -sfn "$id" "${DIR}/releases/current"
  record "$id" live
  printf '%s\n' "$TAG" >"${DIR}/RELEASE"
  prune
  log "release ${TAG} is live"
}

main "$@"
