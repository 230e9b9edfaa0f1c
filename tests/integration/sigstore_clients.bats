#!/usr/bin/env bats
# The third-party Sigstore clients the suites check tcdist's bundles with (cosign, and
# sigstore-js through tests/lib/sigstore_js_verify.mjs), on bundles made without tcdist's code
# (tests/lib/sigstore_fixture.py): signed with SVIDs the stack's SPIRE server mints,
# timestamped by the stack's TSA, logged in a simulated Rekor v2 log. This pins down what each
# client needs of a bundle and of the signing certificate:
# - cosign demands the codeSigning extended key usage (the SPIRE server's credential composer
#   adds it to the signer's SVIDs only); sigstore-js does not check it.
# - For a DSSE bundle, sigstore-js 3.x accepts a Rekor v2 entry only of kind dsse; cosign v3.1
#   (sigstore-go 1.2) only a hashedrekord over the DSSE PAE; cosign v3.0 (sigstore-go 1.1)
#   either.
# A client that tests/run could not install makes its tests skip with the reason.

bats_require_minimum_version 1.5.0

SIGNER=spiffe://tcdist.test/distd/signer
JOB=spiffe://tcdist.test/ci/job
PREDICATE=https://tcdist.test/fixture/v1

# The fixtures, made once for the file in $FX (see setup_file).
setup_file() {
	load helpers
	export FX=$BATS_FILE_TMPDIR
	DIGEST=$(printf 'tcdist fixture' | sha256sum | cut -c1-64)
	mint "$SIGNER" "$FX/signer"
	mint "$JOB" "$FX/job"
	# Signed by the signer, logged as a dsse entry (sigstore-js) or a hashedrekord over the PAE
	# (cosign); fx2 is another fixture (another log key) for its trusted root.
	fixture "$FX/signer" "$FX/dsse" --entry dsse
	fixture "$FX/signer" "$FX/hr" --entry hashedrekord
	fixture "$FX/signer" "$FX/fx2" --entry dsse
	fixture "$FX/job" "$FX/job-dsse" --entry dsse
	fixture "$FX/job" "$FX/job-hr" --entry hashedrekord
	fixture "$FX/signer" "$FX/dsse-payload" --entry dsse --tamper payload
	fixture "$FX/signer" "$FX/dsse-sig" --entry dsse --tamper signature
	fixture "$FX/signer" "$FX/hr-sig" --entry hashedrekord --tamper signature
}

setup() {
	load helpers
	load "$TCDIST_TOP/tests/lib/sigstore_clients.bash"
	DIGEST=$(printf 'tcdist fixture' | sha256sum | cut -c1-64)
	OTHER_DIGEST=$(printf 'other' | sha256sum | cut -c1-64)
}

# mint ID DIR: an X509-SVID for ID from the stack's SPIRE server (DIR/svid.pem, key.pem,
# bundle.pem).
mint() {
	mkdir -p "$2"
	"$TCDIST_SPIRE_BIN_DIR/spire-server" x509 mint -socketPath "$TCDIST_SPIRE_SERVER_SOCKET" \
		-spiffeID "$1" -ttl 30m -write "$2" >/dev/null 2>&1
}

# fixture SVID_DIR OUT_DIR [ARGS...]: a bundle and trusted root signed with the SVID, about
# $DIGEST.
fixture() {
	local svid=$1 out=$2
	shift 2
	python3 "$TCDIST_TOP/tests/lib/sigstore_fixture.py" --cert "$svid/svid.pem" --key "$svid/key.pem" \
		--ca "$TCDIST_SPIRE_BUNDLE" --tsa-url "$TCDIST_TSA_URL" --tsa-chain "$TCDIST_TSA_CHAIN" \
		--digest "$DIGEST" --out "$out" "$@"
}

# cosign_verify DIR SAN [DIGEST]: cosign's verification of DIR/bundle.json as an attestation
# about DIGEST (default $DIGEST), against DIR/trusted_root.json, for identity SAN, any issuer;
# signing time from the RFC 3161 timestamp, no SCT.
cosign_verify() {
	"$TCDIST_COSIGN" verify-blob-attestation --bundle "$1/bundle.json" \
		--trusted-root "$1/trusted_root.json" \
		--certificate-identity "$2" --certificate-oidc-issuer-regexp '.*' \
		--use-signed-timestamps --insecure-ignore-sct \
		--digest "${3:-$DIGEST}" --digestAlg sha256 --type "$PREDICATE"
}

# js_verify NAME SAN [DIGEST]: sigstore_js_verify on fixture NAME.
js_verify() {
	sigstore_js_verify "$FX/$1/bundle.json" "$FX/$1/trusted_root.json" "${3:-$DIGEST}" "$2"
}

@test "sigstore-js verifies a DSSE bundle signed with the signer's SVID (Rekor v2 dsse entry)" {
	require_sigstore_js
	run js_verify dsse "$SIGNER"
	[ "$status" -eq 0 ]
	[ "$output" = verified ]
	# Digests compare case-insensitively.
	run js_verify dsse "$SIGNER" "${DIGEST^^}"
	[ "$status" -eq 0 ]
	# sigstore-js checks no extended key usage: the job's SVID (no codeSigning) verifies too.
	run js_verify job-dsse "$JOB"
	[ "$status" -eq 0 ]
	[ "$output" = verified ]
}

@test "sigstore-js refuses another identity, a partial one, another digest, tampering, another root" {
	require_sigstore_js
	local san
	# The identity is compared exactly, not as the regex sigstore-js takes.
	for san in "$JOB" spiffe://tcdist.test/distd "${SIGNER%r}" "$SIGNER/" "$SIGNER.*" \
		spiffe://tcdist.test/distd/signe. "x$SIGNER"; do
		run js_verify dsse "$san"
		[ "$status" -eq 1 ] || {
			echo "accepted SAN $san: $output" >&2
			return 1
		}
		[[ $output == *"UNTRUSTED_SIGNER_ERROR"* ]]
	done
	run js_verify dsse "$SIGNER" "$OTHER_DIGEST"
	[ "$status" -eq 1 ]
	[[ $output == *"no in-toto subject has sha256 $OTHER_DIGEST"* ]]
	run js_verify dsse-payload "$SIGNER"
	[ "$status" -eq 1 ]
	run js_verify dsse-sig "$SIGNER"
	[ "$status" -eq 1 ]
	# Another fixture's root: another log key, so the checkpoint does not verify.
	run sigstore_js_verify "$FX/dsse/bundle.json" "$FX/fx2/trusted_root.json" "$DIGEST" "$SIGNER"
	[ "$status" -eq 1 ]
	[[ $output == *"TLOG"* ]]
	# A root without the timestamp authority: no verified timestamp.
	python3 -c 'import json, sys; r = json.load(open(sys.argv[1])); r["timestampAuthorities"] = []; json.dump(r, open(sys.argv[2], "w"))' \
		"$FX/dsse/trusted_root.json" "$BATS_TEST_TMPDIR/no-tsa.json"
	run sigstore_js_verify "$FX/dsse/bundle.json" "$BATS_TEST_TMPDIR/no-tsa.json" "$DIGEST" "$SIGNER"
	[ "$status" -eq 1 ]
	[[ $output == *"TIMESTAMP_ERROR"* ]]
	# sigstore-js 3.x checks a hashedrekord entry's digest against the payload, not the PAE.
	run js_verify hr "$SIGNER"
	[ "$status" -eq 1 ]
	[[ $output == *"TLOG_BODY_ERROR: digest mismatch"* ]]
}

@test "sigstore_js_verify.mjs: garbage and missing files fail with 1, usage errors with 2" {
	require_sigstore_js
	local d=$BATS_TEST_TMPDIR
	echo garbage >"$d/garbage.json"
	echo '{}' >"$d/empty.json"
	run sigstore_js_verify "$d/garbage.json" "$FX/dsse/trusted_root.json" "$DIGEST" "$SIGNER"
	[ "$status" -eq 1 ] && [[ $output == *"is not JSON"* ]]
	run sigstore_js_verify "$d/empty.json" "$FX/dsse/trusted_root.json" "$DIGEST" "$SIGNER"
	[ "$status" -eq 1 ] && [[ $output == *"media type"* ]]
	run sigstore_js_verify "$FX/dsse/bundle.json" "$d/garbage.json" "$DIGEST" "$SIGNER"
	[ "$status" -eq 1 ]
	run sigstore_js_verify "$FX/dsse/bundle.json" "$d/empty.json" "$DIGEST" "$SIGNER"
	[ "$status" -eq 1 ]
	run sigstore_js_verify "$d/missing.json" "$FX/dsse/trusted_root.json" "$DIGEST" "$SIGNER"
	[ "$status" -eq 1 ] && [[ $output == *"cannot read bundle"* ]]
	run sigstore_js_verify "$FX/dsse/bundle.json" "$FX/dsse/trusted_root.json" "$DIGEST"
	[ "$status" -eq 2 ]
	run sigstore_js_verify "$FX/dsse/bundle.json" "$FX/dsse/trusted_root.json" "sha256:$DIGEST" "$SIGNER"
	[ "$status" -eq 2 ]
	TCDIST_SIGSTORE_JS_DIR=$d run sigstore_js_verify "$FX/dsse/bundle.json" "$FX/dsse/trusted_root.json" "$DIGEST" "$SIGNER"
	[ "$status" -eq 2 ] && [[ $output == *"cannot load @sigstore/verify"* ]]
}

@test "cosign verifies a DSSE bundle signed with the signer's SVID (Rekor v2 hashedrekord entry over the PAE)" {
	require_cosign
	run cosign_verify "$FX/hr" "$SIGNER"
	[ "$status" -eq 0 ]
	[[ $output == *"Verified OK"* ]]
}

@test "cosign refuses the job's SVID (no codeSigning), another identity or digest, tampering" {
	require_cosign
	run cosign_verify "$FX/job-hr" "$JOB"
	[ "$status" -ne 0 ]
	[[ $output == *"leaf certificate verification failed"* ]]
	run cosign_verify "$FX/hr" "$JOB"
	[ "$status" -ne 0 ]
	[[ $output == *"expected SAN value \"$JOB\""* ]]
	run cosign_verify "$FX/hr" spiffe://tcdist.test/distd
	[ "$status" -ne 0 ]
	run cosign_verify "$FX/hr" "$SIGNER" "$OTHER_DIGEST"
	[ "$status" -ne 0 ]
	[[ $output == *"does not match any digest in statement"* ]]
	run cosign_verify "$FX/hr-sig" "$SIGNER"
	[ "$status" -ne 0 ]
	# Another fixture's root (another log key).
	mkdir -p "$BATS_TEST_TMPDIR/mixed"
	cp "$FX/hr/bundle.json" "$FX/fx2/trusted_root.json" "$BATS_TEST_TMPDIR/mixed/"
	run cosign_verify "$BATS_TEST_TMPDIR/mixed" "$SIGNER"
	[ "$status" -ne 0 ]
}

@test "cosign and a DSSE bundle whose Rekor v2 entry is of kind dsse: v3.0 accepts it, v3.1 does not" {
	require_cosign
	local version
	version=$("$TCDIST_COSIGN" version 2>&1 | sed -n 's/^GitVersion: *//p')
	run cosign_verify "$FX/dsse" "$SIGNER"
	case $version in
	v3.0.*)
		# sigstore-go 1.1 hashes the entry's canonicalized body (dsse v0.0.2 included).
		[ "$status" -eq 0 ]
		[[ $output == *"Verified OK"* ]]
		;;
	v3.1.*)
		# sigstore-go 1.2 knows no Rekor v2 dsse entries (it rebuilds a hashedrekord entry over
		# the PAE): cosign cannot load the bundle as one and falls back to its legacy format,
		# which takes no trusted root.
		[ "$status" -ne 0 ]
		[[ $output == *"--trusted-root only supported with --new-bundle-format"* ]]
		;;
	*)
		echo "cosign $version: check how it treats Rekor v2 dsse entries and update this test" >&2
		echo "$output" >&2
		return 1
		;;
	esac
}
