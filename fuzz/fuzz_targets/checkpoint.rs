//! Transparency-log checkpoints (C2SP signed notes: origin, size, root, then signature lines)
//! as bundles and log servers hand them over, checked against a log's origin and key; and the
//! PEM log keys operators give the policy.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tcdist_verify::tlog::verify_checkpoint;
use tcdist_verify::trust::tlog::{LogKeyAlgorithm, TransparencyLog, parse_log_public_key};

fuzz_target!(|data: &[u8]| {
    let _ = parse_log_public_key(data);
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    // Any key: a random note is refused before or at its signature, past every parser.
    let log = TransparencyLog::with_key(
        (Vec::new(), [7; 32].to_vec(), LogKeyAlgorithm::Ed25519),
        "fuzz.test/log",
    );
    if let Ok(checkpoint) = verify_checkpoint(text, &log) {
        let _ = (checkpoint.tree_size(), checkpoint.root_hash());
    }
});
