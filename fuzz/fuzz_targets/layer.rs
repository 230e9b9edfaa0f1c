//! Layer tar streams through the extractor, as `fetch` runs it after decompression: counted
//! against an unpacked-size budget, read to the end, then the deferred hard links made. Each
//! input gets a fresh directory; the small budget keeps any input from filling the disk. The
//! manifest the extraction recorded must be the one read back from the disk.
#![no_main]

use std::io;

use libfuzzer_sys::fuzz_target;
use tcdist_core::Digest;
use tcdist_oci::release::TOOLCHAIN_ROOT;
use tcdist_store::extract::{BudgetUse, BudgetedReader, LayerExtractor, manifest_of};
use tcdist_store::staging::{remove_tree, seal_directories};
use tcdist_store::tree::TreeManifest;
use tcdist_verify::structure::ExtractBudget;

fuzz_target!(|data: &[u8]| {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let layer = Digest::of(data);
    let budget = ExtractBudget {
        max_total_bytes: 8 << 20,
        max_unpacked_bytes: 8 << 20,
        max_entries: 1000,
    };
    let used = BudgetUse::default();
    let mut archive = BudgetedReader::new(data, &budget, &used);
    let Ok(extracted) =
        LayerExtractor::new(dir.path(), &layer, &budget, &used).extract(&mut archive)
    else {
        return;
    };
    if io::copy(&mut archive, &mut io::sink()).is_err() {
        return;
    }
    if let Ok(manifest) = manifest_of(vec![extracted], dir.path()) {
        let root = dir.path().join(TOOLCHAIN_ROOT);
        if root.exists() {
            seal_directories(&root, &manifest).expect("directories seal");
            let on_disk = TreeManifest::build(&root).expect("the tree reads back");
            assert_eq!(manifest, on_disk);
        }
    }
    remove_tree(dir.path()).expect("the tree is removed");
});
