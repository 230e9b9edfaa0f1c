//! Registry documents: OCI index, manifest and config, the release's `TOOLCHAIN.json`,
//! artifact manifests, signed payloads (release statements, channel heads, yank lists), and
//! the index check of `resolve`.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tcdist_oci::attachments::lifecycle::{ChannelStatement, YankListStatement};
use tcdist_oci::attachments::{ArtifactManifest, ReleaseStatement, SimpleSigning};
use tcdist_oci::checked::CheckedBytes;
use tcdist_oci::release::{ImageConfig, ImageIndex, ImageManifest, ToolchainMetadata, parse_json};

fuzz_target!(|data: &[u8]| {
    let _ = parse_json::<ImageIndex>("index", data);
    let _ = parse_json::<ImageManifest>("manifest", data);
    if let Ok(config) = parse_json::<ImageConfig>("config", data) {
        let _ = config.platform().to_string();
    }
    let _ = parse_json::<ToolchainMetadata>("TOOLCHAIN.json", data);
    let _ = parse_json::<ArtifactManifest>("artifact manifest", data);
    let _ = ReleaseStatement::parse(data);
    let _ = SimpleSigning::parse(data);
    let _ = ChannelStatement::parse_statement(data);
    if let Ok((list, _)) = YankListStatement::parse_statement(data) {
        let _ = list.predicate.find(&tcdist_core::Digest::of(data));
    }
    let document = CheckedBytes::named_by_content(data.to_vec().into());
    let _ = tcdist_oci::resolve::parse_index(&document);
});
