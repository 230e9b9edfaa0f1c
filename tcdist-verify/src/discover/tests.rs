//! Discovery from an OCI image layout written by the test: referrers listed under the
//! referrers tag, some of them junk, broken or missing.

use super::*;
use crate::test_support::OciLayout;
use tcdist_oci::attachments::{
    IN_TOTO_PAYLOAD_TYPE, MEDIA_TYPE_BUNDLE, empty_config_descriptor, referrers_index,
    referrers_tag,
};
use tcdist_oci::bundle::{Envelope, EnvelopeSignature, RawBytes, VerificationMaterial};
use tcdist_oci::release::{MEDIA_TYPE_INDEX, MEDIA_TYPE_MANIFEST};

/// An OCI layout whose referrers tag lists the referrers added, in order.
struct Layout {
    layout: OciLayout,
    subject: Digest,
    referrers: Vec<Descriptor>,
}

impl Layout {
    fn new() -> Self {
        Layout {
            layout: OciLayout::new(),
            subject: Digest::of(b"release index"),
            referrers: Vec::new(),
        }
    }

    fn blob(&self, media_type: &str, bytes: &[u8]) -> Descriptor {
        self.layout.blob(media_type, bytes)
    }

    fn blob_path(&self, descriptor: &Descriptor) -> std::path::PathBuf {
        self.layout.blob_path(descriptor)
    }

    /// A referrer manifest of `artifact_type` with one layer, listed as a bundle.
    fn referrer(&mut self, artifact_type: &str, layer: Descriptor) -> Descriptor {
        let mut manifest = ArtifactManifest::new(empty_config_descriptor(), vec![layer]);
        manifest.artifact_type = Some(artifact_type.to_owned());
        let bytes = serde_json::to_vec(&manifest).unwrap();
        let mut descriptor = self.blob(MEDIA_TYPE_MANIFEST, &bytes);
        descriptor.artifact_type = Some(MEDIA_TYPE_BUNDLE.to_owned());
        self.referrers.push(descriptor.clone());
        descriptor
    }

    /// A referrer holding a bundle that decodes (it need not verify), unlike any other.
    fn bundle(&mut self) -> Descriptor {
        let bundle = Bundle {
            media_type: MEDIA_TYPE_BUNDLE.to_owned(),
            verification_material: VerificationMaterial {
                certificate: Some(RawBytes {
                    raw_bytes: vec![1, 2, 3],
                }),
                ..Default::default()
            },
            dsse_envelope: Some(Envelope {
                payload: b"{}".to_vec(),
                payload_type: IN_TOTO_PAYLOAD_TYPE.to_owned(),
                signatures: vec![EnvelopeSignature {
                    sig: self.referrers.len().to_be_bytes().to_vec(),
                    keyid: String::new(),
                }],
            }),
        };
        let layer = self.blob(MEDIA_TYPE_BUNDLE, &bundle.to_json());
        self.referrer(MEDIA_TYPE_BUNDLE, layer)
    }

    /// A referrer of another artifact type that claims, in the index, to be a bundle.
    fn junk(&mut self, n: usize) -> Descriptor {
        let layer = self.blob("application/spdx+json", format!("sbom {n}").as_bytes());
        self.referrer("application/spdx+json", layer)
    }

    /// A bundle referrer whose bundle does not decode.
    fn broken_bundle(&mut self) -> Descriptor {
        let layer = self.blob(MEDIA_TYPE_BUNDLE, b"not a bundle");
        self.referrer(MEDIA_TYPE_BUNDLE, layer)
    }

    /// Writes the referrers index and `index.json`, and returns the layout as a source.
    fn source(&mut self) -> ReleaseSource {
        let index = serde_json::to_vec(&referrers_index(self.referrers.clone())).unwrap();
        let tagged = self.blob(MEDIA_TYPE_INDEX, &index);
        self.layout.tag(&referrers_tag(&self.subject), tagged);
        self.layout.source(None)
    }

    async fn discover(&mut self) -> Result<Discovered> {
        let source = self.source();
        let bundles = list_bundles(&source, &self.subject).await?;
        discover(&source, &self.subject, &bundles, Place::BundleReferrers).await
    }
}

fn reasons(found: &Discovered) -> Vec<String> {
    found.failures.iter().map(ToString::to_string).collect()
}

#[tokio::test]
async fn junk_referrers_do_not_hide_the_bundle() {
    let mut layout = Layout::new();
    for n in 0..MAX_CANDIDATES + 4 {
        layout.junk(n);
    }
    let bundle = layout.bundle();
    let found = layout.discover().await.unwrap();
    assert_eq!(found.candidates.len(), 1);
    assert_eq!(
        found.candidates[0].origin,
        format!("bundle referrer {}", bundle.digest)
    );
    let reasons = reasons(&found);
    assert_eq!(reasons.len(), 1, "{reasons:#?}");
    assert!(
        reasons[0].contains(
            "[signature-format] 20 referrers listed as Sigstore bundles are other artifacts"
        ),
        "{reasons:#?}"
    );
}

#[tokio::test]
async fn broken_referrer_is_skipped_and_recorded() {
    let mut layout = Layout::new();
    let missing = layout.bundle();
    std::fs::remove_file(layout.blob_path(&missing)).unwrap();
    let tampered = layout.bundle();
    std::fs::write(layout.blob_path(&tampered), b"{}").unwrap();
    let broken = layout.broken_bundle();
    let bundle = layout.bundle();
    let found = layout.discover().await.unwrap();
    assert_eq!(found.candidates.len(), 1);
    assert_eq!(
        found.candidates[0].origin,
        format!("bundle referrer {}", bundle.digest)
    );
    let reasons = reasons(&found);
    assert_eq!(reasons.len(), 3, "{reasons:#?}");
    for (reason, (descriptor, why)) in reasons.iter().zip([
        (&missing, "was not found"),
        (&tampered, "size mismatch"),
        (&broken, "bundle"),
    ]) {
        assert!(
            reason.starts_with(&format!(
                "bundle referrer {}: [signature-format]",
                descriptor.digest
            )) && reason.contains(why),
            "{reason}"
        );
    }
}

#[tokio::test]
async fn at_most_16_bundles_are_examined() {
    let mut layout = Layout::new();
    for _ in 0..MAX_CANDIDATES {
        layout.broken_bundle();
    }
    layout.bundle();
    let found = layout.discover().await.unwrap();
    assert!(found.candidates.is_empty());
    assert_eq!(found.failures.len(), MAX_CANDIDATES);
}

#[tokio::test]
async fn at_most_64_referrers_are_read() {
    let mut layout = Layout::new();
    for n in 0..MAX_REFERRERS_READ {
        layout.junk(n);
    }
    layout.bundle();
    let found = layout.discover().await.unwrap();
    assert!(found.candidates.is_empty());
    let reasons = reasons(&found);
    assert!(
        reasons[1].ends_with("only 64 of 65 referrers were read (at most 64 are)"),
        "{reasons:#?}"
    );
}

#[tokio::test]
async fn referrers_that_look_like_manifests_are_read_first() {
    let mut layout = Layout::new();
    for n in 0..MAX_REFERRERS_READ {
        let mut descriptor = layout.junk(n);
        // Listed as something other than a manifest: read last.
        descriptor.media_type = "application/octet-stream".to_owned();
        *layout.referrers.last_mut().unwrap() = descriptor;
    }
    layout.bundle();
    let found = layout.discover().await.unwrap();
    assert_eq!(found.candidates.len(), 1);
}

#[tokio::test]
async fn layout_blob_that_is_not_a_regular_file_is_recorded_and_skipped() {
    let mut layout = Layout::new();
    let bundle = layout.bundle();
    // A layout is untrusted input: a directory where the manifest should be is a broken
    // referrer, like a forged one.
    std::fs::remove_file(layout.blob_path(&bundle)).unwrap();
    std::fs::create_dir(layout.blob_path(&bundle)).unwrap();
    let found = layout.discover().await.unwrap();
    assert!(found.candidates.is_empty());
    assert!(
        found
            .failures
            .iter()
            .any(|f| f.to_string().contains("is not a regular file")),
        "{:?}",
        found.failures
    );
}
