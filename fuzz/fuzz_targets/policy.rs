//! Policy files: TOML text through the loader's syntax, type and semantic checks.
//!
//! The policy path is in a directory that does not exist, so trust files named by a relative
//! path are missing (the loader reports them); absolute names are read as given.
#![no_main]

use std::path::Path;

use libfuzzer_sys::fuzz_target;
use tcdist_verify::policy::Policy;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let path = Path::new("/nonexistent/tcverify-fuzz/policy.toml");
    match Policy::parse(text, path) {
        Ok(policy) => {
            let _ = policy.summary();
        }
        Err(error) => {
            let _ = error.to_string();
        }
    }
});
