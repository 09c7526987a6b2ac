# A Go tool built once from Go modules into ${DROPSHIP_CACHE:-$HOME/.cache/dropship}/bin/NAME-VERSION
# (needs `go` and the Go module proxy the first time) and reused afterwards. The caller defines log and die.
# shellcheck shell=bash

go_tool_bin() { # NAME PACKAGE VERSION: prints the binary's path, building it if it is missing
  local name=$1 package=$2 version=$3 cache bin stage
  cache=${DROPSHIP_CACHE:-$HOME/.cache/dropship}
  [[ $cache == /* ]] || cache="$PWD/$cache"
  bin="$cache/bin/$name-$version"
  if [[ ! -x $bin ]]; then
    command -v go >/dev/null 2>&1 || die "$name $version is not built and there is no 'go' to build it"
    log "building $name $version (once)"
    mkdir -p "$cache/bin"
    stage=$(mktemp -d "$cache/bin/.$name.XXXXXX")
    if ! GOTOOLCHAIN=local GOSUMDB=off CGO_ENABLED=0 GOBIN="$stage" go install "$package@$version" >&2; then
      rm -rf "$stage"
      die "go install $package@$version failed"
    fi
    mv -f "$stage/$name" "$bin"
    rm -rf "$stage"
  fi
  printf '%s\n' "$bin"
}

go_tool_main() { # NAME PACKAGE VERSION ARGS...: `path` prints the binary's path (building it); other ARGS run it
  local name=$1 package=$2 version=$3 bin
  shift 3
  (($#)) || die "usage: dev/$name.sh path | <$name args>"
  bin=$(go_tool_bin "$name" "$package" "$version")
  if [[ $1 == path ]]; then
    printf '%s\n' "$bin"
  else
    exec "$bin" "$@"
  fi
}
