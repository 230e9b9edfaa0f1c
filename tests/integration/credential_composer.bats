#!/usr/bin/env bats
# The SPIRE server's CredentialComposer plugin (spire-config/credentialcomposer-codesigning):
# the release signer's X509-SVIDs carry the codeSigning extended key usage that cosign and
# sigstore-go demand, besides SPIRE's serverAuth and clientAuth; every other SVID is left as
# SPIRE makes it. The server runs the plugin only when its SHA-256 matches the configuration.

bats_require_minimum_version 1.5.0

setup() {
	load helpers
	load spire_helpers
	SERVER_CONF=$TCDIST_STACK_DIR/spire/server/server.conf
}

teardown() {
	restore_entries
}

# conf_value KEY: the quoted value of KEY in the rendered server configuration.
conf_value() {
	sed -n "s/^ *$1 = \"\\(.*\\)\"\$/\\1/p" "$SERVER_CONF"
}

# eku PEM_FILE: the certificate's extended key usages, as openssl names them.
eku() {
	openssl x509 -in "$1" -noout -ext extendedKeyUsage | sed -n '2s/^ *//p'
}

# svids_to_pem JSON DIR: write each SVID (leaf) of `spire-agent api fetch x509 -output json`
# to DIR/<last path segment of its SPIFFE ID>.pem.
svids_to_pem() {
	python3 - "$1" "$2" <<'PY'
import base64, json, subprocess, sys
for s in json.load(open(sys.argv[1]))["svids"]:
    # x509_svid: the DER chain, leaf first; openssl reads the first certificate.
    der = base64.b64decode(s["x509_svid"])
    pem = subprocess.run(["openssl", "x509", "-inform", "DER"], input=der,
                         capture_output=True, check=True).stdout
    open("%s/%s.pem" % (sys.argv[2], s["spiffe_id"].rsplit("/", 1)[1]), "wb").write(pem)
PY
}

@test "the server loads the codeSigning composer, pinned by its SHA-256" {
	local cmd sum
	cmd=$(conf_value plugin_cmd)
	sum=$(conf_value plugin_checksum)
	[[ $cmd == /* ]] && [ -x "$cmd" ]
	[[ $sum =~ ^[0-9a-f]{64}$ ]]
	[ "$(sha256sum "$cmd" | cut -d' ' -f1)" = "$sum" ]
	grep -q 'CredentialComposer "codesigning"' "$SERVER_CONF"
	# distd's identities: the release signer, the promoter, the rebuilder.
	grep -qF "spiffe_ids = [\"$SIGNER\", \"$TCDIST_PROMOTER_ID\", \"$TCDIST_REBUILDER_ID\"]" "$SERVER_CONF"
	run grep 'msg="Plugin loaded" external=true plugin_name=codesigning plugin_type=CredentialComposer' \
		"$TCDIST_SPIRE_SERVER_LOG"
	[ "$status" -eq 0 ]
}

@test "the signer's SVID from the Workload API has codeSigning besides serverAuth and clientAuth; the job's has not" {
	# A copy of spire-agent registered as a distd path for this test (teardown restores the
	# stack's entries), so its `api fetch` gets the signer's SVID as distd would.
	RESTORE_ENTRIES=1
	local d=$BATS_TEST_TMPDIR args paths p i
	mkdir -p "$d/registered" "$d/pem"
	cp "$SPIRE_AGENT" "$d/registered/distd"
	args=(--distd-path "$d/registered/distd")
	IFS=: read -ra paths <<<"$TCDIST_SPIRE_DISTD_PATHS"
	for p in "${paths[@]}"; do
		args+=(--distd-path "$p")
	done
	"$APPLY" "${args[@]}" >/dev/null
	# Entries reach the agent with its next sync (every 5 s).
	for ((i = 0; i < 60; i++)); do
		"$d/registered/distd" api fetch x509 -socketPath "$WORKLOAD_SOCKET" -output json \
			>"$d/svids.json" 2>/dev/null && grep -q "\"$SIGNER\"" "$d/svids.json" && break
		sleep 0.5
	done
	grep -q "\"$SIGNER\"" "$d/svids.json"
	svids_to_pem "$d/svids.json" "$d/pem"

	run eku "$d/pem/signer.pem"
	[ "$output" = "TLS Web Server Authentication, TLS Web Client Authentication, Code Signing" ]
	run eku "$d/pem/job.pem"
	[ "$output" = "TLS Web Server Authentication, TLS Web Client Authentication" ]
	# Both are still SVIDs of the trust domain as before: they chain to the bundle, name
	# one SPIFFE ID, are no CA, and keep SPIRE's key usages.
	for p in signer job; do
		openssl verify -CAfile "$TCDIST_SPIRE_BUNDLE" "$d/pem/$p.pem"
		run openssl x509 -in "$d/pem/$p.pem" -noout -ext subjectAltName
		[[ $output == *"URI:spiffe://tcdist.test/"* ]]
		run openssl x509 -in "$d/pem/$p.pem" -noout -ext basicConstraints
		[[ $output == *"CA:FALSE"* ]]
		run openssl x509 -in "$d/pem/$p.pem" -noout -ext keyUsage
		[[ $output == *"Digital Signature"* ]]
	done
	run openssl x509 -in "$d/pem/signer.pem" -noout -ext subjectAltName
	[[ $output == *"URI:$SIGNER"* ]]

	# A shell of the same user still gets the job identity only, without codeSigning.
	"$SPIRE_AGENT" api fetch x509 -socketPath "$WORKLOAD_SOCKET" -write "$d" >/dev/null
	run openssl x509 -in "$d/svid.0.pem" -noout -ext subjectAltName
	[[ $output == *"URI:$JOB"* ]]
	run eku "$d/svid.0.pem"
	[ "$output" = "TLS Web Server Authentication, TLS Web Client Authentication" ]
}

@test "SVIDs minted by the server (spire-server x509 mint) go through the composer too" {
	local d=$BATS_TEST_TMPDIR
	mkdir -p "$d/signer" "$d/job"
	"$SPIRE_SERVER" x509 mint -socketPath "$TCDIST_SPIRE_SERVER_SOCKET" -spiffeID "$SIGNER" \
		-ttl 5m -write "$d/signer" >/dev/null
	"$SPIRE_SERVER" x509 mint -socketPath "$TCDIST_SPIRE_SERVER_SOCKET" -spiffeID "$JOB" \
		-ttl 5m -write "$d/job" >/dev/null
	run eku "$d/signer/svid.pem"
	[ "$output" = "TLS Web Server Authentication, TLS Web Client Authentication, Code Signing" ]
	run eku "$d/job/svid.pem"
	[ "$output" = "TLS Web Server Authentication, TLS Web Client Authentication" ]
	# An ID below the signer's is another ID: no codeSigning.
	mkdir -p "$d/below"
	"$SPIRE_SERVER" x509 mint -socketPath "$TCDIST_SPIRE_SERVER_SOCKET" -spiffeID "$SIGNER/below" \
		-ttl 5m -write "$d/below" >/dev/null
	run eku "$d/below/svid.pem"
	[ "$output" = "TLS Web Server Authentication, TLS Web Client Authentication" ]
	# The server's CA is untouched: no extended key usage at all.
	run openssl x509 -in "$TCDIST_SPIRE_BUNDLE" -noout -text
	[ "$status" -eq 0 ]
	[[ $output == *"CA:TRUE"* && $output != *"Extended Key Usage"* ]]
}

# scratch_server_conf DIR: the stack's server configuration, moved to DIR (data, sockets, log)
# with ports the system picks and no health listener, for a server run that must fail.
scratch_server_conf() {
	python3 - "$SERVER_CONF" "$1" <<'PY'
import re, sys
s, d = open(sys.argv[1]).read(), sys.argv[2]
s, n = re.subn(r"(?ms)^health_checks \{.*?^\}\n?", "", s)
assert n == 1
for key, value in [("bind_port", "0"), ("socket_path", d + "/server.sock"), ("data_dir", d),
                   ("log_file", d + "/server.log"), ("connection_string", d + "/datastore.sqlite3"),
                   ("keys_path", d + "/keys.json")]:
    s, n = re.subn(r'(?m)^(\s*%s = )".*"$' % key, lambda m: '%s"%s"' % (m.group(1), value), s)
    assert n == 1, key
open(d + "/server.conf", "w").write(s)
PY
}

@test "a server refuses a composer binary whose checksum differs, and a signer ID outside the trust domain" {
	local d=$BATS_TEST_TMPDIR/srv
	mkdir -p "$d"
	scratch_server_conf "$d"
	sed -i "s/plugin_checksum = \"[0-9a-f]*\"/plugin_checksum = \"$(printf '0%.0s' {1..64})\"/" "$d/server.conf"
	run timeout 60 "$SPIRE_SERVER" run -config "$d/server.conf"
	[ "$status" -ne 0 ] && [ "$status" -ne 124 ]
	grep -q 'failed to load plugin \\"codesigning\\": failed to launch plugin: checksums did not match' "$d/server.log"

	rm -rf "$d" && mkdir -p "$d"
	scratch_server_conf "$d"
	sed -i 's|spiffe_ids = .*|spiffe_ids = ["spiffe://elsewhere.test/distd/signer"]|' "$d/server.conf"
	run timeout 60 "$SPIRE_SERVER" run -config "$d/server.conf"
	[ "$status" -ne 0 ] && [ "$status" -ne 124 ]
	grep -q "not in the server's trust domain" "$d/server.log"
}

@test "the composer's unit tests pass" {
	command -v go >/dev/null || skip "go is not installed"
	cd "$TCDIST_TOP/spire-config/credentialcomposer-codesigning"
	run go test -count=1 ./...
	[ "$status" -eq 0 ]
	[[ $output == ok* ]]
}
