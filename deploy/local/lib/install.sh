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

# ensure_python_module MODULE PKG: install Debian package PKG unless python3 can import
# MODULE.
ensure_python_module() {
	local module=$1 pkg=$2
	python3 -c "import $module" >/dev/null 2>&1 && return 0
	apt_install "$pkg" "python module $module"
	python3 -c "import $module" >/dev/null 2>&1 || die "installed $pkg but python3 still cannot import $module"
}

# ensure_apt_pkg CMD PKG: install Debian package PKG unless CMD is already on
# PATH. `apt-get update` runs at most once per stack invocation.
ensure_apt_pkg() {
	local cmd=$1 pkg=$2
	command -v "$cmd" >/dev/null 2>&1 && return 0
	apt_install "$pkg" "$cmd"
	command -v "$cmd" >/dev/null 2>&1 || die "installed $pkg but $cmd is still not on PATH"
}

# apt_install PKG WHAT: install Debian package PKG, needed for WHAT.
apt_install() {
	local pkg=$1 what=$2
	command -v apt-get >/dev/null 2>&1 || die "$what is missing and apt-get is not available to install $pkg"
	if ((_TCDIST_APT_UPDATED == 0)); then
		log "apt-get update"
		as_root env DEBIAN_FRONTEND=noninteractive apt-get update -q >&2
		_TCDIST_APT_UPDATED=1
	fi
	log "installing $pkg (for $what)"
	as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "$pkg" >&2
}

# ---------------------------------------------------------------- Go tools

# The cache of Go tools the stack runs, one directory per tool and version.
go_tools_dir() {
	printf '%s\n' "${TCDIST_TOOLS_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/tcdist/tools}"
}

# ensure_go_tool [--cgo] [--tool-module MOD | --src DIR] NAME VERSION PKG...
# Print the bin directory of a cached install of PKG... (<tools>/NAME-VERSION/bin;
# <tools> is $TCDIST_TOOLS_DIR, default ${XDG_CACHE_HOME:-~/.cache}/tcdist/tools),
# installing it with the machine's Go first when it is missing.
#   (default)          GOBIN=... go install PKG@VERSION...   (PKG with its @version)
#   --tool-module MOD  in a scratch module MOD: go get -tool PKG@VERSION, for each
#                      PKG, then go install of the packages (for modules such as
#                      SPIRE that cannot be installed with go install PKG@VERSION)
#   --src DIR          go install PKG... inside DIR, a module of this repository;
#                      the cache key gets a digest of DIR's files, so editing
#                      them installs anew
#   --cgo              CGO_ENABLED=1 (needs gcc; installed with apt when missing)
# A second call with the same arguments finds the cache and does nothing. The
# install runs in a temp dir that is renamed into place when complete, under a
# lock, so concurrent stacks install once and an interrupted install leaves
# no partial cache entry.
ensure_go_tool() {
	local cgo=0 tool_module='' src='' name version key tools dest
	while (($#)); do
		case $1 in
		--cgo) cgo=1 ;;
		--tool-module)
			tool_module=$2
			shift
			;;
		--src)
			src=$(realpath -e -- "$2") || die "ensure_go_tool: no such directory: $2"
			shift
			;;
		--) shift && break ;;
		-*) die "ensure_go_tool: unknown option $1" ;;
		*) break ;;
		esac
		shift
	done
	(($# >= 3)) || die "ensure_go_tool: usage: ensure_go_tool [--cgo] [--tool-module MOD | --src DIR] NAME VERSION PKG..."
	name=$1 version=$2
	shift 2
	key=$name-$version
	if [[ -n $src ]]; then
		key+=-$(cd "$src" && find . -type f ! -name '.*' -print0 | LC_ALL=C sort -z |
			xargs -0 sha256sum | sha256sum | cut -c1-12)
	fi
	tools=$(go_tools_dir)
	dest=$tools/$key
	if [[ -d $dest/bin ]]; then
		printf '%s\n' "$dest/bin"
		return 0
	fi

	need_cmd go flock
	((cgo == 0)) || ensure_apt_pkg gcc gcc
	mkdir -p "$tools"
	# Not in a condition, so errexit applies inside.
	(
		exec 8>"$tools/.$key.lock"
		flock -w 3600 8 || die "timed out waiting for the lock on $tools/.$key.lock"
		[[ -d $dest/bin ]] && exit 0
		# Leftovers of an interrupted install (nobody else holds the lock).
		rm -rf "$tools/.$key".tmp.*
		tmp=$(mktemp -d "$tools/.$key.tmp.XXXXXX")
		chmod 755 "$tmp"
		# shellcheck disable=SC2064 # expand now: $tmp is local to this subshell
		trap "rm -rf '$tmp'" EXIT
		log "installing $key with $(go env GOVERSION) into $dest (cached for the next runs)"
		export GOBIN=$tmp/bin GOFLAGS="${GOFLAGS:+$GOFLAGS }-buildvcs=false"
		export CGO_ENABLED=$cgo
		started=$SECONDS
		if [[ -n $tool_module ]]; then
			mkdir "$tmp/module"
			cd "$tmp/module" || exit 1
			go mod init "$tool_module" 2>/dev/null
			for pkg in "$@"; do
				# Quiet: it lists every module it adds.
				go get -tool "$pkg" >"$tmp/go-get.log" 2>&1 || {
					cat "$tmp/go-get.log" >&2
					exit 1
				}
			done
			go install "${@%@*}" >&2
			cd "$tmp" || exit 1
			rm -rf "$tmp/module"
		elif [[ -n $src ]]; then
			cd "$src" || exit 1
			go install "$@" >&2
		else
			cd "$tmp" || exit 1
			go install "$@" >&2
		fi
		[[ -n $(ls -A "$GOBIN" 2>/dev/null) ]] || die "installing $key produced no binary"
		mv -T "$tmp" "$dest"
		log "installed $key in $((SECONDS - started))s"
	)
	printf '%s\n' "$dest/bin"
}

# ---------------------------------------------------------------- third-party verifiers

# The Sigstore clients the tests check tcdist's bundles with.
COSIGN_VERSION=v3.0.5
SIGSTORE_JS_VERSION=3.1.1
# Exact versions installed beside @sigstore/verify (its dependency ranges:
# @sigstore/bundle ^4.0.0, @sigstore/core ^3.2.1, @sigstore/protobuf-specs ^0.5.0).
SIGSTORE_JS_PACKAGES=(
	"@sigstore/verify@$SIGSTORE_JS_VERSION"
	@sigstore/bundle@4.0.0
	@sigstore/core@3.2.1
	@sigstore/protobuf-specs@0.5.2
)

# ensure_cosign: print the bin directory of cosign $COSIGN_VERSION (built from
# source with the machine's Go and cached; a cold build takes minutes).
ensure_cosign() {
	ensure_go_tool cosign "$COSIGN_VERSION" "github.com/sigstore/cosign/v3/cmd/cosign@$COSIGN_VERSION"
}

# ensure_sigstore_js: print the directory of a cached npm install of
# @sigstore/verify $SIGSTORE_JS_VERSION and its siblings (<tools>/sigstore-js-VERSION,
# with node_modules/ inside; Node resolves imports from scripts in that directory
# or with NODE_PATH=<dir>/node_modules). Needs Node >= 20.17 and npm. Installed
# without package scripts, in a temp dir renamed into place when complete, under
# a lock, like ensure_go_tool.
ensure_sigstore_js() {
	local key=sigstore-js-$SIGSTORE_JS_VERSION tools dest
	tools=$(go_tools_dir)
	dest=$tools/$key
	if [[ -d $dest/node_modules/@sigstore/verify ]]; then
		printf '%s\n' "$dest"
		return 0
	fi
	need_cmd node npm flock
	node -e '
const [maj, min] = process.versions.node.split(".").map(Number);
process.exit(maj > 20 || (maj === 20 && min >= 17) ? 0 : 1);' ||
		die "@sigstore/verify $SIGSTORE_JS_VERSION needs Node >= 20.17; this is $(node --version)"
	mkdir -p "$tools"
	(
		exec 8>"$tools/.$key.lock"
		flock -w 3600 8 || die "timed out waiting for the lock on $tools/.$key.lock"
		[[ -d $dest/node_modules/@sigstore/verify ]] && exit 0
		rm -rf "$tools/.$key".tmp.*
		tmp=$(mktemp -d "$tools/.$key.tmp.XXXXXX")
		chmod 755 "$tmp"
		# shellcheck disable=SC2064 # expand now: $tmp is local to this subshell
		trap "rm -rf '$tmp'" EXIT
		log "installing $key with npm $(npm --version) into $dest (cached for the next runs)"
		started=$SECONDS
		printf '{ "name": "tcdist-sigstore-js", "private": true }\n' >"$tmp/package.json"
		npm install --prefix "$tmp" --save-exact --ignore-scripts --no-audit --no-fund \
			--no-update-notifier --loglevel=error "${SIGSTORE_JS_PACKAGES[@]}" >"$tmp/npm.log" 2>&1 || {
			cat "$tmp/npm.log" >&2
			exit 1
		}
		rm -f "$tmp/npm.log"
		(cd "$tmp" && node -e 'require("@sigstore/verify"); require("@sigstore/bundle"); require("@sigstore/core")') ||
			die "installed $key but node cannot load it"
		mv -T "$tmp" "$dest"
		log "installed $key in $((SECONDS - started))s"
	)
	printf '%s\n' "$dest"
}
