//! Reading a log's Merkle tree from its tiles (C2SP tlog-tiles): hashes of any subtree of a tree
//! of a given size, and from them an RFC 6962 consistency proof. Nothing read here is trusted:
//! a proof built from tiles only counts once it verifies against two signed checkpoints.

use std::collections::HashMap;
use std::time::Duration;

use sha2::{Digest as _, Sha256};

/// Hashes per full tile.
const TILE_WIDTH: u64 = 256;
/// Tree levels per tile level.
const TILE_HEIGHT: u32 = 8;

pub struct TileReader {
    http: reqwest::Client,
    base: String,
    /// The tree size the tiles are read for (it decides which partial tiles exist).
    tree_size: u64,
    cache: HashMap<(u32, u64), Vec<[u8; 32]>>,
}

pub type Hash = [u8; 32];

impl TileReader {
    pub fn new(base: &str, tree_size: u64, timeout: Duration) -> Result<Self, String> {
        Ok(TileReader {
            http: reqwest::Client::builder()
                .timeout(timeout)
                .build()
                .map_err(|e| format!("setting up the tile client: {e}"))?,
            base: base.trim_end_matches('/').to_owned(),
            tree_size,
            cache: HashMap::new(),
        })
    }

    /// The log's current checkpoint, as text.
    pub async fn checkpoint(&self) -> Result<String, String> {
        self.get_text(&format!("{}/checkpoint", self.base)).await
    }

    /// An RFC 6962 consistency proof from size `old` to the reader's tree size.
    pub async fn consistency_proof(&mut self, old: u64) -> Result<Vec<Hash>, String> {
        let mut proof = Vec::new();
        self.subproof(old, 0, self.tree_size, true, &mut proof)
            .await?;
        Ok(proof)
    }

    /// RFC 6962 section 2.1.2, SUBPROOF(m, D[lo:hi], b).
    async fn subproof(
        &mut self,
        m: u64,
        lo: u64,
        hi: u64,
        whole: bool,
        proof: &mut Vec<Hash>,
    ) -> Result<(), String> {
        let n = hi - lo;
        if m == n {
            if !whole {
                proof.push(self.range_hash(lo, hi).await?);
            }
            return Ok(());
        }
        let k = largest_power_of_two_below(n);
        if m <= k {
            Box::pin(self.subproof(m, lo, lo + k, whole, proof)).await?;
            proof.push(self.range_hash(lo + k, hi).await?);
        } else {
            Box::pin(self.subproof(m - k, lo + k, hi, false, proof)).await?;
            proof.push(self.range_hash(lo, lo + k).await?);
        }
        Ok(())
    }

    /// The Merkle tree hash of leaves `lo..hi`.
    async fn range_hash(&mut self, lo: u64, hi: u64) -> Result<Hash, String> {
        let n = hi - lo;
        if n.is_power_of_two() && lo.is_multiple_of(n) {
            return self.node(n.trailing_zeros(), lo / n).await;
        }
        let k = largest_power_of_two_below(n);
        let left = Box::pin(self.range_hash(lo, lo + k)).await?;
        let right = Box::pin(self.range_hash(lo + k, hi)).await?;
        Ok(hash_children(&left, &right))
    }

    /// The hash of the complete subtree at `level` (0 = leaves) and `index`.
    async fn node(&mut self, level: u32, index: u64) -> Result<Hash, String> {
        let tile_level = level / TILE_HEIGHT;
        let below = level % TILE_HEIGHT;
        // The node is the root of 2^below stored hashes at the tile level.
        let first = index << below;
        let count = 1u64 << below;
        let tile_index = first / TILE_WIDTH;
        let tile = self.tile(tile_level, tile_index).await?;
        let start = (first % TILE_WIDTH) as usize;
        let mut hashes: Vec<Hash> = tile
            .get(start..start + count as usize)
            .ok_or_else(|| {
                format!("tile {tile_level}/{tile_index} is too short for node {level}/{index}")
            })?
            .to_vec();
        while hashes.len() > 1 {
            hashes = hashes
                .chunks(2)
                .map(|pair| hash_children(&pair[0], &pair[1]))
                .collect();
        }
        Ok(hashes[0])
    }

    async fn tile(&mut self, level: u32, index: u64) -> Result<&Vec<Hash>, String> {
        if !self.cache.contains_key(&(level, index)) {
            let stored = self.tree_size >> (TILE_HEIGHT * level);
            let width = (stored - index * TILE_WIDTH).min(TILE_WIDTH);
            let path = tile_path(level, index);
            // A partial tile may be gone once the tile is full; its prefix is the same.
            let mut urls = vec![format!("{}/tile/{path}", self.base)];
            if width < TILE_WIDTH {
                urls.insert(0, format!("{}/tile/{path}.p/{width}", self.base));
            }
            let mut last = String::new();
            let mut found = None;
            for url in urls {
                match self.get_bytes(&url).await {
                    Ok(bytes) => {
                        found = Some(bytes);
                        break;
                    }
                    Err(e) => last = e,
                }
            }
            let bytes = found.ok_or(last)?;
            if bytes.len() % 32 != 0 || (bytes.len() as u64 / 32) < width {
                return Err(format!(
                    "tile {level}/{index} holds {} bytes, expected {width} hashes",
                    bytes.len()
                ));
            }
            let hashes = bytes
                .chunks(32)
                .take(width as usize)
                .map(|c| c.try_into().expect("32-byte chunks"))
                .collect();
            self.cache.insert((level, index), hashes);
        }
        Ok(&self.cache[&(level, index)])
    }

    async fn get_bytes(&self, url: &str) -> Result<Vec<u8>, String> {
        let response = self
            .http
            .get(url)
            .send()
            .await
            .map_err(|e| format!("{url}: {}", crate::registry::error_chain(&e)))?;
        if !response.status().is_success() {
            return Err(format!("{url}: {}", response.status()));
        }
        response
            .bytes()
            .await
            .map(|b| b.to_vec())
            .map_err(|e| format!("{url}: {e}"))
    }

    async fn get_text(&self, url: &str) -> Result<String, String> {
        String::from_utf8(self.get_bytes(url).await?).map_err(|_| format!("{url}: not UTF-8"))
    }
}

/// `tile/<L>/<N>` with N in three-digit groups, all but the last prefixed with `x`.
pub fn tile_path(level: u32, index: u64) -> String {
    let digits = index.to_string();
    let padded = format!("{}{digits}", "0".repeat((3 - digits.len() % 3) % 3));
    let groups: Vec<&str> = padded
        .as_bytes()
        .chunks(3)
        .map(|c| std::str::from_utf8(c).expect("ASCII digits"))
        .collect();
    let last = groups.len() - 1;
    let parts: Vec<String> = groups
        .iter()
        .enumerate()
        .map(|(i, g)| {
            if i < last {
                format!("x{g}")
            } else {
                (*g).to_owned()
            }
        })
        .collect();
    format!("{level}/{}", parts.join("/"))
}

fn largest_power_of_two_below(n: u64) -> u64 {
    debug_assert!(n > 1);
    1 << (63 - (n - 1).leading_zeros())
}

fn hash_children(left: &Hash, right: &Hash) -> Hash {
    let mut hash = Sha256::new();
    hash.update([1u8]);
    hash.update(left);
    hash.update(right);
    hash.finalize().into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tile_paths_follow_tlog_tiles() {
        assert_eq!(tile_path(0, 5), "0/005");
        assert_eq!(tile_path(1, 1000), "1/x001/000");
        assert_eq!(tile_path(2, 1234067), "2/x001/x234/067");
    }

    #[test]
    fn largest_power_of_two_below_is_strict() {
        assert_eq!(largest_power_of_two_below(2), 1);
        assert_eq!(largest_power_of_two_below(5), 4);
        assert_eq!(largest_power_of_two_below(8), 4);
        assert_eq!(largest_power_of_two_below(9), 8);
    }
}
