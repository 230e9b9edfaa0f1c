# shellcheck shell=bash
# Third-party Sigstore clients for the integration suites, as tests/run installs them:
#   TCDIST_COSIGN            the cosign binary (deploy/local/lib/install.sh, ensure_cosign)
#   TCDIST_SIGSTORE_JS_DIR   the @sigstore/verify install (ensure_sigstore_js)
# When one could not be installed, tests/run sets TCDIST_COSIGN_SKIP or
# TCDIST_SIGSTORE_JS_SKIP to the reason instead, and the tests that need it skip with that
# reason (bats reports them as skipped, never as passed). Load from a bats file:
#   load "$TCDIST_TOP/tests/lib/sigstore_clients.bash"

# require_cosign: skip the current test unless cosign is installed.
require_cosign() {
	if [[ -z ${TCDIST_COSIGN:-} ]]; then
		skip "cosign: ${TCDIST_COSIGN_SKIP:-not installed (TCDIST_COSIGN is unset; tests/run installs it)}"
	fi
	[[ -x $TCDIST_COSIGN ]] || skip "cosign: $TCDIST_COSIGN is not executable"
}

# require_sigstore_js: skip the current test unless sigstore-js and node are installed.
require_sigstore_js() {
	if [[ -z ${TCDIST_SIGSTORE_JS_DIR:-} ]]; then
		skip "sigstore-js: ${TCDIST_SIGSTORE_JS_SKIP:-not installed (TCDIST_SIGSTORE_JS_DIR is unset; tests/run installs it)}"
	fi
	[[ -d $TCDIST_SIGSTORE_JS_DIR/node_modules/@sigstore/verify ]] ||
		skip "sigstore-js: $TCDIST_SIGSTORE_JS_DIR has no node_modules/@sigstore/verify"
	command -v node >/dev/null || skip "sigstore-js: node is not installed"
}

# sigstore_js_verify BUNDLE TRUSTED_ROOT DIGEST_HEX SAN: tests/lib/sigstore_js_verify.mjs.
sigstore_js_verify() {
	node "$TCDIST_TOP/tests/lib/sigstore_js_verify.mjs" "$@"
}
