# shellcheck shell=bash
# Source this file (`. offline/pulumi-env.sh`) to put the pinned Pulumi engine on
# PATH and configure it for offline use. It gets the engine's directory from
# offline/toolchain.sh, which builds it on first use (several minutes, once) and
# is quick afterwards. Safe to source repeatedly and from `set -eu` shells.
#
# Exports: PATH (engine first), PULUMI_HOME, PULUMI_SKIP_UPDATE_CHECK,
# PULUMI_DISABLE_AUTOMATIC_PLUGIN_ACQUISITION, and with DROPSHIP_OFFLINE=1
# PULUMI_IGNORE_AMBIENT_PLUGINS=true (so that the engine takes the stand-in
# from the plugin cache, not a pulumi-resource-command on PATH). Honours
# DROPSHIP_CACHE. See docs/offline.md.

dropship_pulumi_env() {
	local repo_root out bin_dir
	repo_root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd -P) || return 1

	local cache=${DROPSHIP_CACHE:-$HOME/.cache/dropship}
	[[ $cache == /* ]] || cache="$PWD/$cache"
	export PULUMI_HOME="${PULUMI_HOME:-$cache/pulumi-home}"
	export PULUMI_SKIP_UPDATE_CHECK=true
	export PULUMI_DISABLE_AUTOMATIC_PLUGIN_ACQUISITION=true
	if [[ ${DROPSHIP_OFFLINE:-} == 1 || ${DROPSHIP_TOOLCHAIN_NO_PATH:-} == 1 ]]; then
		export PULUMI_IGNORE_AMBIENT_PLUGINS=true
	fi

	out=$(bash "$repo_root/offline/toolchain.sh") || return 1
	bin_dir=${out##*$'\n'}
	if [[ -z $bin_dir || ! -x $bin_dir/pulumi ]]; then
		echo "pulumi-env.sh: offline/toolchain.sh did not provide pulumi" >&2
		return 1
	fi

	# Put the engine first, dropping any earlier copy of the same directory.
	local path=":${PATH}:"
	path=${path//":$bin_dir:"/:}
	path=${path#:}
	path=${path%:}
	export PATH="$bin_dir${path:+:$path}"
}

if dropship_pulumi_env; then
	unset -f dropship_pulumi_env
else
	unset -f dropship_pulumi_env
	return 1
fi
