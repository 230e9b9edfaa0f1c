//! Strings users and documents name things with: release references, digests, platforms,
//! SPIFFE IDs and trust domains.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tcdist_core::{Digest, Platform};
use tcdist_oci::reference::ReleaseRef;
use tcdist_verify::spiffe_id::{SpiffeId, TrustDomain};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(ReleaseRef::Registry(reference)) = ReleaseRef::parse(text) {
        let _ = reference.to_oci();
    }
    if let Ok(digest) = text.parse::<Digest>() {
        let _ = digest.file_name();
    }
    if let Ok(platform) = text.parse::<Platform>() {
        let _ = platform.file_name();
    }
    let _ = text.parse::<SpiffeId>();
    let _ = text.parse::<TrustDomain>();
});
