//! Splits a tree into layers that pull in parallel: tools (`bin/`, `pkg/`), sources (`src/`)
//! and the rest, each cut at file boundaries into parts of at most [`TARGET_LAYER_BYTES`].
//! The split depends only on the entries, so it is as deterministic as they are.

use super::tree::TreeEntry;

/// Uncompressed bytes per layer; a Go toolchain (~270 MB) becomes about six layers.
pub const TARGET_LAYER_BYTES: u64 = 64 << 20;

const GROUPS: [&str; 3] = ["tools", "src", "rest"];

pub struct LayerPlan<'a> {
    /// e.g. `src/2`, recorded as a layer annotation.
    pub name: String,
    pub entries: Vec<&'a TreeEntry>,
}

fn group_of(rel: &str) -> usize {
    let top = rel.split('/').next().unwrap_or(rel);
    match top {
        "bin" | "pkg" => 0,
        "src" => 1,
        _ => 2,
    }
}

pub fn plan(entries: &[TreeEntry], target: u64) -> Vec<LayerPlan<'_>> {
    let mut plans = Vec::new();
    for (group, group_name) in GROUPS.iter().enumerate() {
        let mut part: Vec<&TreeEntry> = Vec::new();
        let mut part_bytes = 0;
        let mut index = 1;
        for entry in entries.iter().filter(|e| group_of(&e.rel) == group) {
            if part_bytes >= target {
                plans.push(LayerPlan {
                    name: format!("{group_name}/{index}"),
                    entries: std::mem::take(&mut part),
                });
                index += 1;
                part_bytes = 0;
            }
            part_bytes += entry.content_size();
            part.push(entry);
        }
        if !part.is_empty() {
            plans.push(LayerPlan {
                name: format!("{group_name}/{index}"),
                entries: part,
            });
        }
    }
    plans
}
