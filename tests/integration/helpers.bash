# shellcheck shell=bash
# Shared setup for the integration suites: the stack's environment, the binaries, a work dir.

: "${TCDIST_TOP:?run through tests/run}"
: "${TCDIST_BIN:?run through tests/run}"
: "${TCDIST_STACK_DIR:?run through tests/run}"
# shellcheck disable=SC1091
. "$TCDIST_STACK_DIR/stack.env"

DISTD=$TCDIST_BIN/distd
TCVERIFY=$TCDIST_BIN/tcverify
export TCDIST_CACHE_DIR=$TCDIST_TEST_WORK/distd-cache

# The stack's policy covers toolchains/*; suites about other concerns publish elsewhere, so
# they verify against the same trust material with a policy that covers every repository.
# The signature suite uses the stack's own policy.
STACK_POLICY=$TCVERIFY_POLICY
TCVERIFY_POLICY=$TCDIST_TEST_WORK/policy-any-repository.toml
if [[ ! -f $TCVERIFY_POLICY ]]; then
	sed 's|^name = .*|name = "**"|' "$STACK_POLICY" >"$TCVERIFY_POLICY.tmp"
	mv "$TCVERIFY_POLICY.tmp" "$TCVERIFY_POLICY"
fi
export TCVERIFY_POLICY
# The stack's trusted root holds the same trust material as its policy. Suites give their trust
# explicitly, so a test about trust material the policy lacks is not undone by it; the trusted
# root suite sets TCVERIFY_TRUST itself.
STACK_TRUST=$TCVERIFY_TRUST
unset TCVERIFY_TRUST
# Suites run tcverify in direct mode unless they ask the stack's agent (agent.bats, the
# Buildkite suite) through STACK_AGENT, as a job does: with job_tcverify.
STACK_AGENT=$TCDIST_AGENT_SOCKET

# job_tcverify SOCKET ARGS…: tcverify ARGS… through the agent at SOCKET, in an environment of
# its own like a job's: this shell's direct-mode settings (TCVERIFY_POLICY, the registry's) are
# refused through the agent.
job_tcverify() {
	local socket=$1
	shift
	env -i PATH=/usr/bin:/bin HOME="$HOME" TCVERIFY_AGENT="$socket" "$TCVERIFY" "$@"
}

# free_ports N: N free loopback ports, on one line.
free_ports() {
	python3 -c '
import socket, sys
s = [socket.socket() for _ in range(int(sys.argv[1]))]
for x in s: x.bind(("127.0.0.1", 0))
print(*[x.getsockname()[1] for x in s])' "$1"
}

# start_forked_log DIR: a second Rekor from the stack's binary, key and origin, with its storage
# in DIR (empty: a fork of the stack's log); sets FORK_URL and FORK_PID.
start_forked_log() {
	local http grpc metrics
	read -r http grpc metrics < <(free_ports 3)
	mkdir -p "$1"
	"$TCDIST_REKOR_BIN" serve --storage-dir "$1" --signer-filepath "$TCDIST_REKOR_KEY" \
		--hostname "$TCDIST_REKOR_ORIGIN" --http-address 127.0.0.1 --http-port "$http" \
		--grpc-address 127.0.0.1 --grpc-port "$grpc" --http-metrics-port "$metrics" \
		--checkpoint-interval 1s >"$1.log" 2>&1 &
	FORK_PID=$!
	FORK_URL=http://127.0.0.1:$http
	for _ in $(seq 100); do
		# An empty request is refused with 400 once the server answers.
		[ "$(curl -s -o /dev/null -w '%{http_code}' -X POST "$FORK_URL/api/v2/log/entries" -d '{}')" = 400 ] && return 0
		sleep 0.2
	done
	echo "the forked log at $FORK_URL did not answer" >&2
	return 1
}

# serve_dir DIR: DIR over HTTP on loopback (a static log's tiles); sets SERVED_URL and
# SERVED_PID.
serve_dir() {
	local port
	port=$(free_ports 1)
	python3 -m http.server --bind 127.0.0.1 --directory "$1" "$port" >/dev/null 2>&1 &
	SERVED_PID=$!
	SERVED_URL=http://127.0.0.1:$port
	for _ in $(seq 50); do
		curl -fs -o /dev/null "$SERVED_URL/" && return 0
		sleep 0.1
	done
	echo "the server for $1 did not answer" >&2
	return 1
}

# A small Go-like tree with an executable, a symlink, nested dirs and an empty dir.
make_small_tree() {
	local dir=$1
	mkdir -p "$dir/bin" "$dir/pkg/tool/linux_amd64" "$dir/src/fmt" "$dir/lib/empty"
	printf 'go1.26.8\ntime 2026-01-01T00:00:00Z\n' >"$dir/VERSION"
	printf '#!/bin/sh\necho small-go "$@"\n' >"$dir/bin/go"
	chmod 755 "$dir/bin/go"
	printf 'package fmt\n' >"$dir/src/fmt/print.go"
	printf 'GOTOOLCHAIN=local\n' >"$dir/go.env"
	ln -s ../src/fmt "$dir/lib/fmt-link"
}

# publish_job_releases N NAME: N releases of job trees (go1.26.8-NAME1 …) in $REPO as v1…vN,
# their digests exported as D1…DN; the trees are $WORK/tree1….
publish_job_releases() {
	local n digest
	for ((n = 1; n <= $1; n++)); do
		make_job_tree "$WORK/tree$n" "go1.26.8-$2$n"
		digest=$("$DISTD" publish "$WORK/tree$n" --ref "$REPO:v$n" 2>/dev/null)
		export "D$n=${digest##*$'\n'}"
	done
}

# make_job_tree DIR VERSION: a small tree whose bin/go also answers `go env GOEXPERIMENT` as
# go does, because `tcverify env` asks the toolchain itself.
make_job_tree() {
	local dir=$1 version=$2
	make_small_tree "$dir"
	printf '%s\n' "$version" >"$dir/VERSION"
	cat >"$dir/bin/go" <<'EOF'
#!/bin/sh
if [ "$1" = env ] && [ "$2" = GOEXPERIMENT ]; then
	printf '%s\n' "${GOEXPERIMENT:-}"
	exit 0
fi
echo small-go "$@"
EOF
}

# registry_api METHOD PATH [CURL ARGS…]: the registry's HTTP API for the suite's $REPO,
# authenticated, as anyone with push rights has it.
registry_api() {
	local method=$1 path=$2
	shift 2
	curl -fsS --cacert "$TCDIST_REGISTRY_CA" \
		-u "$TCDIST_REGISTRY_USERNAME:$TCDIST_REGISTRY_PASSWORD" \
		-X "$method" "$TCDIST_REGISTRY_URL/v2/${REPO#*/}/$path" "$@"
}

# The blob upload requests the registry logged so far (one access-log line per upload).
count_blob_uploads() {
	grep -cE '"PUT /v2/[^ ]+/blobs/uploads/[^ ]* HTTP/[0-9.]+" 201 ' "$TCDIST_REGISTRY_LOG" || true
}

# count_blob_gets DIGEST [LOG]: downloads of one blob logged so far by the registry (or the
# registry whose access log is LOG: the stack's pull-through cache's, $TCDIST_CACHE_LOG).
count_blob_gets() {
	grep -cE "\"GET /v2/[^ ]+/blobs/$1 HTTP/[0-9.]+\" 20[06] " "${2:-$TCDIST_REGISTRY_LOG}" || true
}

# Everything in a store except bookkeeping, with content hashes and modes. Bookkeeping is the
# lock files, the transparency logs' remembered checkpoints (.tlog) and the repositories'
# remembered channel heads and yank lists (.lifecycle), which a verification updates even when
# it, or the extraction after it, is refused.
store_snapshot() {
	local store=$1
	(cd "$store" && find . \( -path ./.locks -o -path ./.tlog -o -path ./.lifecycle \) -prune -o -printf '%p %y %m %s\n' | sort
		find . \( -path ./.locks -o -path ./.tlog -o -path ./.lifecycle \) -prune -o -type f -print0 | sort -z | xargs -0 -r sha256sum)
}

# layer_digests REF: the layer digests of REF (this platform's manifest), one per line.
layer_digests() {
	skopeo inspect --cert-dir "$TCDIST_REGISTRY_CERT_DIR" --authfile "$REGISTRY_AUTH_FILE" "docker://$1" |
		python3 -c 'import json,sys; print("\n".join(json.load(sys.stdin)["Layers"]))'
}

# copy_image SRC DST: the release SRC copied to DST in the stack registry, digests preserved,
# without its signatures (referrers are not copied).
copy_image() {
	skopeo copy --quiet --all --preserve-digests \
		--src-cert-dir "$TCDIST_REGISTRY_CERT_DIR" --src-authfile "$REGISTRY_AUTH_FILE" \
		--dest-cert-dir "$TCDIST_REGISTRY_CERT_DIR" --dest-authfile "$REGISTRY_AUTH_FILE" \
		"docker://$1" "docker://$2" >&2
}

# Pushes an OCI layout's release to the stack registry, digests preserved, unsigned.
push_layout_unsigned() {
	local layout=$1 tag=$2 ref=$3
	skopeo copy --quiet --all --preserve-digests \
		--dest-cert-dir "$TCDIST_REGISTRY_CERT_DIR" --dest-authfile "$REGISTRY_AUTH_FILE" \
		"oci:$layout:$tag" "docker://$ref" >&2
}

# Pushes an OCI layout's release and signs it with the stack's signer, so only what the
# test made hostile in its content can be refused.
push_layout() {
	local layout=$1 tag=$2 ref=$3
	push_layout_unsigned "$layout" "$tag" "$ref"
	"$DISTD" sign "$ref" >/dev/null
}

# The registry's storage file for a blob.
registry_blob_file() {
	local hex=${1#sha256:}
	echo "$TCDIST_STACK_DIR/registry/data/docker/registry/v2/blobs/sha256/${hex:0:2}/$hex/data"
}

# binary_platform FILE: the OS/ARCH an executable is built for, read from its header (ELF
# e_machine, Mach-O cputype); fails for anything else.
binary_platform() {
	python3 - "$1" <<'PY'
import struct, sys
data = open(sys.argv[1], "rb").read(20)
if data[:4] == b"\x7fELF":
    machine = struct.unpack("<H", data[18:20])[0]
    print({62: "linux/amd64", 183: "linux/arm64"}.get(machine, f"linux/e_machine-{machine}"))
elif data[:4] == b"\xcf\xfa\xed\xfe":
    cputype = struct.unpack("<I", data[4:8])[0]
    print({0x01000007: "darwin/amd64", 0x0100000C: "darwin/arm64"}.get(cputype, f"darwin/cputype-{cputype:#x}"))
else:
    sys.exit(f"{sys.argv[1]} is neither ELF nor 64-bit Mach-O")
PY
}
