//! The structure stage on a release's documents as `resolve` hands them over: a valid
//! one-platform release, with one part changed per test.

use super::*;
use crate::test_support::ReleaseDocs;
use tcdist_core::digest::Digest;
use tcdist_core::platform::Platform;
use tcdist_oci::release::{Descriptor, MEDIA_TYPE_LAYER_GZIP, MEDIA_TYPE_LAYER_ZSTD};

/// The rejection of `docs`, checked to be a malformed `object` for `reason`.
fn assert_malformed(docs: &ReleaseDocs, budget: &ExtractBudget, object: &str, reason: &str) {
    match check(&docs.resolved(), budget) {
        Err(Rejection::Malformed {
            object: got,
            reason: why,
        }) => {
            assert_eq!(got, object);
            assert!(why.contains(reason), "{why}");
        }
        other => panic!("expected {object} to be malformed ({reason}), got {other:?}"),
    }
}

fn manifest_object(docs: &ReleaseDocs) -> String {
    format!("manifest {}", docs.resolved().manifest_descriptor.digest)
}

fn config_object(docs: &ReleaseDocs) -> String {
    format!("config {}", docs.manifest.config.digest)
}

#[test]
fn structure_accepted_if_parts_agree() {
    let docs = ReleaseDocs::new();
    check(&docs.resolved(), &ExtractBudget::default()).unwrap();
}

#[test]
fn structure_rejected_if_config_platform_differs_from_index() {
    let mut docs = ReleaseDocs::new();
    let mut config = docs.config.clone();
    config.architecture = "arm64".into();
    docs.set_config(config);
    assert_malformed(
        &docs,
        &ExtractBudget::default(),
        &config_object(&docs),
        "config is for linux/arm64, but the index lists this manifest for linux/amd64",
    );
}

#[test]
fn structure_rejected_if_index_platform_differs_from_config() {
    let mut docs = ReleaseDocs::new();
    docs.platform = Platform::new("darwin", "amd64");
    assert_malformed(
        &docs,
        &ExtractBudget::default(),
        &config_object(&docs),
        "config is for linux/amd64, but the index lists this manifest for darwin/amd64",
    );
}

#[test]
fn structure_rejected_if_diff_ids_do_not_match_layers() {
    let mut docs = ReleaseDocs::new();
    let mut config = docs.config.clone();
    config.rootfs.diff_ids.push(Digest::of(b"a second layer"));
    docs.set_config(config);
    assert_malformed(
        &docs,
        &ExtractBudget::default(),
        &config_object(&docs),
        "rootfs lists 2 diff_ids of type \"layers\" for 1 layers",
    );
}

#[test]
fn structure_rejected_if_rootfs_is_not_layers() {
    let mut docs = ReleaseDocs::new();
    let mut config = docs.config.clone();
    config.rootfs.kind = "snapshot".into();
    docs.set_config(config);
    assert_malformed(
        &docs,
        &ExtractBudget::default(),
        &config_object(&docs),
        "rootfs lists 1 diff_ids of type \"snapshot\"",
    );
}

#[test]
fn structure_rejected_if_manifest_media_type_is_not_oci() {
    let mut docs = ReleaseDocs::new();
    docs.manifest.media_type = "application/vnd.docker.distribution.manifest.v2+json".into();
    assert_malformed(
        &docs,
        &ExtractBudget::default(),
        &manifest_object(&docs),
        "expected an OCI image manifest",
    );
}

#[test]
fn structure_rejected_if_config_media_type_is_not_an_image_config() {
    let mut docs = ReleaseDocs::new();
    docs.manifest.config.media_type = "application/vnd.oci.empty.v1+json".into();
    assert_malformed(
        &docs,
        &ExtractBudget::default(),
        &manifest_object(&docs),
        "config media type \"application/vnd.oci.empty.v1+json\"",
    );
}

#[test]
fn structure_rejected_if_no_layers() {
    let mut docs = ReleaseDocs::new();
    docs.manifest.layers.clear();
    assert_malformed(
        &docs,
        &ExtractBudget::default(),
        &manifest_object(&docs),
        "0 layers (a release has 1 to 64)",
    );
}

#[test]
fn structure_rejected_if_more_than_64_layers() {
    let mut docs = ReleaseDocs::new();
    let layer = docs.manifest.layers[0].clone();
    docs.manifest.layers = vec![layer; MAX_LAYERS + 1];
    assert_malformed(
        &docs,
        &ExtractBudget::default(),
        &manifest_object(&docs),
        "65 layers (a release has 1 to 64)",
    );
}

#[test]
fn structure_rejected_if_layer_media_type_unsupported() {
    let mut docs = ReleaseDocs::new();
    docs.manifest.layers[0].media_type = "application/vnd.oci.image.layer.v1.tar".into();
    assert_malformed(
        &docs,
        &ExtractBudget::default(),
        &manifest_object(&docs),
        "has unsupported media type \"application/vnd.oci.image.layer.v1.tar\"",
    );
}

#[test]
fn structure_rejected_if_layers_exceed_budget() {
    let mut docs = ReleaseDocs::new();
    docs.manifest.layers = vec![
        Descriptor::new(MEDIA_TYPE_LAYER_GZIP, Digest::of(b"one"), 600),
        Descriptor::new(MEDIA_TYPE_LAYER_ZSTD, Digest::of(b"two"), 500),
    ];
    let mut config = docs.config.clone();
    config.rootfs.diff_ids = vec![Digest::of(b"1"), Digest::of(b"2")];
    docs.set_config(config);
    let budget = ExtractBudget {
        max_total_bytes: 1000,
        ..ExtractBudget::default()
    };
    assert_malformed(
        &docs,
        &budget,
        &manifest_object(&docs),
        "layers total 1100 bytes, over the extraction budget of 1000 bytes",
    );
    // Exactly the budget is within it.
    docs.manifest.layers[1].size = 400;
    check(&docs.resolved(), &budget).unwrap();
}
