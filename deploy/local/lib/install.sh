# shellcheck shell=bash
# Installing what the stack runs. Sourced after common.sh.

_TCDIST_APT_UPDATED=0

# as_root CMD...: run CMD as root (directly when already root, else via sudo).
as_root() {
	if [[ $(id -u) -eq 0 ]]; then
		"$@"
	elif command -v sudo >/dev/null 2>&1; then
		sudo "$@"
	else
		die "need root (or sudo) to run: $*"
	fi
}

# ensure_apt_pkg CMD PKG: install Debian package PKG unless CMD is already on
# PATH. `apt-get update` runs at most once per stack invocation.
ensure_apt_pkg() {
	local cmd=$1 pkg=$2
	command -v "$cmd" >/dev/null 2>&1 && return 0
	command -v apt-get >/dev/null 2>&1 || die "$cmd is missing and apt-get is not available to install $pkg"
	if ((_TCDIST_APT_UPDATED == 0)); then
		log "apt-get update"
		as_root env DEBIAN_FRONTEND=noninteractive apt-get update -q >&2
		_TCDIST_APT_UPDATED=1
	fi
	log "installing $pkg (for $cmd)"
	as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "$pkg" >&2
	command -v "$cmd" >/dev/null 2>&1 || die "installed $pkg but $cmd is still not on PATH"
}
