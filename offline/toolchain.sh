#!/usr/bin/env bash
# Provides the Pulumi engine: the `pulumi` CLI, the Python language host
# `pulumi-language-python` and the command provider plugin.
#
# Prints the directory holding `pulumi` and `pulumi-language-python` as the
# last line on stdout; progress goes to stderr. Idempotent: run it as often as
# you like. Usually called by sourcing offline/pulumi-env.sh.
#
#  1. Unless DROPSHIP_OFFLINE=1: if `pulumi` on PATH is the pinned version and
#     has `pulumi-language-python` beside it (an official install), use it.
#  2. Otherwise build both from Go modules with the machine's `go` into
#     ${DROPSHIP_CACHE:-$HOME/.cache/dropship}/toolchain/pulumi-vX.Y.Z-<hash>/,
#     skipping the build when that directory already exists. A cold build
#     takes several minutes and needs the Go module proxy; Go's module and
#     build caches are Go's defaults (`go env GOMODCACHE GOCACHE`).
#  3. Unless DROPSHIP_OFFLINE=1: if the official pulumi-resource-command of the
#     pinned version is available (on PATH, reporting that version through
#     GetPluginInfo, or a real binary in $PULUMI_HOME/plugins/
#     resource-command-v<pinned>/), leave it alone: the engine uses it (one on
#     PATH wins over the plugin cache). A stand-in link left in the cache by an
#     earlier run stays; the engine prefers the PATH one.
#     Otherwise install dropship's Python stand-in into that plugin-cache
#     directory (offline/command_provider/install.sh). With DROPSHIP_OFFLINE=1
#     an official binary found there is moved aside to
#     pulumi-resource-command.official, and put back by the next run without
#     DROPSHIP_OFFLINE=1.
#  4. For a built engine, install the legacy Python policy analyzer
#     `pulumi-analyzer-policy-python` into $PULUMI_HOME (see "Policy packs").
#
# Policy packs: this CLI runs a Python policy pack (`--policy-pack DIR`)
# through the language host's RunPlugin call, which the v3.68 host cannot
# serve: its RunPluginRequest has no field for the pack's directory, so it
# would run the project's own __main__.py. The built CLI is therefore patched
# (one condition, in a copy of pkg/v3 that a temporary go.mod
# replaces it with) to prefer the plugin
# `pulumi-analyzer-policy-<runtime>` when one is installed, the route Pulumi
# CLIs took before the language-host one; sdk/v3 v3.68.0 ships that plugin
# for Python (a shell script running `python -m pulumi.policy` in the pack's
# `virtualenv`). An official CLI on PATH needs neither.
#
# Pins (one place each):
#  - requirements.txt: `pulumi` (Python SDK) and `pulumi-command`.
#  - offline/toolchain/cli/go.mod: the CLI (pkg/v3 and sdk/v3, same version).
#    Equal to the `pulumi` pin (v3.259.0: the newest pkg/v3 whose source the
#    module proxy here serves).
#  - offline/toolchain/langhost/go.mod: the Python language host, which the
#    proxy serves only inside sdk/v3 v3.68.0, plus a small launcher (main.go)
#    that feeds it Pulumi.yaml's `virtualenv` option.
# go.sum files pin the module contents. To change a version, edit the go.mod
# and run `GOTOOLCHAIN=local GOSUMDB=off GOFLAGS=-mod=mod go mod tidy` there;
# the cache key changes with the files, so the next run rebuilds.
#
# `toolchain.sh --describe` prints which engine and command provider would be
# used (two lines, `engine: ...` and `command provider: ...`), building and
# installing nothing. See docs/offline.md.
#
# Environment: DROPSHIP_CACHE (cache root), PULUMI_HOME (plugins; default
# $DROPSHIP_CACHE/pulumi-home), DROPSHIP_OFFLINE=1 (always the built engine and
# the stand-in; offline/pulumi-env.sh then also sets
# PULUMI_IGNORE_AMBIENT_PLUGINS=true so that no plugin on PATH is used),
# DROPSHIP_TOOLCHAIN_NO_PATH=1 (older name of DROPSHIP_OFFLINE=1).
set -euo pipefail

# Bump when the build recipe below changes in a way that needs a rebuild.
readonly RECIPE_REVISION=2

readonly CLI_PACKAGE=github.com/pulumi/pulumi/pkg/v3/cmd/pulumi
readonly HOST_PACKAGE=github.com/pulumi/pulumi/sdk/v3/python/cmd/pulumi-language-python
readonly SDK_MODULE=github.com/pulumi/pulumi/sdk/v3
readonly VERSION_SYMBOL=github.com/pulumi/pulumi/sdk/v3/go/common/version.Version
readonly EXEC_SCRIPT=python/cmd/pulumi-language-python-exec
readonly POLICY_SCRIPT=python/dist/pulumi-analyzer-policy-python
readonly ANALYZER_SOURCE=resource/plugin/analyzer_plugin.go

log() {
	printf 'toolchain: %s\n' "$*" >&2
}

die() {
	log "error: $*"
	exit 1
}

# Version pinned for a package in requirements.txt (`name==X.Y.Z`).
requirement_version() {
	local name=$1 version
	version=$(sed -n "s/^${name}==\([0-9][0-9A-Za-z.+-]*\).*/\1/p" "$REPO_ROOT/requirements.txt" | head -n 1)
	[[ -n $version ]] || die "requirements.txt has no '${name}==X.Y.Z' pin"
	printf '%s\n' "$version"
}

# Version (without the leading v) of a module required by a go.mod file.
gomod_version() {
	local gomod=$1 module=$2 version
	version=$(awk -v m="$module" '$1 == m && $2 ~ /^v/ { print substr($2, 2); exit }
		$1 == "require" && $2 == m && $3 ~ /^v/ { print substr($3, 2); exit }' "$gomod")
	[[ -n $version ]] || die "$gomod does not require $module"
	printf '%s\n' "$version"
}

sha256() {
	if command -v sha256sum >/dev/null 2>&1; then
		sha256sum "$@"
	else
		shasum -a 256 "$@"
	fi
}

# Short hash of everything that determines the build output.
inputs_hash() {
	{
		printf 'recipe %s\n' "$RECIPE_REVISION"
		(cd "$TOOLCHAIN_DIR" && sha256 cli/go.mod cli/go.sum langhost/go.mod langhost/go.sum langhost/*.go)
	} | sha256 | cut -c 1-10
}

# Echo the directory of a usable `pulumi` on PATH, or nothing.
pulumi_on_path() {
	local pulumi dir version
	! offline_forced || return 0
	pulumi=$(command -v pulumi 2>/dev/null) || return 0
	dir=$(cd "$(dirname "$pulumi")" && pwd -P)
	# Our own older builds are on PATH after sourcing pulumi-env.sh; only the
	# current one counts (handled by the caller).
	[[ $dir != "$CACHE_ROOT"/toolchain/* ]] || return 0
	[[ -x $dir/pulumi-language-python ]] || return 0
	version=$(PULUMI_SKIP_UPDATE_CHECK=true "$pulumi" version 2>/dev/null) || return 0
	if [[ $version == "v$PULUMI_VERSION" || $version == "v$CLI_VERSION" ]]; then
		printf '%s\n' "$dir"
	else
		log "ignoring $pulumi: version $version, pinned v$CLI_VERSION"
	fi
}

go_env() {
	env GOTOOLCHAIN=local GOSUMDB=off CGO_ENABLED=0 "$@"
}

# Module directory (in the module cache) of a module required by a wrapper
# module, downloading it if needed; verified against that module's go.sum.
module_dir() {
	local wrapper=$1 module=$2
	(cd "$TOOLCHAIN_DIR/$wrapper" && go_env go mod download -json "$module") |
		sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p'
}

# Prepares in $1 a copy of pkg/v3 with the policy-pack patch (see "Policy
# packs" above) and a go.mod that replaces pkg/v3 with it (the go command
# refuses overlays of files in the module cache); prints that go.mod's path.
patched_cli_modfile() {
	local dir=$1 source
	source=$(module_dir cli github.com/pulumi/pulumi/pkg/v3)
	[[ -f $source/$ANALYZER_SOURCE ]] || die "cannot find $ANALYZER_SOURCE of pkg/v3 v$CLI_VERSION in the module cache"
	cp -R "$source" "$dir/pkg"
	chmod -R u+w "$dir/pkg"
	sed 's/^\([[:space:]]*foundLanguagePlugin := hasPlugin(.*Kind: apitype.LanguagePlugin})\)$/\1 \&\& !hasPlugin(workspace.PluginDescriptor{Name: "policy-" + proj.Runtime.Name(), Kind: apitype.AnalyzerPlugin})/' \
		"$source/$ANALYZER_SOURCE" >"$dir/pkg/$ANALYZER_SOURCE"
	grep -q '!hasPlugin(workspace.PluginDescriptor{Name: "policy-"' "$dir/pkg/$ANALYZER_SOURCE" ||
		die "$ANALYZER_SOURCE of pkg/v3 v$CLI_VERSION changed: the policy-pack patch no longer applies"
	cp "$TOOLCHAIN_DIR/cli/go.mod" "$dir/go.mod"
	cp "$TOOLCHAIN_DIR/cli/go.sum" "$dir/go.sum"
	printf '\nreplace github.com/pulumi/pulumi/pkg/v3 => %s\n' "$dir/pkg" >>"$dir/go.mod"
	printf '%s\n' "$dir/go.mod"
}

build() {
	local stage=$1 started=$SECONDS exec_script policy_script host_version modfile

	log "building pulumi CLI v$CLI_VERSION (cold build, several minutes)"
	mkdir -p "$stage/src"
	modfile=$(patched_cli_modfile "$stage/src")
	(cd "$TOOLCHAIN_DIR/cli" && go_env go build -mod=readonly -modfile "$modfile" -trimpath -tags osusergo \
		-ldflags "-X $VERSION_SYMBOL=v$CLI_VERSION" -o "$stage/bin/pulumi" "$CLI_PACKAGE")
	rm -rf "$stage/src"
	log "built pulumi CLI in $((SECONDS - started))s"

	started=$SECONDS
	host_version=$(gomod_version "$TOOLCHAIN_DIR/langhost/go.mod" "$SDK_MODULE")
	log "building pulumi-language-python (sdk v$host_version) and its launcher"
	(cd "$TOOLCHAIN_DIR/langhost" && go_env go build -mod=readonly -trimpath -tags osusergo \
		-ldflags "-X $VERSION_SYMBOL=v$host_version" -o "$stage/libexec/pulumi-language-python" "$HOST_PACKAGE")
	(cd "$TOOLCHAIN_DIR/langhost" && go_env go build -mod=readonly -trimpath -tags osusergo \
		-o "$stage/bin/pulumi-language-python" .)
	log "built language host in $((SECONDS - started))s"

	# The host runs the program through this script, which must sit next to
	# the host binary. Prefer the CLI's sdk (the PyPI SDK's version); fall back
	# to the host's own sdk if a future sdk drops the script.
	exec_script="$(module_dir cli "$SDK_MODULE")/$EXEC_SCRIPT"
	if [[ ! -f $exec_script ]]; then
		log "no $EXEC_SCRIPT in sdk v$CLI_VERSION, using the one of sdk v$host_version"
		exec_script="$(module_dir langhost "$SDK_MODULE")/$EXEC_SCRIPT"
	fi
	[[ -f $exec_script ]] || die "cannot find $EXEC_SCRIPT in the module cache"
	install -m 0755 "$exec_script" "$stage/libexec/pulumi-language-python-exec"

	# The legacy Python policy analyzer (install_policy_analyzer puts it in the plugin cache).
	policy_script="$(module_dir langhost "$SDK_MODULE")/$POLICY_SCRIPT"
	[[ -f $policy_script ]] || die "cannot find $POLICY_SCRIPT of sdk v$host_version in the module cache"
	install -m 0755 "$policy_script" "$stage/libexec/pulumi-analyzer-policy-python"
}

# Build into $dest unless it is complete; serialised across processes.
ensure_built() {
	local dest=$1 lock stage
	if [[ -x $dest/bin/pulumi && -x $dest/bin/pulumi-language-python ]]; then
		return 0
	fi
	command -v go >/dev/null 2>&1 || die "pulumi v$PULUMI_VERSION not found and no 'go' to build it; install it with:
    curl -fsSL https://get.pulumi.com | sh -s -- --version $PULUMI_VERSION"

	mkdir -p "$(dirname "$dest")"
	lock="$dest.lock"
	exec 9>"$lock"
	if command -v flock >/dev/null 2>&1 && ! flock -n 9; then
		log "another process is building $dest; waiting"
		flock 9
	fi
	if [[ ! -x $dest/bin/pulumi || ! -x $dest/bin/pulumi-language-python ]]; then
		stage="$dest.partial.$$"
		# Leftovers of interrupted builds; nobody else builds while we hold the lock.
		rm -rf "$dest" "$dest".partial.*
		mkdir -p "$stage/bin" "$stage/libexec"
		STAGE_TO_CLEAN=$stage
		local started=$SECONDS
		build "$stage"
		mv "$stage" "$dest"
		STAGE_TO_CLEAN=
		log "toolchain ready in $dest ($((SECONDS - started))s)"
	fi
	exec 9>&-
}

# DROPSHIP_OFFLINE=1 (or its older name DROPSHIP_TOOLCHAIN_NO_PATH=1).
offline_forced() {
	[[ ${DROPSHIP_OFFLINE:-} == 1 || ${DROPSHIP_TOOLCHAIN_NO_PATH:-} == 1 ]]
}

# True if the plugin executable $1 is dropship's stand-in launcher (of any
# checkout) or a dangling link (e.g. to the stand-in's old place, tools/).
is_stand_in() {
	local target
	target=$(readlink -f -- "$1" 2>/dev/null) || return 0
	[[ -e $target ]] || return 0
	[[ $(head -c 2 -- "$target" 2>/dev/null) == '#!' ]] && grep -q 'provider\.py' -- "$target"
}

# Version a provider plugin reports through GetPluginInfo (started as the
# engine would, in attach mode, and stopped again), or nothing.
plugin_version() {
	local python=${DROPSHIP_VENV:-$REPO_ROOT/venv}/bin/python
	[[ -x $python ]] || return 0
	"$python" - "$1" <<'PY' 2>/dev/null || true
import signal, subprocess, sys
import grpc
from google.protobuf import empty_pb2
from pulumi.runtime.proto import provider_pb2_grpc
signal.alarm(20)
plugin = subprocess.Popen([sys.argv[1]], stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
try:
    port = int(plugin.stdout.readline())
    with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
        info = provider_pb2_grpc.ResourceProviderStub(channel).GetPluginInfo(empty_pb2.Empty(), timeout=10)
    print(info.version.removeprefix("v"))
finally:
    plugin.kill()
    plugin.wait()
PY
}

# Sets PROVIDER_KIND (official | stand-in) and PROVIDER_PATH (the executable
# the engine will run), and RESTORE_OFFICIAL=1 when an official binary moved
# aside by an earlier DROPSHIP_OFFLINE=1 run is to be put back.
select_command_provider() {
	local slot=$PLUGIN_SLOT on_path version
	PROVIDER_KIND=stand-in
	PROVIDER_PATH=$REPO_ROOT/offline/command_provider/pulumi-resource-command
	RESTORE_OFFICIAL=
	if offline_forced; then
		if [[ -z ${PULUMI_IGNORE_AMBIENT_PLUGINS:-} ]] && on_path=$(command -v pulumi-resource-command 2>/dev/null) && ! is_stand_in "$on_path"; then
			log "warning: the engine would use $on_path from PATH; set PULUMI_IGNORE_AMBIENT_PLUGINS=true (offline/pulumi-env.sh does)"
		fi
		return 0
	fi
	if [[ -z ${PULUMI_IGNORE_AMBIENT_PLUGINS:-} ]] && on_path=$(command -v pulumi-resource-command 2>/dev/null) && ! is_stand_in "$on_path"; then
		version=$(plugin_version "$on_path")
		if [[ $version == "$COMMAND_VERSION" ]]; then
			PROVIDER_KIND=official PROVIDER_PATH=$on_path
			return 0
		fi
		log "warning: $on_path reports version ${version:-unknown}, pinned v$COMMAND_VERSION; the engine uses a plugin on PATH" \
			"before the plugin cache: remove it from PATH or set PULUMI_IGNORE_AMBIENT_PLUGINS=true"
	fi
	if [[ -x $slot ]] && ! is_stand_in "$slot"; then
		PROVIDER_KIND=official PROVIDER_PATH=$slot
	elif [[ -x $slot.official ]] && ! is_stand_in "$slot.official"; then
		PROVIDER_KIND=official PROVIDER_PATH=$slot RESTORE_OFFICIAL=1
	fi
}

# Installs the selected command provider into the plugin cache (see step 3).
apply_command_provider() {
	local slot=$PLUGIN_SLOT
	if [[ $PROVIDER_KIND == official ]]; then
		if [[ -n $RESTORE_OFFICIAL ]]; then
			mv -f -- "$slot.official" "$slot"
			log "put the official pulumi-resource-command back: $slot"
		fi
		log "using the official pulumi-resource-command v$COMMAND_VERSION: $PROVIDER_PATH"
		return 0
	fi
	if [[ -x $slot && ! -L $slot ]] && ! is_stand_in "$slot"; then
		mv -f -- "$slot" "$slot.official"
		log "DROPSHIP_OFFLINE=1: moved the official plugin aside to $slot.official"
	fi
	install_command_provider
}

describe() {
	local engine_dir=$1 built=$2 forced=
	offline_forced && forced="; forced by DROPSHIP_OFFLINE=1"
	if [[ $built == no ]]; then
		printf 'engine: pulumi v%s from PATH (official) at %s\n' "$PULUMI_VERSION" "$engine_dir"
	else
		local note=
		[[ -x $engine_dir/pulumi ]] || note=" (not built yet: make toolchain builds it)"
		printf 'engine: pulumi v%s built from Go modules (offline) at %s%s%s\n' "$CLI_VERSION" "$engine_dir" "$note" "$forced"
	fi
	if [[ $PROVIDER_KIND == official ]]; then
		printf 'command provider: pulumi-resource-command v%s (official) at %s\n' "$COMMAND_VERSION" "$PROVIDER_PATH"
	else
		printf "command provider: dropship's offline stand-in for pulumi-resource-command v%s (offline/command_provider)%s\n" \
			"$COMMAND_VERSION" "$forced"
	fi
}

install_command_provider() {
	local installer="$REPO_ROOT/offline/command_provider/install.sh"
	local plugin=$PLUGIN_SLOT
	if [[ ! -f $installer ]]; then
		log "warning: $installer not found; command provider v$COMMAND_VERSION not installed"
		return 0
	fi
	PULUMI_COMMAND_VERSION=$COMMAND_VERSION bash "$installer" >&2
	[[ -x $plugin ]] || log "warning: $plugin missing after running $installer"
}

# Puts the built engine's legacy Python policy analyzer into the plugin cache
# ($PULUMI_HOME/plugins/analyzer-policy-python-v<sdk>/), where the patched CLI
# finds it without a "using ... from $PATH" warning.
install_policy_analyzer() {
	local dest=$1 script version dir
	script="$dest/libexec/pulumi-analyzer-policy-python"
	[[ -x $script ]] || die "$script is missing; remove $dest to rebuild"
	version=$(gomod_version "$TOOLCHAIN_DIR/langhost/go.mod" "$SDK_MODULE")
	dir="$PULUMI_HOME/plugins/analyzer-policy-python-v$version"
	mkdir -p "$dir"
	ln -sfn "$script" "$dir/pulumi-analyzer-policy-python"
	rm -f "$dir.partial"
}

cleanup() {
	if [[ -n ${STAGE_TO_CLEAN:-} ]]; then
		rm -rf "$STAGE_TO_CLEAN"
	fi
}

main() {
	local mode=run
	case ${1:-} in
	--describe) mode=describe ;;
	"") ;;
	*) die "usage: toolchain.sh [--describe]" ;;
	esac
	REPO_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd -P)
	TOOLCHAIN_DIR="$REPO_ROOT/offline/toolchain"
	CACHE_ROOT=${DROPSHIP_CACHE:-$HOME/.cache/dropship}
	[[ $CACHE_ROOT == /* ]] || CACHE_ROOT="$PWD/$CACHE_ROOT"
	export PULUMI_HOME=${PULUMI_HOME:-$CACHE_ROOT/pulumi-home}
	STAGE_TO_CLEAN=
	trap cleanup EXIT

	# --- versions ---------------------------------------------------------
	PULUMI_VERSION=$(requirement_version pulumi)
	COMMAND_VERSION=$(requirement_version pulumi-command)
	PLUGIN_SLOT="$PULUMI_HOME/plugins/resource-command-v$COMMAND_VERSION/pulumi-resource-command"
	CLI_VERSION=$(gomod_version "$TOOLCHAIN_DIR/cli/go.mod" github.com/pulumi/pulumi/pkg/v3)
	local cli_sdk
	cli_sdk=$(gomod_version "$TOOLCHAIN_DIR/cli/go.mod" "$SDK_MODULE")
	[[ $cli_sdk == "$CLI_VERSION" ]] ||
		die "offline/toolchain/cli/go.mod: pkg/v3 v$CLI_VERSION and sdk/v3 v$cli_sdk must match"
	# ----------------------------------------------------------------------

	local bin_dir dest
	bin_dir=$(pulumi_on_path)
	select_command_provider
	if [[ $mode == describe ]]; then
		if [[ -n $bin_dir ]]; then
			describe "$bin_dir" no
		else
			describe "$CACHE_ROOT/toolchain/pulumi-v$CLI_VERSION-$(inputs_hash)/bin" yes
		fi
		return 0
	fi
	if [[ -n $bin_dir ]]; then
		log "using pulumi from PATH: $bin_dir"
	else
		if [[ $CLI_VERSION != "$PULUMI_VERSION" ]]; then
			log "note: CLI v$CLI_VERSION (offline/toolchain/cli/go.mod) with Python SDK pulumi==$PULUMI_VERSION"
		fi
		dest="$CACHE_ROOT/toolchain/pulumi-v$CLI_VERSION-$(inputs_hash)"
		ensure_built "$dest"
		install_policy_analyzer "$dest"
		bin_dir="$dest/bin"
	fi

	apply_command_provider
	printf '%s\n' "$bin_dir"
}

main "$@"
