//! Reading a log's Merkle tree from its tiles (C2SP tlog-tiles): hashes of any subtree of a tree
//! of a given size, and from them an RFC 6962 consistency proof. Nothing read here is trusted:
//! a proof built from tiles only counts once it verifies against two signed checkpoints. Every
//! read is capped (a checkpoint at [`MAX_CHECKPOINT_BYTES`], a tile at its exact size), and the
//! log's words reach messages only through [`tcdist_core::text::sanitize`].

use std::collections::HashMap;
use std::fmt;
use std::time::Duration;

use futures::{StreamExt as _, TryStreamExt as _};
use tcdist_core::text::sanitize;

/// Hashes per full tile.
pub const TILE_WIDTH: u64 = 256;
/// Tree levels per tile level.
const TILE_HEIGHT: u32 = 8;
/// Bytes of a hash, and so of one tile entry.
const HASH_BYTES: u64 = 32;
/// Tiles fetched at once when reading a range of them.
const PARALLEL_TILES: usize = 8;
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

pub use crate::merkle::Hash;
use crate::merkle::{hash_children, largest_power_of_two_below};

impl TileReader {
    pub fn new(base: &str, tree_size: u64, timeout: Duration) -> Result<Self, String> {
        let http = reqwest::Client::builder()
            .timeout(timeout)
            .build()
            .map_err(|e| format!("setting up the tile client: {e}"))?;
        Ok(Self::with_client(http, base, tree_size))
    }

    /// A reader over a client the caller already has (setting one up costs more than a
    /// request on loopback).
    pub fn with_client(http: reqwest::Client, base: &str, tree_size: u64) -> Self {
        TileReader {
            http,
            base: base.trim_end_matches('/').to_owned(),
            tree_size,
            cache: HashMap::new(),
        }
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
        let width = self.tile_width(level, index)?;
        let bytes = self
            .fetch_tile_bytes(&level.to_string(), index, width, |served| {
                (served * HASH_BYTES) as usize
            })
            .await?;
        if !(bytes.len() as u64).is_multiple_of(HASH_BYTES)
            || (bytes.len() as u64) < width * HASH_BYTES
        {
            return Err(TileError::Invalid(format!(
                "tile {level}/{index} holds {} bytes, expected {width} hashes",
                bytes.len()
            )));
        }
        Ok(bytes
            .chunks_exact(HASH_BYTES as usize)
            .take(width as usize)
            .map(|c| c.try_into().expect("chunks of 32 bytes"))
            .collect())
    }

    /// How many hashes of tile `level`/`index` the reader's tree holds.
    fn tile_width(&self, level: u32, index: u64) -> Result<u64, TileError> {
        let stored = self.tree_size >> (TILE_HEIGHT * level);
        Ok(stored
            .checked_sub(index * TILE_WIDTH)
            .filter(|w| *w > 0)
            .ok_or_else(|| {
                TileError::Invalid(format!(
                    "tile {level}/{index} lies beyond a tree of {} entries",
                    self.tree_size
                ))
            })?
            .min(TILE_WIDTH))
    }

    /// The bytes of tile `kind`/`index` (a level, or `entries`) holding `width` items: the
    /// partial tile when it is one, else the full tile (a partial tile may be gone once the
    /// tile is full; its prefix is the same). `cap` gives the most bytes a tile of a number of
    /// items may hold.
    async fn fetch_tile_bytes(
        &self,
        kind: &str,
        index: u64,
        width: u64,
        cap: impl Fn(u64) -> usize,
    ) -> Result<Vec<u8>, TileError> {
        let path = tile_path(kind, index);
        let mut urls = vec![(format!("{}/tile/{path}", self.base), TILE_WIDTH)];
        if width < TILE_WIDTH {
            urls.insert(0, (format!("{}/tile/{path}.p/{width}", self.base), width));
        }
        let mut errors = Vec::new();
        for (url, served) in urls {
            match self.get_bytes(&url, cap(served)).await {
                Ok(bytes) => return Ok(bytes),
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

    /// The leaf hashes of entries `from..to` (within the reader's tree), from the level-0
    /// tiles, fetched a few at a time. Nothing about them is known until they are checked
    /// against a signed root.
    pub async fn leaf_hashes(&self, from: u64, to: u64) -> Result<Vec<Hash>, TileError> {
        if from >= to {
            return Ok(Vec::new());
        }
        let tiles: Vec<Vec<Hash>> =
            futures::stream::iter((from / TILE_WIDTH)..=((to - 1) / TILE_WIDTH))
                .map(|index| self.fetch_tile(0, index))
                .buffered(PARALLEL_TILES)
                .try_collect()
                .await?;
        let skip = (from % TILE_WIDTH) as usize;
        Ok(tiles
            .into_iter()
            .flatten()
            .skip(skip)
            .take((to - from) as usize)
            .collect())
    }

    /// The entries of entry bundle `index` that the reader's tree holds (C2SP tlog-tiles:
    /// each entry a big-endian 16-bit length and its bytes).
    pub async fn entry_bundle(&self, index: u64) -> Result<Vec<Vec<u8>>, TileError> {
        let width = self.tile_width(0, index)?;
        let bytes = self
            .fetch_tile_bytes("entries", index, width, |served| {
                served as usize * (2 + u16::MAX as usize)
            })
            .await?;
        let mut entries = Vec::with_capacity(width as usize);
        let mut rest = bytes.as_slice();
        while entries.len() < width as usize {
            let invalid = || {
                TileError::Invalid(format!(
                    "entry bundle {index} ends after {} of its {width} entries",
                    entries.len()
                ))
            };
            let (length, tail) = rest.split_first_chunk::<2>().ok_or_else(invalid)?;
            let length = u16::from_be_bytes(*length) as usize;
            let entry = tail.get(..length).ok_or_else(invalid)?;
            entries.push(entry.to_vec());
            rest = &tail[length..];
        }
        Ok(entries)
    }

    /// An RFC 6962 inclusion proof of entry `index` in the reader's tree.
    pub async fn inclusion_proof(&mut self, index: u64) -> Result<Vec<Hash>, TileError> {
        if index >= self.tree_size {
            return Err(TileError::Invalid(format!(
                "entry {index} is not in a tree of {} entries",
                self.tree_size
            )));
        }
        let mut proof = Vec::new();
        self.path(index, 0, self.tree_size, &mut proof).await?;
        Ok(proof)
    }

    /// RFC 6962 section 2.1.1, PATH(m, D[lo:hi]), for lo <= m < hi; innermost sibling first.
    async fn path(
        &mut self,
        m: u64,
        lo: u64,
        hi: u64,
        proof: &mut Vec<Hash>,
    ) -> Result<(), TileError> {
        let n = hi - lo;
        if n == 1 {
            return Ok(());
        }
        let k = largest_power_of_two_below(n);
        if m - lo < k {
            Box::pin(self.path(m, lo, lo + k, proof)).await?;
            proof.push(self.range_hash(lo + k, hi).await?);
        } else {
            Box::pin(self.path(m, lo + k, hi, proof)).await?;
            proof.push(self.range_hash(lo, lo + k).await?);
        }
        Ok(())
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

/// `<kind>/<N>` (a level, or `entries`) with N in three-digit groups, all but the last
/// prefixed with `x`.
pub fn tile_path(kind: &str, index: u64) -> String {
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
    format!("{kind}/{}", parts.join("/"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tile_paths_follow_tlog_tiles() {
        assert_eq!(tile_path("0", 5), "0/005");
        assert_eq!(tile_path("1", 1000), "1/x001/000");
        assert_eq!(tile_path("2", 1234067), "2/x001/x234/067");
        assert_eq!(tile_path("entries", 1), "entries/001");
    }
}
