//! Layer tar streams through the extractor, as `fetch` runs it after decompression: counted
//! against an unpacked-size budget, read to the end, then the deferred hard links made. Each
//! input gets a fresh directory; the small budget keeps any input from filling the disk.
#![no_main]

use std::io;

use libfuzzer_sys::fuzz_target;
use tcdist_core::Digest;
use tcdist_store::extract::{BudgetUse, BudgetedReader, LayerExtractor, create_hard_links};
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
    let Ok(links) = LayerExtractor::new(dir.path(), &layer, &budget, &used).extract(&mut archive)
    else {
        return;
    };
    if io::copy(&mut archive, &mut io::sink()).is_err() {
        return;
    }
    let _ = create_hard_links(dir.path(), &links);
});
