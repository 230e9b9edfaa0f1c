//! Reading a log's Merkle tree from its tiles (C2SP tlog-tiles): hashes of any subtree of a tree
//! of a given size, and from them an RFC 6962 consistency proof. Nothing read here is trusted:
//! a proof built from tiles only counts once it verifies against two signed checkpoints. Every
//! read is capped (a checkpoint at [`MAX_CHECKPOINT_BYTES`], a tile at its exact size), and the
//! log's words reach messages only through [`tcdist_core::text::sanitize`].

use std::collections::HashMap;
use std::fmt;
use std::time::Duration;

use sha2::{Digest as _, Sha256};

use tcdist_core::text::sanitize;

/// Hashes per full tile.
const TILE_WIDTH: u64 = 256;
/// Tree levels per tile level.
const TILE_HEIGHT: u32 = 8;
/// Bytes of a hash, and so of one tile entry.
const HASH_BYTES: u64 = 32;
/// A checkpoint is a few lines and signatures; anything longer is not one.
pub const MAX_CHECKPOINT_BYTES: usize = 64 << 10;
/// How much of what a log sent (an error, a URL it redirected to) a message quotes.
const MAX_QUOTED_CHARS: usize = 300;

/// Why a read from the log failed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TileError {
    /// The log could not be reached or did not answer (network, timeout, 5xx, 429): trying
    /// later may work, and nothing is known about the log.
    Unavailable(String),
    /// The log answered with something that is not what it must serve (a missing tile, a
    /// tile of the wrong size, an oversized or non-UTF-8 checkpoint).
    Invalid(String),
}

impl fmt::Display for TileError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TileError::Unavailable(reason) | TileError::Invalid(reason) => f.write_str(reason),
        }
    }
}

impl TileError {
    fn unavailable(url: &str, detail: &str) -> Self {
        TileError::Unavailable(quote(url, detail))
    }

    fn invalid(url: &str, detail: &str) -> Self {
        TileError::Invalid(quote(url, detail))
    }
}

/// `<url>: <detail>`, made safe to print.
fn quote(url: &str, detail: &str) -> String {
    sanitize(&format!("{url}: {detail}"), MAX_QUOTED_CHARS)
}

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
    pub async fn checkpoint(&self) -> Result<String, TileError> {
        let url = format!("{}/checkpoint", self.base);
        let bytes = self.get_bytes(&url, MAX_CHECKPOINT_BYTES).await?;
        String::from_utf8(bytes)
            .map_err(|_| TileError::invalid(&url, "the checkpoint is not UTF-8"))
    }

    /// An RFC 6962 consistency proof from size `old` to the reader's tree size. From an empty
    /// tree, and to a tree of the same size, the proof is empty.
    pub async fn consistency_proof(&mut self, old: u64) -> Result<Vec<Hash>, TileError> {
        if old > self.tree_size {
            return Err(TileError::Invalid(format!(
                "no consistency proof leads from a tree of {old} entries to a smaller one of {}",
                self.tree_size
            )));
        }
        let mut proof = Vec::new();
        if old > 0 {
            self.subproof(old, 0, self.tree_size, true, &mut proof)
                .await?;
        }
        Ok(proof)
    }

    /// RFC 6962 section 2.1.2, SUBPROOF(m, D[lo:hi], b), for 0 < m <= hi - lo.
    async fn subproof(
        &mut self,
        m: u64,
        lo: u64,
        hi: u64,
        whole: bool,
        proof: &mut Vec<Hash>,
    ) -> Result<(), TileError> {
        let n = hi - lo;
        if m == n {
            if !whole {
                proof.push(self.range_hash(lo, hi).await?);
            }
            return Ok(());
        }
        // 0 < m < n, so n >= 2.
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

    /// The Merkle tree hash of leaves `lo..hi`, for lo < hi.
    async fn range_hash(&mut self, lo: u64, hi: u64) -> Result<Hash, TileError> {
        let n = hi - lo;
        if n.is_power_of_two() && lo.is_multiple_of(n) {
            return self.node(n.trailing_zeros(), lo / n).await;
        }
        // Not a power of two, so n >= 3.
        let k = largest_power_of_two_below(n);
        let left = Box::pin(self.range_hash(lo, lo + k)).await?;
        let right = Box::pin(self.range_hash(lo + k, hi)).await?;
        Ok(hash_children(&left, &right))
    }

    /// The hash of the complete subtree at `level` (0 = leaves) and `index`.
    async fn node(&mut self, level: u32, index: u64) -> Result<Hash, TileError> {
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
                TileError::Invalid(format!(
                    "tile {tile_level}/{tile_index} is too short for node {level}/{index}"
                ))
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

    async fn tile(&mut self, level: u32, index: u64) -> Result<&Vec<Hash>, TileError> {
        if !self.cache.contains_key(&(level, index)) {
            let hashes = self.fetch_tile(level, index).await?;
            self.cache.insert((level, index), hashes);
        }
        Ok(&self.cache[&(level, index)])
    }

    /// The hashes of tile `level`/`index` that the reader's tree holds.
    async fn fetch_tile(&self, level: u32, index: u64) -> Result<Vec<Hash>, TileError> {
        let stored = self.tree_size >> (TILE_HEIGHT * level);
        let width = stored
            .checked_sub(index * TILE_WIDTH)
            .filter(|w| *w > 0)
            .ok_or_else(|| {
                TileError::Invalid(format!(
                    "tile {level}/{index} lies beyond a tree of {} entries",
                    self.tree_size
                ))
            })?
            .min(TILE_WIDTH);
        let path = tile_path(level, index);
        // A partial tile may be gone once the tile is full; its prefix is the same.
        let mut urls = vec![(format!("{}/tile/{path}", self.base), TILE_WIDTH)];
        if width < TILE_WIDTH {
            urls.insert(0, (format!("{}/tile/{path}.p/{width}", self.base), width));
        }
        let mut errors = Vec::new();
        for (url, served) in urls {
            match self.get_bytes(&url, (served * HASH_BYTES) as usize).await {
                Ok(bytes) if bytes.len() as u64 == served * HASH_BYTES => {
                    return Ok(bytes
                        .chunks_exact(HASH_BYTES as usize)
                        .take(width as usize)
                        .map(|c| c.try_into().expect("chunks of 32 bytes"))
                        .collect());
                }
                Ok(bytes) => errors.push(TileError::invalid(
                    &url,
                    &format!("holds {} bytes, expected {served} hashes", bytes.len()),
                )),
                Err(e) => errors.push(e),
            }
        }
        // Retryable if any of the tile's URLs could not be reached.
        let reason = errors
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join("; ");
        Err(
            if errors
                .iter()
                .any(|e| matches!(e, TileError::Unavailable(_)))
            {
                TileError::Unavailable(reason)
            } else {
                TileError::Invalid(reason)
            },
        )
    }

    /// The body at `url`, refused once it would exceed `cap` bytes.
    async fn get_bytes(&self, url: &str, cap: usize) -> Result<Vec<u8>, TileError> {
        let mut response = self
            .http
            .get(url)
            .send()
            .await
            .map_err(|e| TileError::unavailable(url, &tcdist_oci::registry::error_chain(&e)))?;
        let status = response.status();
        if !status.is_success() {
            let retryable =
                status.is_server_error() || status == reqwest::StatusCode::TOO_MANY_REQUESTS;
            let detail = status.to_string();
            return Err(if retryable {
                TileError::unavailable(url, &detail)
            } else {
                TileError::invalid(url, &detail)
            });
        }
        let too_big = || TileError::invalid(url, &format!("more than {cap} bytes"));
        if response.content_length().is_some_and(|n| n > cap as u64) {
            return Err(too_big());
        }
        let mut bytes = Vec::new();
        while let Some(chunk) = response
            .chunk()
            .await
            .map_err(|e| TileError::unavailable(url, &tcdist_oci::registry::error_chain(&e)))?
        {
            if bytes.len() + chunk.len() > cap {
                return Err(too_big());
            }
            bytes.extend_from_slice(&chunk);
        }
        Ok(bytes)
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

/// The largest power of two strictly below `n`, for n >= 2 (callers guarantee it: an empty
/// tree and a one-leaf tree are never split).
fn largest_power_of_two_below(n: u64) -> u64 {
    debug_assert!(n > 1);
    1 << (63 - (n - 1).leading_zeros())
}

/// RFC 6962's hash of a leaf: SHA-256 over 0x00 and the entry.
pub fn leaf_hash(entry: &[u8]) -> Hash {
    let mut hash = Sha256::new();
    hash.update([0u8]);
    hash.update(entry);
    hash.finalize().into()
}

/// RFC 6962's hash of an interior node.
pub fn hash_children(left: &Hash, right: &Hash) -> Hash {
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
