#!/usr/bin/env bats
# distd build: patch this machine's Go source, run make.bash, check the toolchain it made
# (version, X_GO_RUNTIME_ROOT, TOOLCHAIN.json), publish and pull it, and rebuild it from
# nothing (distd rebuild) to check that the release is reproducible and co-signed.
#
# The first build is cached under ~/.cache/tcdist/distd (keyed by what make.bash compiles:
# source, patches, config without go.env, bootstrap), so a second run of this suite does not
# run make.bash for it. The reproducibility test always runs a full build (--no-cache).
#
# The cross build to the other linux architecture (and, with TCDIST_TEST_DARWIN=1, the one to
# darwin/arm64: one cross build covers the mechanism, a second costs a make.bash) starts with
# the suite, in the background and at the lowest priority, and its test waits for it:
# make.bash leaves a core idle at times (links, cmd/dist's sequential steps, the script tests'
# runs), which it takes, instead of running alone after the host's build and the rebuild. It
# also writes the host's tree its make.bash built (--host-out), which the suite checks is the
# host build's, byte for byte: a line's cross build gives its host's tree (docs/cli.md).

bats_require_minimum_version 1.5.0

setup_file() {
	load helpers
	export WORK=$TCDIST_TEST_WORK/build
	mkdir -p "$WORK"
	export GO_SRC BUILD_CACHE TREE=$WORK/tree OTHER
	GO_SRC=$(GOTOOLCHAIN=local go env GOROOT)
	BUILD_CACHE=${XDG_CACHE_HOME:-$HOME/.cache}/tcdist/distd
	# The other linux architecture; none when this host is neither (its tests skip).
	case $(uname -m) in
	x86_64) OTHER=linux/arm64 ;;
	aarch64) OTHER=linux/amd64 ;;
	*) OTHER= ;;
	esac
	if [[ -n $OTHER ]]; then
		start_build cross "$WORK/tree-other" --platform "$OTHER" --host-out "$WORK/tree-host-from-cross"
		[[ -z ${TCDIST_TEST_DARWIN:-} ]] || start_build darwin "$WORK/tree-darwin" --platform darwin/arm64
	fi
	nice -n 10 "$DISTD" build --go-root "$GO_SRC" --out "$TREE" --cache-dir "$BUILD_CACHE" \
		>"$WORK/build1.out" 2>"$WORK/build1.log" || {
		tail -n 50 "$WORK/build1.log" >&3
		return 1
	}
}

# The background builds that still run (a test failed before it waited for them).
teardown_file() {
	local name pgid
	for name in cross darwin; do
		[[ -f $WORK/$name.pgid && ! -f $WORK/$name.status ]] || continue
		pgid=$(cat "$WORK/$name.pgid")
		kill -- "-$pgid" 2>/dev/null || true
	done
}

# start_build NAME OUT ARGS...: distd build of this machine's Go source into OUT with ARGS, in
# the background, at nice 19, in a process group of its own (its id in NAME.pgid). Its stdout
# goes to NAME.out, its log to NAME.log, and its exit status to NAME.status when it ends.
start_build() {
	local name=$1 out=$2
	shift 2
	rm -f "$WORK/$name".{out,log,status,pgid}
	(
		setsid nice -n 19 "$DISTD" build --go-root "$GO_SRC" --out "$out" --cache-dir "$BUILD_CACHE" "$@" \
			>"$WORK/$name.out" 2>"$WORK/$name.log" </dev/null &
		echo $! >"$WORK/$name.pgid"
		rc=0
		wait $! || rc=$?
		echo "$rc" >"$WORK/$name.status"
	) >/dev/null 2>&1 3>&- &
	echo $! >"$WORK/$name.waiter"
}

# wait_build NAME: wait until start_build NAME has ended; fail with its log's tail when the
# build failed.
wait_build() {
	local name=$1 waiter
	waiter=$(cat "$WORK/$name.waiter")
	while [[ ! -f $WORK/$name.status ]] && kill -0 "$waiter" 2>/dev/null; do
		sleep 1
	done
	if [[ ! -s $WORK/$name.status ]]; then
		echo "the $name build ended without an exit status"
		return 1
	fi
	if [[ $(cat "$WORK/$name.status") != 0 ]]; then
		tail -n 50 "$WORK/$name.log"
		return 1
	fi
}

setup() {
	load helpers
	# The toolchain under test decides its own settings: nothing from the host's Go setup.
	unset GOROOT GOPATH GOMODCACHE GOFLAGS GOEXPERIMENT X_GO_RUNTIME_ROOT
	export GOTOOLCHAIN=local GOPROXY=off GOCACHE=$WORK/gocache GOPATH=$WORK/gopath
}

# assert_override_ignored VALUE: go warns once about X_GO_RUNTIME_ROOT=VALUE and uses its own root.
assert_override_ignored() {
	X_GO_RUNTIME_ROOT=$1 run --separate-stderr "$TREE/bin/go" env GOROOT
	[ "$status" -eq 0 ]
	[ "$output" = "$TREE" ]
	[ "${#stderr_lines[@]}" -eq 1 ]
	[[ ${stderr_lines[0]} == "go: ignoring X_GO_RUNTIME_ROOT=$1: "* ]]
}

# A module whose go.mod has go and toolchain lines, and a main that prints runtime.GOROOT().
make_module() {
	local dir=$1 toolchain=$2
	mkdir -p "$dir"
	printf 'module example.com/hello\n\ngo 1.26\n\ntoolchain %s\n' "$toolchain" >"$dir/go.mod"
	cat >"$dir/main.go" <<-'EOF'
		package main

		import (
			"fmt"
			"runtime"
		)

		func main() { fmt.Println(runtime.GOROOT()) }
	EOF
}

@test "build prints the tree's path and go version shows the customization" {
	[ "$(tail -n1 "$WORK/build1.out")" = "$TREE" ]
	run --separate-stderr "$TREE/bin/go" version
	[ "$status" -eq 0 ]
	[[ $output =~ ^go\ version\ go1\.26\.[0-9]+-tc\.1\ linux/amd64$ ]]
	[ "$(head -n1 "$TREE/VERSION")" = "$(head -n1 "$GO_SRC/VERSION")-tc.1" ]
}

@test "a module with go 1.26 and toolchain lines tidies, builds and runs with the toolchain" {
	upstream=$(head -n1 "$GO_SRC/VERSION")
	for toolchain in "$upstream" "$upstream-tc.1"; do
		mod=$WORK/mod-$toolchain
		make_module "$mod" "$toolchain"
		(cd "$mod" && "$TREE/bin/go" mod tidy && "$TREE/bin/go" build -o hello .)
		[ "$("$mod/hello")" = "$TREE" ]
		grep -qx "toolchain $toolchain" "$mod/go.mod"
	done
}

@test "go.env bakes GOTOOLCHAIN=local and keeps upstream's defaults" {
	grep -qx 'GOTOOLCHAIN=local' "$TREE/go.env"
	unset GOTOOLCHAIN GOPROXY
	[ "$(GOENV=off "$TREE/bin/go" env GOTOOLCHAIN)" = local ]
	[ "$(GOENV=off "$TREE/bin/go" env GOPROXY)" = "$(GOENV=off GOTOOLCHAIN=local go env GOPROXY)" ]
}

# tree_state DIR: every path of DIR with its type, mode, size and mtime (a symlink: its target),
# then every file's digest.
tree_state() {
	(cd "$1" && {
		find . ! -type l -printf '%p %y %m %s %T@\n'
		find . -type l -printf '%p %y %l\n'
	} | sort && find . -type f -print0 | sort -z | xargs -0 sha256sum)
}

@test "a build that differs only in go.env defaults copies the compiled tree and bakes its own go.env" {
	printf 'GOFLAGS=-buildvcs=false\nGOPROXY=off\n' >"$WORK/env-only.env"
	run --separate-stderr "$DISTD" build --go-root "$GO_SRC" --out "$WORK/tree-env" \
		--cache-dir "$BUILD_CACHE" --config "$WORK/env-only.env"
	[ "$status" -eq 0 ]
	[[ $stderr == *"reusing the tree built before"* ]]
	[[ $stderr != *"running make.bash"* ]]
	unset GOFLAGS GOPROXY
	[ "$(GOENV=off "$WORK/tree-env/bin/go" env GOFLAGS)" = -buildvcs=false ]
	[ "$(GOENV=off "$WORK/tree-env/bin/go" env GOPROXY)" = off ]
	python3 -c '
import json, sys
env = json.load(open(sys.argv[1]))["go_env"]
assert env["GOFLAGS"] == "-buildvcs=false" and env["GOPROXY"] == "off", env' "$WORK/tree-env/TOOLCHAIN.json"
	# Everything else is the first build's tree; and baking its defaults again gives that tree
	# back, modes and mtimes included.
	diff <(tree_state "$TREE" | grep -v -e ' \./go\.env$' -e ' \./TOOLCHAIN\.json$' -e '^\./go\.env ' -e '^\./TOOLCHAIN\.json ') \
		<(tree_state "$WORK/tree-env" | grep -v -e ' \./go\.env$' -e ' \./TOOLCHAIN\.json$' -e '^\./go\.env ' -e '^\./TOOLCHAIN\.json ')
	"$DISTD" build --go-root "$GO_SRC" --out "$WORK/tree-back" --cache-dir "$BUILD_CACHE" 2>/dev/null
	diff <(tree_state "$TREE") <(tree_state "$WORK/tree-back")
}

@test "go env GOROOT follows a valid X_GO_RUNTIME_ROOT and warns once about an invalid one" {
	copy=$WORK/root-copy
	[ -d "$copy" ] || cp -a "$TREE" "$copy"

	run --separate-stderr "$TREE/bin/go" env GOROOT
	[ "$status" -eq 0 ]
	[ "$output" = "$TREE" ]
	[ -z "$stderr" ]

	X_GO_RUNTIME_ROOT=$copy run --separate-stderr "$TREE/bin/go" env GOROOT
	[ "$status" -eq 0 ]
	[ "$output" = "$copy" ]
	[ -z "$stderr" ]

	for bad in "$WORK/no-such-root" "relative/go"; do
		assert_override_ignored "$bad"
	done
}

@test "runtime.GOROOT() of a program built with the toolchain follows the override" {
	copy=$WORK/root-copy
	[ -d "$copy" ] || cp -a "$TREE" "$copy"
	mod=$WORK/mod-runtime
	make_module "$mod" "$(head -n1 "$GO_SRC/VERSION")"
	(cd "$mod" && "$TREE/bin/go" build -o hello .)
	[ "$("$mod/hello")" = "$TREE" ]
	[ "$(X_GO_RUNTIME_ROOT=$copy "$mod/hello")" = "$copy" ]
	[ "$(X_GO_RUNTIME_ROOT=$WORK/no-such-root "$mod/hello")" = "$TREE" ]
	[ "$(X_GO_RUNTIME_ROOT=relative/go "$mod/hello")" = "$TREE" ]
}

@test "X_GO_RUNTIME_ROOT matrix: another version, not a root; go list; go through a symlink or copied" {
	copy=$WORK/root-copy
	[ -d "$copy" ] || cp -a "$TREE" "$copy"
	other=$WORK/root-other-version
	if [ ! -d "$other" ]; then
		cp -a "$TREE" "$other"
		chmod u+w "$other/VERSION"
		sed -i '1s/.*/go1.25.99/' "$other/VERSION"
	fi
	notroot=$WORK/not-a-root
	mkdir -p "$notroot/src"
	for bad in "$other" "$notroot"; do
		assert_override_ignored "$bad"
	done

	run --separate-stderr "$TREE/bin/go" list -f '{{.Dir}}' fmt
	[ "$output" = "$TREE/src/fmt" ]
	X_GO_RUNTIME_ROOT=$copy run --separate-stderr "$TREE/bin/go" list -f '{{.Dir}}' fmt
	[ "$output" = "$copy/src/fmt" ]

	mkdir -p "$WORK/links" "$WORK/copied"
	ln -sfn "$TREE/bin/go" "$WORK/links/go"
	cp "$TREE/bin/go" "$WORK/copied/go"
	[ "$("$WORK/links/go" env GOROOT)" = "$TREE" ]
	[ "$(X_GO_RUNTIME_ROOT=$copy "$WORK/links/go" env GOROOT)" = "$copy" ]
	[ "$(X_GO_RUNTIME_ROOT=$copy "$WORK/copied/go" env GOROOT)" = "$copy" ]
}

@test "go mod download from a local file proxy and a build with the dependency, under the override" {
	copy=$WORK/root-copy
	[ -d "$copy" ] || cp -a "$TREE" "$copy"
	python3 - "$WORK/proxy/example.com/dep/@v" <<-'EOF'
		import json, os, sys, zipfile
		d = sys.argv[1]
		os.makedirs(d, exist_ok=True)
		mod = "module example.com/dep\n\ngo 1.26\n"
		open(f"{d}/list", "w").write("v1.0.0\n")
		open(f"{d}/v1.0.0.info", "w").write(json.dumps({"Version": "v1.0.0", "Time": "2026-01-01T00:00:00Z"}))
		open(f"{d}/v1.0.0.mod", "w").write(mod)
		with zipfile.ZipFile(f"{d}/v1.0.0.zip", "w") as z:
		    z.writestr("example.com/dep@v1.0.0/go.mod", mod)
		    z.writestr("example.com/dep@v1.0.0/dep.go", "package dep\n\nconst Answer = 42\n")
	EOF
	mod=$WORK/mod-proxy
	mkdir -p "$mod"
	printf 'module example.com/app\n\ngo 1.26\n\nrequire example.com/dep v1.0.0\n' >"$mod/go.mod"
	printf 'package main\n\nimport (\n\t"fmt"\n\n\t"example.com/dep"\n)\n\nfunc main() { fmt.Println(dep.Answer) }\n' >"$mod/main.go"
	export X_GO_RUNTIME_ROOT=$copy GOPROXY=file://$WORK/proxy GOSUMDB=off GOFLAGS=-mod=mod
	(cd "$mod" && "$TREE/bin/go" mod download example.com/dep && "$TREE/bin/go" build -o app .)
	[ "$("$mod/app")" = 42 ]
	[ -f "$GOPATH/pkg/mod/cache/download/example.com/dep/@v/v1.0.0.zip" ]
}

@test "expensive: upstream's root script tests and the override's own pass on the patched tree" {
	cd "$TREE/src"
	run --separate-stderr nice -n 10 "$TREE/bin/go" test cmd/go -run 'Script/goroot' -count=1
	echo "$output"
	echo "$stderr" | tail -n 20
	[ "$status" -eq 0 ]
	[[ $output == "ok"*"cmd/go"* ]]
}

@test "TOOLCHAIN.json records the version, the patch series with digests and the source" {
	python3 - "$TREE/TOOLCHAIN.json" "$TCDIST_TOP/distd/patches/go1.26" "$GO_SRC/VERSION" <<-'EOF'
		import hashlib, json, os, sys
		meta = json.load(open(sys.argv[1]))
		series = sorted(p for p in os.listdir(sys.argv[2]) if p.endswith(".patch"))
		want = [{"name": p, "digest": "sha256:" + hashlib.sha256(open(os.path.join(sys.argv[2], p), "rb").read()).hexdigest()} for p in series]
		assert meta["patches"] == want, meta["patches"]
		upstream = open(sys.argv[3]).readline().strip()
		assert meta["go_version"] == upstream, meta
		assert meta["version"] == upstream[2:] + "-tc.1", meta
		assert (meta["goos"], meta["goarch"]) == ("linux", "amd64"), meta
		assert meta["source_digest"].startswith("sha256:"), meta
		assert meta["go_env"]["GOTOOLCHAIN"] == "local", meta
		assert meta["goexperiment"] == "", meta
	EOF
	run ! grep -rqs "$WORK" "$TREE/TOOLCHAIN.json" "$TREE/go.env" "$TREE/VERSION"
}

@test "the tree holds what upstream's distpack ships: no build cache, only the listed tools" {
	[ ! -e "$TREE/pkg/obj" ]
	[ ! -e "$TREE/src/cmd/dist/dist" ]
	[ ! -e "$TREE/VERSION.cache" ]
	[ "$(ls "$TREE/bin")" = "$(printf 'go\ngofmt')" ]
	[ "$(ls "$TREE/pkg/tool/linux_amd64" | tr '\n' ' ')" = "asm cgo compile cover fix link preprofile vet " ]
	[ -d "$TREE/pkg/include" ]
}

@test "a config file with an unknown key is refused before anything is built" {
	printf 'GOPATH=/x\n' >"$WORK/bad.env"
	run --separate-stderr "$DISTD" build --go-root "$GO_SRC" --out "$WORK/bad-tree" --config "$WORK/bad.env"
	[ "$status" -ne 0 ]
	[[ $stderr == *'unknown key "GOPATH"'* ]]
	[ ! -e "$WORK/bad-tree" ]
}

@test "publish the built tree, pull it, and run go version from the pulled root" {
	ref=$TCDIST_REGISTRY/toolchains/go:it-build
	run --separate-stderr "$DISTD" publish "$TREE" --ref "$ref"
	[ "$status" -eq 0 ]
	digest=${lines[-1]}
	[[ $digest =~ ^sha256:[0-9a-f]{64}$ ]]
	root=$("$TCVERIFY" pull "$ref" --store "$WORK/store")
	diff -r "$TREE" "$root"
	run "$root/bin/go" version
	[ "$status" -eq 0 ]
	[ "$output" = "$("$TREE/bin/go" version)" ]
	[ "$("$root/bin/go" env GOROOT)" = "$root" ]
}

@test "expensive: distd rebuild from nothing reproduces the release and co-signs it; a threshold of two then passes" {
	# A repository of its own on every run: the stack's registry keeps earlier co-signatures.
	ref=$TCDIST_REGISTRY/toolchains/rebuild-$(date +%s%N):v1
	digest=$("$DISTD" publish "$TREE" --ref "$ref" 2>/dev/null | tail -n1)
	# The builder and the rebuilder must both have signed.
	sed "s|^signers = .*|signers = { any_of = [ { spiffe_id = \"$TCDIST_SIGNER_ID\" }, { spiffe_id = \"$TCDIST_REBUILDER_ID\" } ] }\nthreshold = 2|" \
		"$STACK_POLICY" >"$WORK/two-signers.toml"
	run --separate-stderr "$TCVERIFY" pull "$ref" --policy "$WORK/two-signers.toml" --store "$WORK/store2"
	[ "$status" -eq 42 ]
	[[ $stderr == *"[signature-threshold]"* ]]
	[[ $stderr == *"requires signatures by 2 distinct signers"* ]]
	# A rebuilder whose patch series is not the release's refuses before building.
	cp -r "$TCDIST_TOP/distd/patches/go1.26" "$WORK/changed-patches"
	first=$(find "$WORK/changed-patches" -name '*.patch' | sort | head -n1)
	printf '\n' >>"$first"
	run --separate-stderr "$DISTD" rebuild "$ref" --builder-id "$TCDIST_SIGNER_ID" \
		--go-root "$GO_SRC" --patches "$WORK/changed-patches" --cache-dir "$WORK/cache2"
	[ "$status" -eq 1 ]
	[[ $stderr == *"the patch series $WORK/changed-patches is ["* ]]
	[[ $stderr == *"not co-signing"* ]]
	# From nothing, in another work dir: the same index digest, so it co-signs.
	run --separate-stderr nice -n 10 "$DISTD" rebuild "$ref" --builder-id "$TCDIST_SIGNER_ID" \
		--go-root "$GO_SRC" --no-cache --work-dir "$WORK/work2" --cache-dir "$WORK/cache2"
	if [ "$status" -ne 0 ]; then
		printf '%s\n' "${stderr_lines[@]: -30}"
		false
	fi
	[ "${lines[-1]}" = "$digest" ]
	[[ $stderr == *"[make.bash]"* ]]
	[[ $stderr == *"the rebuild has the release's digest $digest; co-signing"* ]]
	run --separate-stderr "$TCVERIFY" pull "$ref" --policy "$WORK/two-signers.toml" --store "$WORK/store2" --json
	[ "$status" -eq 0 ]
	python3 - "$output" "$TCDIST_SIGNER_ID" "$TCDIST_REBUILDER_ID" <<'PY'
import json, sys
out = json.loads(sys.argv[1])
signers = [out["signature"]["signer"]] + [c["signer"] for c in out["cosignatures"]]
assert sorted(signers) == sorted(sys.argv[2:]), signers
PY
	rm -rf "$WORK/work2"
}

@test "expensive: a cross build has the target's binaries only; with the host's tree it is one release whose platforms each verify" {
	[[ -n $OTHER ]] || skip "cross builds are checked from linux/amd64 and linux/arm64 hosts"
	other=$OTHER
	dir=${other/\//_}
	# Started by setup_file.
	wait_build cross
	grep -qF "go version $(head -n1 "$TREE/VERSION") $other" "$WORK/cross.log"
	for f in bin/go bin/gofmt "pkg/tool/$dir/compile" "pkg/tool/$dir/link"; do
		[ "$(binary_platform "$WORK/tree-other/$f")" = "$other" ]
	done
	[ "$(binary_platform "$TREE/bin/go")" = "$(go env GOOS)/$(go env GOARCH)" ]
	# Nothing of the host's toolchain: no second bin/ directory, no host tools.
	[ ! -e "$WORK/tree-other/bin/$dir" ]
	[ "$(ls "$WORK/tree-other/pkg/tool")" = "$dir" ]
	python3 - "$WORK/tree-other/TOOLCHAIN.json" "$other" <<'PY'
import json, sys
meta = json.load(open(sys.argv[1]))
assert "%s/%s" % (meta["goos"], meta["goarch"]) == sys.argv[2], meta
PY
	# Its make.bash built the host's toolchain first, as the host's build does: the host's tree
	# it wrote is the host build's, byte for byte, modes included.
	diff -r --no-dereference "$TREE" "$WORK/tree-host-from-cross"
	snapshot() { (cd "$1" && find . -printf '%p %y %m %s %l\n' | sort); }
	[ "$(snapshot "$TREE")" = "$(snapshot "$WORK/tree-host-from-cross")" ]
	ref=$TCDIST_REGISTRY/toolchains/go-multi-$(date +%s%N):v1
	run --separate-stderr "$DISTD" publish "$TREE" "$WORK/tree-other" --ref "$ref"
	[ "$status" -eq 0 ]
	[[ $stderr == *"(2 platform(s))"* ]]
	for platform in "$(go env GOOS)/$(go env GOARCH)" "$other"; do
		run --separate-stderr "$TCVERIFY" verify "$ref" --platform "$platform" --store "$WORK/store-multi"
		[ "$status" -eq 0 ]
		[[ $output == *" $platform verified: "* ]]
	done
	root=$("$TCVERIFY" pull "$ref" --platform "$other" --store "$WORK/store-multi")
	[ "$(binary_platform "$root/bin/go")" = "$other" ]
	diff -r "$WORK/tree-other" "$root"
}

@test "expensive: a darwin/arm64 cross build has Mach-O arm64 binaries only" {
	[[ -n $OTHER ]] || skip "cross builds are checked from linux/amd64 and linux/arm64 hosts"
	[[ -n ${TCDIST_TEST_DARWIN:-} ]] || skip "a second cross build runs with TCDIST_TEST_DARWIN=1 only"
	# Started by setup_file.
	wait_build darwin
	grep -qF "go version $(head -n1 "$TREE/VERSION") darwin/arm64" "$WORK/darwin.log"
	for f in bin/go bin/gofmt pkg/tool/darwin_arm64/compile pkg/tool/darwin_arm64/link; do
		[ "$(binary_platform "$WORK/tree-darwin/$f")" = darwin/arm64 ]
	done
	[ ! -e "$WORK/tree-darwin/bin/darwin_arm64" ]
	[ "$(ls "$WORK/tree-darwin/pkg/tool")" = darwin_arm64 ]
	python3 - "$WORK/tree-darwin/TOOLCHAIN.json" <<'PY'
import json, sys
meta = json.load(open(sys.argv[1]))
assert (meta["goos"], meta["goarch"]) == ("darwin", "arm64"), meta
PY
}

@test "distd release builds a line's platforms (cached), publishes one release tagged with its version, and feeds its channels" {
	case $(uname -m) in
	x86_64) other=linux/arm64 ;;
	aarch64) other=linux/amd64 ;;
	*) skip "cross builds are checked from linux/amd64 and linux/arm64 hosts" ;;
	esac
	host=$(go env GOOS)/$(go env GOARCH)
	source_digest=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["source_digest"])' "$TREE/TOOLCHAIN.json")
	repo=$TCDIST_REGISTRY/toolchains/line-$(date +%s%N)
	cat >"$WORK/lines.toml" <<EOF
[[line]]
name = "go1.26"
repository = "$repo"
go_source = "$GO_SRC"
go_source_digest = "$source_digest"
patches = "$TCDIST_TOP/distd/patches/go1.26"
platforms = ["$host", "$other"]
channels = ["stable", "canary"]
EOF
	# The cross build of the test above is in the cache: nothing is built again.
	run --separate-stderr "$DISTD" release go1.26 --config "$WORK/lines.toml" --cache-dir "$BUILD_CACHE"
	[ "$status" -eq 0 ]
	digest=${lines[-1]}
	[[ $stderr == *"line \"go1.26\": reused go version "*" $host"* ]]
	[[ $stderr == *"line \"go1.26\": reused go version "*" $other"* ]]
	version=$(head -n1 "$TREE/VERSION")
	for ref in "$repo:${version#go}" "$repo:stable" "$repo:canary"; do
		for platform in "$host" "$other"; do
			run --separate-stderr "$TCVERIFY" verify "$ref" --platform "$platform" --store "$WORK/store-line" --json
			[ "$status" -eq 0 ]
			[ "$(python3 -c 'import json,sys; print(json.loads(sys.argv[1])["digest"])' "$output")" = "$digest" ]
		done
	done
	# A source that is not the pinned one is refused before anything is built.
	zeros=$(printf '%064d' 0)
	sed -i "s|^go_source_digest = .*|go_source_digest = \"sha256:$zeros\"|" "$WORK/lines.toml"
	run --separate-stderr "$DISTD" release go1.26 --config "$WORK/lines.toml" --cache-dir "$BUILD_CACHE"
	[ "$status" -ne 0 ]
	[[ $stderr == *"but line \"go1.26\" pins sha256:$zeros; nothing was built"* ]]
	run --separate-stderr "$DISTD" release nosuch --config "$WORK/lines.toml"
	[ "$status" -eq 2 ]
	[[ $stderr == *'has no line "nosuch" (it has: go1.26)'* ]]
}
