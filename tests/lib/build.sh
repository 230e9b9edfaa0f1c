# shellcheck shell=bash
# Builds the tcdist binaries once (cargo caches by itself) and exports TCDIST_BIN, the
# directory that holds `distd` and `tcverify`. Sourced by tests/run and deploy/local/demo.

tcdist_build() {
	local top=$1 profile=${TCDIST_PROFILE:-dev}
	command -v cargo >/dev/null 2>&1 || {
		echo "cargo is required (install Rust: https://rustup.rs)" >&2
		return 1
	}
	(cd "$top" && cargo build --profile "$profile" --bins --quiet) || return 1
	local dir=$profile
	[[ $profile == dev ]] && dir=debug
	TCDIST_BIN=$(cd "$top" && cargo metadata --format-version 1 --no-deps | python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')/$dir
	export TCDIST_BIN
}
