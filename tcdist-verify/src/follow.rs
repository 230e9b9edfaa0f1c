//! Following a transparency log from a position one keeps: each step fetches the log's
//! checkpoint, checks it is signed by the log's key and extends the last one accepted
//! (a consistency proof from the tiles), then reads the leaf hashes of the new entries from
//! the level-0 tiles and proves them by recomputing the new root from the compact range kept
//! for the old size. Entries are then read from the entry bundles and each must hash to its
//! proven leaf before a byte of it is parsed. What fails is either the log being out of
//! reach (try again) or proof that the log lied (a fork, tiles or entries that do not match
//! the signed tree).

use std::time::Duration;

use sigstore_types::{Checkpoint, Sha256Hash};

use crate::merkle::{CompactRange, Hash, leaf_hash};
use crate::tiles::{TILE_WIDTH, TileError, TileReader};
use crate::tlog::verify_checkpoint;
use crate::trust::tlog::TransparencyLog;

/// Why a step could not be taken.
#[derive(Debug)]
pub enum FollowError {
    /// The log could not be read; nothing is known.
    Unavailable(String),
    /// The log contradicted itself or what was accepted before. `checkpoints` are the signed
    /// checkpoints that show it (older first), as text.
    Tamper {
        reason: String,
        checkpoints: Vec<String>,
    },
}

/// A checkpoint accepted, and the proven leaf hashes from the follower's position to it.
pub struct Step {
    pub checkpoint_text: String,
    pub checkpoint: Checkpoint,
    /// Leaf hashes of entries `from..checkpoint.tree_size()`.
    pub from: u64,
    pub leaf_hashes: Vec<Hash>,
    reader: TileReader,
    url: String,
    timeout: Duration,
}

/// One step of following `log`: `accepted` is the last checkpoint accepted (text), `range`
/// the compact range of the leaves read so far (at most the accepted size).
pub async fn step(
    log: &TransparencyLog,
    accepted: Option<&str>,
    range: &CompactRange,
    timeout: Duration,
) -> Result<Step, FollowError> {
    let url = log.tiles_url.as_deref().ok_or_else(|| {
        FollowError::Unavailable(format!(
            "the policy gives no url for the tiles of log {:?}",
            log.origin
        ))
    })?;
    let checkpoint_text = TileReader::new(url, 0, timeout)
        .map_err(FollowError::Unavailable)?
        .checkpoint()
        .await
        .map_err(|e| tile_failure(e, &[]))?;
    let checkpoint = verify_checkpoint(&checkpoint_text, log).map_err(|e| FollowError::Tamper {
        reason: format!("the log served a checkpoint it did not sign: {e}"),
        checkpoints: vec![checkpoint_text.clone()],
    })?;
    let size = checkpoint.tree_size();
    let mut reader = TileReader::new(url, size, timeout).map_err(FollowError::Unavailable)?;
    if let Some(old_text) = accepted {
        let old = verify_checkpoint(old_text, log).map_err(|e| FollowError::Tamper {
            reason: format!("the checkpoint accepted before no longer verifies: {e}"),
            checkpoints: vec![old_text.to_owned()],
        })?;
        let both = vec![old_text.to_owned(), checkpoint_text.clone()];
        prove_extends(&old, &checkpoint, &mut reader)
            .await
            .map_err(|e| match e {
                FollowError::Tamper { reason, .. } => FollowError::Tamper {
                    reason,
                    checkpoints: both.clone(),
                },
                other => other,
            })?;
    }
    if range.size() > size {
        return Err(FollowError::Tamper {
            reason: format!(
                "the log's checkpoint is of {size} entries, and {} were read from it before",
                range.size()
            ),
            checkpoints: vec![checkpoint_text],
        });
    }
    let leaf_hashes = reader
        .leaf_hashes(range.size(), size)
        .await
        .map_err(|e| tile_failure(e, std::slice::from_ref(&checkpoint_text)))?;
    let mut extended = range.clone();
    for leaf in &leaf_hashes {
        extended.push(*leaf);
    }
    if extended.root() != *checkpoint.root_hash().as_bytes() {
        return Err(FollowError::Tamper {
            reason: format!(
                "the log's tiles for entries {}..{size} do not lead to its checkpoint's root",
                range.size()
            ),
            checkpoints: vec![checkpoint_text],
        });
    }
    Ok(Step {
        from: range.size(),
        checkpoint_text,
        checkpoint,
        leaf_hashes,
        reader,
        url: url.to_owned(),
        timeout,
    })
}

/// `old` must be a prefix of `new`: the same root at the same size, or a consistency proof.
async fn prove_extends(
    old: &Checkpoint,
    new: &Checkpoint,
    reader: &mut TileReader,
) -> Result<(), FollowError> {
    let tamper = |reason: String| FollowError::Tamper {
        reason,
        checkpoints: Vec::new(),
    };
    let (m, n) = (old.tree_size(), new.tree_size());
    if n < m {
        return Err(tamper(format!(
            "the log went back from {m} entries to {n}: a log only grows"
        )));
    }
    if n == m {
        return if old.root_hash() == new.root_hash() {
            Ok(())
        } else {
            Err(tamper(format!(
                "the log signed two different trees of {n} entries: a forked log"
            )))
        };
    }
    if m == 0 {
        return Ok(());
    }
    let proof = reader
        .consistency_proof(m)
        .await
        .map_err(|e| tile_failure(e, &[]))?;
    let proof: Vec<Sha256Hash> = proof.into_iter().map(Sha256Hash::new).collect();
    sigstore_merkle::verify_consistency_proof(m, n, &proof, old.root_hash(), new.root_hash())
        .map_err(|e| {
            tamper(format!(
                "the tree of {n} entries does not extend the tree of {m} accepted before ({e}): \
                 a forked log"
            ))
        })
}

fn tile_failure(e: TileError, checkpoints: &[String]) -> FollowError {
    match e {
        TileError::Unavailable(reason) => FollowError::Unavailable(reason),
        TileError::Invalid(reason) => FollowError::Tamper {
            reason: format!("the log served a tile it must not: {reason}"),
            checkpoints: checkpoints.to_vec(),
        },
    }
}

/// Entries of a step, read a bundle at a time, each proven before it is handed out.
impl Step {
    pub fn size(&self) -> u64 {
        self.checkpoint.tree_size()
    }

    /// The entries of the bundle that holds entry `index` (from `index` on, up to the end
    /// of the bundle or of the step), each checked against its proven leaf hash.
    pub async fn entries_from(&self, index: u64) -> Result<Vec<(u64, Vec<u8>)>, FollowError> {
        let bundle = index / TILE_WIDTH;
        let entries = self
            .reader
            .entry_bundle(bundle)
            .await
            .map_err(|e| tile_failure(e, std::slice::from_ref(&self.checkpoint_text)))?;
        let mut proven = Vec::new();
        for (offset, entry) in entries.into_iter().enumerate() {
            let at = bundle * TILE_WIDTH + offset as u64;
            if at < index || at < self.from {
                continue;
            }
            let Some(expected) = self.leaf_hashes.get((at - self.from) as usize) else {
                break;
            };
            if leaf_hash(&entry) != *expected {
                return Err(FollowError::Tamper {
                    reason: format!(
                        "entry {at} served by the log does not hash to its leaf in the signed tree"
                    ),
                    checkpoints: vec![self.checkpoint_text.clone()],
                });
            }
            proven.push((at, entry));
        }
        Ok(proven)
    }

    /// An inclusion proof of entry `index` in this step's tree (for a portable proof).
    pub async fn inclusion_proof(&self, index: u64) -> Result<Vec<Hash>, FollowError> {
        TileReader::new(&self.url, self.size(), self.timeout)
            .map_err(FollowError::Unavailable)?
            .inclusion_proof(index)
            .await
            .map_err(|e| tile_failure(e, std::slice::from_ref(&self.checkpoint_text)))
    }
}
