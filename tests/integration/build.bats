#!/usr/bin/env bats
# distd build: patch this machine's Go source, run make.bash, check the toolchain it made
# (version, X_GO_RUNTIME_ROOT, TOOLCHAIN.json), publish and pull it, and rebuild it from
# nothing to check that the tree is reproducible.
#
# The first build is cached under ~/.cache/tcdist/distd (keyed by the build's input digest:
# source, patches, config, bootstrap), so a second run of this suite does not run make.bash
# for it. The reproducibility test always runs a full build (--no-cache).

bats_require_minimum_version 1.5.0

setup_file() {
	load helpers
	export WORK=$TCDIST_TEST_WORK/build
	mkdir -p "$WORK"
	export GO_SRC BUILD_CACHE TREE=$WORK/tree
	GO_SRC=$(GOTOOLCHAIN=local go env GOROOT)
	BUILD_CACHE=${XDG_CACHE_HOME:-$HOME/.cache}/tcdist/distd
	nice -n 10 "$DISTD" build --go-root "$GO_SRC" --out "$TREE" --cache-dir "$BUILD_CACHE" \
		>"$WORK/build1.out" 2>"$WORK/build1.log" || {
		tail -n 50 "$WORK/build1.log" >&3
		return 1
	}
}

setup() {
	load helpers
	# The toolchain under test decides its own settings: nothing from the host's Go setup.
	unset GOROOT GOPATH GOFLAGS GOEXPERIMENT X_GO_RUNTIME_ROOT
	export GOTOOLCHAIN=local GOPROXY=off GOCACHE=$WORK/gocache GOPATH=$WORK/gopath
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
		X_GO_RUNTIME_ROOT=$bad run --separate-stderr "$TREE/bin/go" env GOROOT
		[ "$status" -eq 0 ]
		[ "$output" = "$TREE" ]
		[ "${#stderr_lines[@]}" -eq 1 ]
		[[ ${stderr_lines[0]} == "go: ignoring X_GO_RUNTIME_ROOT=$bad: "* ]]
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

@test "expensive: a second build from nothing in another work dir gives a byte-identical tree" {
	nice -n 10 "$DISTD" build --go-root "$GO_SRC" --out "$WORK/tree2" --no-cache \
		--work-dir "$WORK/work2" --cache-dir "$WORK/cache2" >"$WORK/build2.out" 2>"$WORK/build2.log" || {
		tail -n 50 "$WORK/build2.log"
		false
	}
	grep -q '\[make.bash\]' "$WORK/build2.log"
	diff -r "$TREE" "$WORK/tree2"
	diff <(cd "$TREE" && find . -printf '%p %y %m\n' | sort) <(cd "$WORK/tree2" && find . -printf '%p %y %m\n' | sort)
	rm -rf "$WORK/work2"
}
