//! Log freshness and consistency: a verifier remembers the newest checkpoint it has seen of each
//! log (in the store) and, whenever it meets a checkpoint of another size (from a bundle, or
//! fetched from the log's tiles), checks that the smaller tree is a prefix of the larger one.
//! A log that rewrote its history (a fork, or a rewritten storage directory) fails that check.

use std::path::PathBuf;
use std::time::Duration;

use serde::Serialize;
use sigstore_types::{Checkpoint, Sha256Hash};

use crate::trust::tlog::TransparencyLog;
use crate::verify::tiles::TileReader;
use crate::verify::tlog::{LogInclusion, verify_checkpoint};

const TILES_TIMEOUT: Duration = Duration::from_secs(10);

/// Where the newest checkpoint seen of each log is kept: `<store>/.tlog/<log id hex>`.
#[derive(Clone, Debug)]
pub struct CheckpointStore {
    dir: PathBuf,
}

/// How fresh the log's view is.
#[derive(Clone, Debug, Serialize)]
#[serde(tag = "status", rename_all = "kebab-case")]
pub enum Freshness {
    /// The log's current checkpoint was fetched and everything seen is consistent with it.
    Checked { latest_tree_size: u64 },
    /// Consistency with the log's current state could not be checked (offline, or the log
    /// did not answer); what was checked is consistent.
    Unchecked { reason: String },
}

impl CheckpointStore {
    pub fn new(store: &std::path::Path) -> Self {
        CheckpointStore {
            dir: store.join(".tlog"),
        }
    }

    fn path(&self, log: &TransparencyLog) -> PathBuf {
        self.dir.join(hex::encode(log.key_id()))
    }

    /// The remembered checkpoint, re-verified (a file someone edited proves nothing).
    fn load(&self, log: &TransparencyLog) -> Option<Checkpoint> {
        let text = std::fs::read_to_string(self.path(log)).ok()?;
        verify_checkpoint(&text, log).ok()
    }

    fn save(&self, log: &TransparencyLog, checkpoint: &Checkpoint, text: &str) {
        // Best effort: failing to remember only weakens later checks, never this one.
        let _ = std::fs::create_dir_all(&self.dir);
        let path = self.path(log);
        let temp = path.with_extension(format!("tmp.{}", std::process::id()));
        if std::fs::write(&temp, text).is_ok() {
            if self
                .load(log)
                .is_none_or(|seen| seen.tree_size() <= checkpoint.tree_size())
            {
                let _ = std::fs::rename(&temp, &path);
            } else {
                let _ = std::fs::remove_file(&temp);
            }
        }
    }
}

/// Checks the entry's checkpoint against the remembered one and (online) the log's current one.
/// `Err` is a reason for [`crate::verify::rules::Rule::LogConsistency`].
pub async fn check(
    inclusion: &LogInclusion,
    log: &TransparencyLog,
    store: Option<&CheckpointStore>,
    online: bool,
) -> Result<Freshness, String> {
    let from_bundle = verify_checkpoint(&inclusion.checkpoint, log)?;
    let mut seen = vec![(from_bundle, inclusion.checkpoint.clone())];
    if let Some(remembered) = store.and_then(|s| s.load(log)) {
        let text =
            std::fs::read_to_string(store.expect("loaded from it").path(log)).unwrap_or_default();
        seen.push((remembered, text));
    }
    let latest = match (&log.tiles_url, online) {
        (_, false) => Err("offline: the log was not contacted".to_owned()),
        (None, true) => Err("the policy gives no url for the log's tiles".to_owned()),
        (Some(url), true) => fetch_latest(url, log).await?,
    };
    let unchecked = match latest {
        Ok((checkpoint, text)) => {
            seen.push((checkpoint, text));
            None
        }
        Err(reason) => Some(reason),
    };
    let (newest, newest_text) = seen
        .iter()
        .max_by_key(|(c, _)| c.tree_size())
        .cloned()
        .expect("the bundle's checkpoint is always there");
    for (older, _) in &seen {
        prove_consistent(older, &newest, log, unchecked.is_none()).await?;
    }
    // Only a proven view is remembered: unchecked, a bigger checkpoint from a bundle could be
    // a fork's, and remembering it would make the real log look forked later.
    if let (Some(store), None) = (store, &unchecked) {
        store.save(log, &newest, &newest_text);
    }
    Ok(match unchecked {
        None => Freshness::Checked {
            latest_tree_size: newest.tree_size(),
        },
        Some(reason) => Freshness::Unchecked { reason },
    })
}

/// The log's current checkpoint. Outer `Err`: the log answered with a checkpoint that does
/// not verify (refused); inner `Err`: it did not answer (freshness unchecked).
async fn fetch_latest(
    url: &str,
    log: &TransparencyLog,
) -> Result<Result<(Checkpoint, String), String>, String> {
    let reader = TileReader::new(url, 0, TILES_TIMEOUT)?;
    let text = match reader.checkpoint().await {
        Ok(text) => text,
        Err(e) => return Ok(Err(format!("the log did not answer: {e}"))),
    };
    let checkpoint = verify_checkpoint(&text, log)
        .map_err(|e| format!("the log's current checkpoint is refused: {e}"))?;
    Ok(Ok((checkpoint, text)))
}

/// `older` must be a prefix of `newer`. Same size: same root. Otherwise a consistency proof is
/// read from the tiles of `newer`, when the log can be reached.
async fn prove_consistent(
    older: &Checkpoint,
    newer: &Checkpoint,
    log: &TransparencyLog,
    reachable: bool,
) -> Result<(), String> {
    let describe =
        |c: &Checkpoint| format!("size {} root {}", c.tree_size(), c.root_hash().to_hex());
    if older.tree_size() == newer.tree_size() {
        if older.root_hash() != newer.root_hash() {
            return Err(format!(
                "log {:?} shows two different trees of {}: a forked log",
                log.origin,
                describe(older)
            ));
        }
        return Ok(());
    }
    let (Some(url), true) = (&log.tiles_url, reachable) else {
        // Cannot prove either way without the log; the caller reports it as unchecked.
        return Ok(());
    };
    let mut reader = TileReader::new(url, newer.tree_size(), TILES_TIMEOUT)?;
    let proof = reader
        .consistency_proof(older.tree_size())
        .await
        .map_err(|e| format!("reading a consistency proof from the log's tiles: {e}"))?;
    let proof: Vec<Sha256Hash> = proof.into_iter().map(Sha256Hash::new).collect();
    sigstore_merkle::verify_consistency_proof(
        older.tree_size(),
        newer.tree_size(),
        &proof,
        older.root_hash(),
        newer.root_hash(),
    )
    .map_err(|e| {
        format!(
            "log {:?} rewrote its history: the checkpoint of {} is not a prefix of {} ({e})",
            log.origin,
            describe(older),
            describe(newer)
        )
    })
}
