//! Sigstore bundles fetched as referrers: the protobuf-JSON parser, then the decoder that
//! takes the DSSE envelope and in-toto statement apart.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tcdist_oci::bundle::Bundle;
use tcdist_oci::checked::CheckedBytes;
use tcdist_verify::discover::decode_bundle;

fuzz_target!(|data: &[u8]| {
    if let Ok(bundle) = Bundle::parse(data) {
        let _ = bundle.to_json();
    }
    let document = CheckedBytes::named_by_content(data.to_vec().into());
    let _ = decode_bundle(&document, "fuzz");
});
