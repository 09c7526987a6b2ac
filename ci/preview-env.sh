#!/usr/bin/env bash
# Preview environments: one stack `pr-<n>` per pull request, made from the
# preview template's configuration (Pulumi.previews.yaml: staging's settings
# with secrets and a deploy key of its own) and removed again when the pull
# request closes. The preview-env workflow runs this, in the GitHub
# environment `preview`, whose credentials reach neither staging's nor
# production's state or secrets; so does the rehearsal in
# tests/e2e/test_preview_lifecycle.py.
#
# Usage: ci/preview-env.sh config <n>   create pr-<n> if it is missing
#                                       (`pulumi stack init pr-<n> --copy-config-from previews`),
#                                       otherwise copy the template's configuration into it again
#        ci/preview-env.sh up <n>       config, then `pulumi up`
#        ci/preview-env.sh destroy <n>  `pulumi destroy` and `pulumi stack rm` pr-<n>;
#                                       succeeds when the stack never existed
#
# Environment:
#   PULUMI_BACKEND_URL / PULUMI_ACCESS_TOKEN, PULUMI_CONFIG_PASSPHRASE and the
#       providers' tokens, as for any `pulumi` command (the `preview` environment's)
#   PREVIEW_SOURCE_STACK  the stack whose configuration a new preview copies (default: previews;
#                         created from its committed Pulumi.<stack>.yaml when the backend lacks it)
#   POLICY_PACK           policy pack `up` runs with (default: policy/ of this repository;
#                         empty: none)
#   IMAGE_TAG             if set, the preview deploys this app.imageTag instead of the copied one
#
# A preview's configuration is the template's, copied again on every `up`: a
# CI runner starts from a fresh checkout without Pulumi.pr-<n>.yaml (the stack
# lives in the backend, its config file does not), and a preview follows the
# template's changes. A copied `environment` setting is removed, so that
# pr-<n> derives its settings from its name (smallest size,
# pr-<n>.<staging hostname>, nothing protected; dropship/config/flat_keys.py).
# Nothing here prints a secret: config values are copied, never read out.
set -euo pipefail

log() { printf 'preview-env: %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

usage() {
  printf 'usage: %s config|up|destroy <pull request number>\n' "${0##*/}" >&2
  exit 2
}

# True if the stack exists; false if the backend says it does not; any other
# failure (login, network) stops the script instead of passing for "missing".
stack_exists() { # STACK
  local output
  if output=$(pulumi stack select --stack "$1" --non-interactive 2>&1); then
    return 0
  fi
  if [[ $output == *"no stack named '$1' found"* ]]; then
    return 1
  fi
  printf '%s\n' "$output" >&2
  die "cannot tell whether stack $1 exists (see above)"
}

cmd_config() { # STACK
  local stack=$1 source=${PREVIEW_SOURCE_STACK:-previews}
  if ! stack_exists "$source"; then
    [[ -f Pulumi.$source.yaml ]] || die "no stack $source in the backend and no Pulumi.$source.yaml to make it from"
    log "creating the template stack $source from Pulumi.$source.yaml"
    pulumi stack init "$source" --non-interactive
  fi
  if stack_exists "$stack"; then
    log "stack $stack exists; copying $source's configuration again"
    pulumi config cp --stack "$source" --dest "$stack" --non-interactive
  else
    log "creating stack $stack from $source's configuration"
    pulumi stack init "$stack" --copy-config-from "$source" --non-interactive
  fi
  pulumi config rm --stack "$stack" environment --non-interactive
  if [[ -n ${IMAGE_TAG:-} ]]; then
    log "app.imageTag = $IMAGE_TAG"
    pulumi config set --stack "$stack" app.imageTag "$IMAGE_TAG" --non-interactive
  fi
}

cmd_up() { # STACK
  local stack=$1
  local policy_args=()
  [[ -z $POLICY_PACK ]] || policy_args=(--policy-pack "$POLICY_PACK")
  cmd_config "$stack"
  log "pulumi up --stack $stack"
  pulumi up --stack "$stack" --yes --non-interactive "${policy_args[@]}"
}

cmd_destroy() { # STACK
  local stack=$1
  if ! stack_exists "$stack"; then
    log "stack $stack does not exist; nothing to destroy"
    return 0
  fi
  log "pulumi destroy --stack $stack"
  pulumi destroy --stack "$stack" --yes --skip-preview --non-interactive
  log "pulumi stack rm --stack $stack"
  pulumi stack rm --stack "$stack" --yes --non-interactive
}

main() {
  local root
  root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd -P)
  cd "$root"
  POLICY_PACK=${POLICY_PACK-$root/policy}

  [[ $# -eq 2 ]] || usage
  [[ $2 =~ ^[1-9][0-9]{0,8}$ ]] || die "expected a pull request number, got '$2'"
  command -v pulumi >/dev/null 2>&1 || die "pulumi is not on PATH"
  case $1 in
    config) cmd_config "pr-$2" ;;
    up) cmd_up "pr-$2" ;;
    destroy) cmd_destroy "pr-$2" ;;
    *) usage ;;
  esac
}

main "$@"
