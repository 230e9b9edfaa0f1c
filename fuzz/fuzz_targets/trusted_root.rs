//! Sigstore trusted roots (`trusted_root.json`), as handed to build agents.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tcdist_verify::trust::trusted_root::parse_trusted_root;

fuzz_target!(|data: &[u8]| {
    if let Err(error) = parse_trusted_root(data) {
        let _ = error.to_string();
    }
});
