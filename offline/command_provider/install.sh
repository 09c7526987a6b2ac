#!/usr/bin/env bash
# Installs offline/command_provider as the Pulumi `command` resource plugin, v1.2.1,
# into the plugin cache: ${PULUMI_HOME:-~/.pulumi}/plugins/resource-command-v1.2.1/.
#
# The engine takes a plugin from the cache when the directory
# `<kind>-<name>-v<version>` holds `pulumi-<kind>-<name>` and no sibling
# `<dir>.partial` file exists (an unfinished install); `<dir>.lock` is only used
# while installing. The executable is a symlink to the launcher in this repo, so
# re-running after moving the repo (or with another PULUMI_HOME) is all it takes.
#
# Env: PULUMI_HOME; PULUMI_COMMAND_VERSION (must be the version provider.py
# implements, 1.2.1); DROPSHIP_VENV is read by the launcher at run time.
set -euo pipefail

readonly IMPLEMENTED_VERSION=1.2.1

main() {
	local here version plugins dir launcher
	here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd -P)
	version=${PULUMI_COMMAND_VERSION:-$IMPLEMENTED_VERSION}
	if [[ $version != "$IMPLEMENTED_VERSION" ]]; then
		echo "install.sh: pulumi-command $version requested, but this provider implements $IMPLEMENTED_VERSION;" \
			"review offline/command_provider against the new version first" >&2
		return 1
	fi
	launcher="$here/pulumi-resource-command"
	[[ -f $launcher ]] || {
		echo "install.sh: $launcher is missing" >&2
		return 1
	}
	chmod +x "$launcher"

	plugins="${PULUMI_HOME:-$HOME/.pulumi}/plugins"
	dir="$plugins/resource-command-v$version"
	mkdir -p "$dir"
	ln -sfn "$launcher" "$dir/pulumi-resource-command"
	rm -f "$dir.partial"
	echo "installed command provider v$version: $dir/pulumi-resource-command -> $launcher"
}

main "$@"
