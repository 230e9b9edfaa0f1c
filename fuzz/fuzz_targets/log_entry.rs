//! Transparency-log entry bodies as the monitor reads them from the log's entry tiles (Rekor
//! v2 `dsse` and `hashedrekord` 0.0.2, any other kind refused), and the witnessed checkpoint a
//! release's referrer carries (the JSON annotation, then its note's cosignature lines checked
//! against a witness key read from the input's first line).
#![no_main]

use libfuzzer_sys::fuzz_target;
use sigstore_types::Checkpoint;
use tcdist_oci::attachments::WitnessedCheckpoint;
use tcdist_verify::tlog::entry::LoggedEntry;
use tcdist_verify::witness::{WitnessKey, cosigners};

fuzz_target!(|data: &[u8]| {
    if let Ok(entry) = LoggedEntry::parse(data) {
        let _ = (entry.kind.as_str(), entry.signatures.len());
    }
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let _ = WitnessedCheckpoint::parse(text);
    let (first, note) = text.split_once('\n').unwrap_or((text, ""));
    let keys: Vec<WitnessKey> = WitnessKey::parse(first).into_iter().collect();
    if let Ok(checkpoint) = Checkpoint::from_text(note) {
        let _ = cosigners(&checkpoint, &keys);
    }
});
