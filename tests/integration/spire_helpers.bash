# shellcheck shell=bash
# Shared by the suites about SPIRE itself: the stack's identities, its binaries, and putting
# the registration entries back after a test changed them.
# shellcheck disable=SC2034 # the suites that load this file use these

SIGNER=spiffe://tcdist.test/distd/signer
JOB=spiffe://tcdist.test/ci/job
SPIRE_SERVER=$TCDIST_SPIRE_BIN_DIR/spire-server
SPIRE_AGENT=$TCDIST_SPIRE_BIN_DIR/spire-agent
WORKLOAD_SOCKET=${SPIFFE_ENDPOINT_SOCKET#unix://}
APPLY=$TCDIST_TOP/spire-config/apply-entries

# restore_entries: when the test set RESTORE_ENTRIES, apply the stack's declaration again.
restore_entries() {
	if [[ -n ${RESTORE_ENTRIES:-} ]]; then
		env -u TCDIST_SIGNER_SVID_TTL "$APPLY" >/dev/null
	fi
}
