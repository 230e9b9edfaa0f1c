#!/usr/bin/env bats
# Publish and pull against the real registry of the local stack.

bats_require_minimum_version 1.5.0

setup_file() {
	load helpers
	export WORK=$TCDIST_TEST_WORK/publish_pull
	mkdir -p "$WORK"
	cp -a "$(go env GOROOT)" "$WORK/goroot"
	make_small_tree "$WORK/small"
}

setup() {
	load helpers
}

@test "publish a copy of this machine's Go root, pull it: same tree, and go version runs" {
	ref=$TCDIST_REGISTRY/toolchains/go:it-goroot
	run --separate-stderr "$DISTD" publish "$WORK/goroot" --ref "$ref"
	[ "$status" -eq 0 ]
	digest=${lines[-1]}
	[[ $digest =~ ^sha256:[0-9a-f]{64}$ ]]

	run --separate-stderr "$TCVERIFY" pull "$ref" --store "$WORK/store"
	[ "$status" -eq 0 ]
	[ "${#lines[@]}" -eq 1 ]
	root=${lines[0]}
	[ "$root" = "$WORK/store/${digest/:/-}/linux-amd64/toolchain" ]

	diff -r -x TOOLCHAIN.json "$WORK/goroot" "$root"
	diff <(cd "$WORK/goroot" && find . -type f -perm -u+x | sort) <(cd "$root" && find . -type f -perm -u+x | sort)
	diff <(cd "$WORK/goroot" && find . -type l -printf '%p %l\n' | sort) <(cd "$root" && find . -type l -printf '%p %l\n' | sort)
	run "$root/bin/go" version
	[ "$status" -eq 0 ]
	[[ $output == "go version go1."* ]]
	# The store entry is read-only (checked by mode: the tests may run as root).
	[ "$(stat -c %a "$root/VERSION")" = 444 ]
	[ "$(stat -c %a "$root/bin/go")" = 555 ]
	[ "$(stat -c %a "$root/src")" = 555 ]
}

@test "republishing the same tree uploads no blob and prints the same digest" {
	ref=$TCDIST_REGISTRY/toolchains/go:it-goroot
	first=$("$DISTD" publish "$WORK/goroot" --ref "$ref" | tail -n1)
	before=$(count_blob_uploads)
	second=$("$DISTD" publish "$WORK/goroot" --ref "$ref" | tail -n1)
	# From an empty layer cache too: the layers are rebuilt byte for byte.
	third=$("$DISTD" publish "$WORK/goroot" --ref "$ref" --cache-dir "$WORK/fresh-cache" | tail -n1)
	after=$(count_blob_uploads)
	[ "$first" = "$second" ]
	[ "$first" = "$third" ]
	[ "$before" -eq "$after" ]
}

@test "symlinks and exec bits survive, a tree with other mtimes and modes gives the same digest" {
	cp -a "$WORK/small" "$WORK/small-touched"
	find "$WORK/small-touched" -exec touch -h -d '2001-02-03 04:05:06' {} +
	chmod 600 "$WORK/small-touched/src/fmt/print.go"
	a=$("$DISTD" publish "$WORK/small" --ref "$TCDIST_REGISTRY/toolchains/small:a" | tail -n1)
	b=$("$DISTD" publish "$WORK/small-touched" --ref "$TCDIST_REGISTRY/toolchains/small:b" --cache-dir "$WORK/other-cache" | tail -n1)
	[ "$a" = "$b" ]
	root=$("$TCVERIFY" pull "$TCDIST_REGISTRY/toolchains/small:a" --store "$WORK/store")
	[ "$(readlink "$root/lib/fmt-link")" = "../src/fmt" ]
	[ -x "$root/bin/go" ]
	[ ! -x "$root/src/fmt/print.go" ]
	[ -d "$root/lib/empty" ]
	grep -q '"go_version": "go1.26.8"' "$root/TOOLCHAIN.json"
}

@test "skopeo inspects and copies the release (it is a valid OCI image)" {
	ref=$TCDIST_REGISTRY/toolchains/small:a
	run skopeo inspect --cert-dir "$TCDIST_REGISTRY_CERT_DIR" --authfile "$REGISTRY_AUTH_FILE" --raw "docker://$ref"
	[ "$status" -eq 0 ]
	[[ $output == *'"mediaType":"application/vnd.oci.image.index.v1+json"'* ]]
	run skopeo inspect --cert-dir "$TCDIST_REGISTRY_CERT_DIR" --authfile "$REGISTRY_AUTH_FILE" "docker://$ref"
	[ "$status" -eq 0 ]
	[[ $output == *'"Architecture": "amd64"'* ]]
	[[ $output == *'GOROOT=/toolchain'* ]]
	skopeo copy --quiet --all --preserve-digests --src-cert-dir "$TCDIST_REGISTRY_CERT_DIR" \
		--src-authfile "$REGISTRY_AUTH_FILE" "docker://$ref" "oci:$WORK/skopeo-copy:a"
	# skopeo copies the release, not its signatures: the copy is unsigned until signed again.
	run "$TCVERIFY" pull "oci-layout:$WORK/skopeo-copy:a" --store "$WORK/store"
	[ "$status" -eq 42 ]
	[[ $output == *"[signature-present]"* ]]
	"$DISTD" sign "oci-layout:$WORK/skopeo-copy:a" --repository toolchains/small >/dev/null
	digest=$("$TCVERIFY" pull "oci-layout:$WORK/skopeo-copy:a" --store "$WORK/store" --json | python3 -c 'import json,sys; print(json.load(sys.stdin)["digest"])')
	expected=$("$TCVERIFY" verify "$ref" --json | python3 -c 'import json,sys; print(json.load(sys.stdin)["digest"])')
	[ "$digest" = "$expected" ]
}

@test "gzip layers for old clients" {
	ref=$TCDIST_REGISTRY/toolchains/small:gzip
	"$DISTD" publish "$WORK/small" --ref "$ref" --compression gzip
	manifest=$("$TCVERIFY" verify "$ref" --json | python3 -c 'import json,sys; print(json.load(sys.stdin)["manifest_digest"])')
	run skopeo inspect --cert-dir "$TCDIST_REGISTRY_CERT_DIR" --authfile "$REGISTRY_AUTH_FILE" --raw "docker://${ref%:*}@$manifest"
	[[ $output == *'application/vnd.oci.image.layer.v1.tar+gzip'* ]]
	[[ $output != *'tar+zstd'* ]]
	root=$("$TCVERIFY" pull "$ref" --store "$WORK/store")
	diff -r -x TOOLCHAIN.json "$WORK/small" "$root"
}

@test "OCI layout round trip gives the registry's digest" {
	pushed=$("$DISTD" publish "$WORK/small" --ref "$TCDIST_REGISTRY/toolchains/small:a" | tail -n1)
	written=$("$DISTD" publish "$WORK/small" --ref "$TCDIST_REGISTRY/toolchains/small:a" --oci-layout "$WORK/layout" | tail -n1)
	[ "$pushed" = "$written" ]
	[ -f "$WORK/layout/oci-layout" ]
	root=$("$TCVERIFY" pull "oci-layout:$WORK/layout:a" --store "$WORK/layout-store")
	diff -r -x TOOLCHAIN.json "$WORK/small" "$root"
	[ "$root" = "$WORK/layout-store/${pushed/:/-}/linux-amd64/toolchain" ]
}

@test "pull --json reports digest, root and what was verified" {
	run --separate-stderr "$TCVERIFY" pull "$TCDIST_REGISTRY/toolchains/small:a" --store "$WORK/store" --json
	[ "$status" -eq 0 ]
	python3 - "$output" <<'PY'
import json, sys
out = json.loads(sys.argv[1])
assert out["digest"].startswith("sha256:"), out
assert out["root"].endswith("/toolchain"), out
assert out["checks"] == ["digest-binding", "structure", "signature", "transparency-log", "lifecycle"], out
assert isinstance(out["signature"]["log"]["log_index"], int), out
assert out["signature"]["signer"] == "spiffe://tcdist.test/distd/signer", out
assert out["signature"]["signed_at"].endswith("Z"), out
assert out["signature"]["timestamp_authority"] == "stack", out
assert out["downloaded"] is False, out
PY
}

@test "pull --json and verify --json describe the release in one schema, version 1" {
	ref=$TCDIST_REGISTRY/toolchains/small:a
	pull=$("$TCVERIFY" pull "$ref" --store "$WORK/store" --json)
	verify=$("$TCVERIFY" verify "$ref" --store "$WORK/store" --json)
	python3 - "$pull" "$verify" <<'PY'
import json, sys
pull, verify = json.loads(sys.argv[1]), json.loads(sys.argv[2])
common = {"version", "reference", "digest", "manifest_digest", "platform", "checks", "signature",
          "cosignatures", "log_freshness", "lifecycle", "rollout"}
assert set(verify) == common, sorted(verify)
assert set(pull) == common | {"root", "downloaded"}, sorted(pull)
assert pull["version"] == 1, pull
for key in common - {"log_freshness"}:
    assert pull[key] == verify[key], (key, pull[key], verify[key])
assert pull["log_freshness"]["status"] == verify["log_freshness"]["status"] == "checked", (pull, verify)
PY
}

@test "settings come from flags, then the environment, then the config file" {
	ref=$TCDIST_REGISTRY/toolchains/small:a
	printf 'policy = "%s"\nstore = "%s"\njobs = 2\n' "$TCVERIFY_POLICY" "$WORK/config-store" >"$WORK/tcverify.toml"
	# The file alone: its policy and store are used.
	run --separate-stderr env -u TCVERIFY_POLICY -u TCVERIFY_STORE TCVERIFY_CONFIG="$WORK/tcverify.toml" \
		"$TCVERIFY" pull "$ref"
	[ "$status" -eq 0 ]
	[[ ${lines[0]} == "$WORK/config-store/"* ]]
	# The environment wins over the file, and a flag over both.
	run --separate-stderr env TCVERIFY_STORE="$WORK/env-store" TCVERIFY_CONFIG="$WORK/tcverify.toml" \
		"$TCVERIFY" pull "$ref"
	[[ ${lines[0]} == "$WORK/env-store/"* ]]
	run --separate-stderr env TCVERIFY_STORE="$WORK/env-store" TCVERIFY_CONFIG="$WORK/tcverify.toml" \
		"$TCVERIFY" pull "$ref" --store "$WORK/flag-store"
	[[ ${lines[0]} == "$WORK/flag-store/"* ]]
	# A misspelt setting, or a config file that is not there, is a configuration error.
	printf 'polcy = "x"\n' >"$WORK/bad.toml"
	run --separate-stderr env TCVERIFY_CONFIG="$WORK/bad.toml" "$TCVERIFY" pull "$ref"
	[ "$status" -eq 2 ]
	[[ $stderr == *"config file $WORK/bad.toml: unknown setting \"polcy\""* ]]
	run --separate-stderr env TCVERIFY_CONFIG="$WORK/missing.toml" "$TCVERIFY" pull "$ref"
	[ "$status" -eq 2 ]
	[[ $stderr == *"TCVERIFY_CONFIG=$WORK/missing.toml names no config file"* ]]
}

@test "a pull by digest of something already in the store fetches no layer" {
	digest=$("$DISTD" publish "$WORK/small" --ref "$TCDIST_REGISTRY/toolchains/small:a" | tail -n1)
	"$TCVERIFY" pull "$TCDIST_REGISTRY/toolchains/small@$digest" --store "$WORK/store" >/dev/null
	manifest=$("$TCVERIFY" verify "$TCDIST_REGISTRY/toolchains/small@$digest" --json | python3 -c 'import json,sys; print(json.load(sys.stdin)["manifest_digest"])')
	layers=$(skopeo inspect --cert-dir "$TCDIST_REGISTRY_CERT_DIR" --authfile "$REGISTRY_AUTH_FILE" --raw \
		"docker://$TCDIST_REGISTRY/toolchains/small@$manifest" | python3 -c 'import json,sys; print(" ".join(l["digest"] for l in json.load(sys.stdin)["layers"]))')
	layer_gets() { local n=0 layer; for layer in $layers; do n=$((n + $(count_blob_gets "$layer"))); done; echo "$n"; }
	before=$(layer_gets)
	"$TCVERIFY" pull "$TCDIST_REGISTRY/toolchains/small@$digest" --store "$WORK/store" >/dev/null
	# The config and the signatures are fetched to verify; no layer is.
	[ "$(layer_gets)" -eq "$before" ]
}

@test "wrong registry password: clear error and exit 2" {
	run --separate-stderr env TCDIST_REGISTRY_PASSWORD=wrong "$TCVERIFY" pull "$TCDIST_REGISTRY/toolchains/small:a" --store "$WORK/store"
	[ "$status" -eq 2 ]
	[[ $stderr == *"refused the credentials"* ]]
	[ -z "$output" ]
}

@test "no credentials for a registry that requires them: exit 2" {
	run --separate-stderr env -u TCDIST_REGISTRY_USERNAME -u TCDIST_REGISTRY_PASSWORD DOCKER_CONFIG="$WORK/no-docker" \
		"$TCVERIFY" pull "$TCDIST_REGISTRY/toolchains/small:a" --store "$WORK/store"
	[ "$status" -eq 2 ]
	[[ $stderr == *"refused the credentials"* ]]
}

@test "credentials from the docker config file alone work" {
	run --separate-stderr env -u TCDIST_REGISTRY_USERNAME -u TCDIST_REGISTRY_PASSWORD \
		"$TCVERIFY" verify "$TCDIST_REGISTRY/toolchains/small:a"
	[ "$status" -eq 0 ]
}

@test "a registry whose certificate is not trusted: refused, exit 3" {
	run --separate-stderr env -u TCDIST_REGISTRY_CA TCDIST_REGISTRY_RETRIES=0 \
		"$TCVERIFY" pull "$TCDIST_REGISTRY/toolchains/small:a" --store "$WORK/store"
	[ "$status" -eq 3 ]
	[[ $stderr == *"certificate"* ]]
}

@test "plain HTTP is refused for a non-loopback registry" {
	run --separate-stderr "$TCVERIFY" pull registry.example:5000/toolchains/go:1 --registry-plain-http --store "$WORK/store"
	[ "$status" -eq 2 ]
	[[ $stderr == *"not a loopback address"* ]]
}

@test "an unknown tag: exit 2 with the reference named" {
	run --separate-stderr "$TCVERIFY" pull "$TCDIST_REGISTRY/toolchains/small:nope" --store "$WORK/store"
	[ "$status" -eq 2 ]
	[[ $stderr == *"toolchains/small:nope"* ]]
}

@test "a platform the release lacks: exit 2 naming what it has" {
	run --separate-stderr "$TCVERIFY" pull "$TCDIST_REGISTRY/toolchains/small:a" --platform linux/riscv64 --store "$WORK/store"
	[ "$status" -eq 2 ]
	[[ $stderr == *"no toolchain for linux/riscv64"* ]]
	[[ $stderr == *"linux/amd64"* ]]
}

@test "tcverify ls lists the store, gc removes leftovers of killed pulls" {
	run --separate-stderr "$TCVERIFY" ls --store "$WORK/store"
	[ "$status" -eq 0 ]
	[[ $output == *"toolchains/small:a"* ]]
	mkdir -p "$WORK/store/.staging/sha256-0000.linux-amd64.abc123/toolchain"
	run --separate-stderr "$TCVERIFY" gc --store "$WORK/store"
	[ "$status" -eq 0 ]
	[[ $output == *"removed"*"sha256-0000.linux-amd64.abc123"* ]]
	[ -z "$(ls -A "$WORK/store/.staging")" ]
}

@test "tcverify env exports the job environment of a pulled toolchain" {
	ref=$TCDIST_REGISTRY/toolchains/go:it-goroot
	root=$("$TCVERIFY" pull "$ref" --store "$WORK/store")
	run --separate-stderr "$TCVERIFY" env "$ref" --store "$WORK/store"
	[ "$status" -eq 0 ]
	[[ $output == *"export X_GO_RUNTIME_ROOT='$root'"* ]]
	[[ $output == *"export GOTOOLCHAIN='local'"* ]]
	run bash -c "eval \"\$1\" && command -v go && go env GOROOT" _ "$output"
	[ "$status" -eq 0 ]
	[ "${lines[0]}" = "$root/bin/go" ]
	[ "${lines[1]}" = "$root" ]
	run --separate-stderr "$TCVERIFY" env "$ref" --store "$WORK/store" --format json
	python3 -c 'import json,sys; assert json.loads(sys.argv[1])["GOROOT"] == sys.argv[2]' "$output" "$root"
}

@test "tcverify env refuses a job whose GOEXPERIMENT differs from the toolchain's baseline" {
	ref=$TCDIST_REGISTRY/toolchains/go:it-goroot
	run --separate-stderr env GOEXPERIMENT=greenteagc "$TCVERIFY" env "$ref" --store "$WORK/store"
	[ "$status" -eq 42 ]
	[[ $stderr == *'GOEXPERIMENT mismatch: the job has "greenteagc", the toolchain was built for ""'* ]]
	[ -z "$output" ]
}

@test "tcverify env of a release that was never pulled: exit 2 with a hint to pull" {
	run --separate-stderr "$TCVERIFY" env "$TCDIST_REGISTRY/toolchains/go:never-pulled" --store "$WORK/store"
	[ "$status" -eq 2 ]
	[[ $stderr == *"run \`tcverify pull"* ]]
}
