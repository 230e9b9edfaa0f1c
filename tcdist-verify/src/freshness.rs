//! Log freshness and consistency: a verifier remembers the newest checkpoint it has seen of each
//! log (in the store) and, whenever it meets a checkpoint of another size (from a bundle, or
//! fetched from the log's tiles), checks that the smaller tree is a prefix of the larger one.
//! A log that rewrote its history (a fork, or a rewritten storage directory) fails that check.
//!
//! Two checkpoints of different sizes are proven consistent only with the log's tiles. When the
//! log cannot be reached, such a pair stays unproven: under `freshness = "best-effort"` the
//! release is accepted as [`Freshness::Unchecked`] with a reason that names the pair, under
//! `freshness = "required"` verification fails as unavailable (exit 3).

use std::ffi::{CStr, CString};
use std::fs::File;
use std::io::{Read as _, Write as _};
use std::os::fd::{AsRawFd as _, FromRawFd as _, OwnedFd};
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Serialize;
use sigstore_types::{Checkpoint, Sha256Hash};

use crate::tiles::{MAX_CHECKPOINT_BYTES, TileError, TileReader};
use crate::tlog::{LogInclusion, verify_checkpoint};
use crate::trust::tlog::{FreshnessMode, TransparencyLog};
use crate::witness::check_quorum;
use tcdist_core::digest::Digest;
use tcdist_core::error::{Error, Rejection};
use tcdist_core::rules::{Rule, SignatureFailure};

const TILES_TIMEOUT: Duration = Duration::from_secs(10);

/// Where the newest checkpoint seen of each log is kept: `<store>/.tlog/<log id hex>`. The
/// directory and its files are opened without following symlinks, and a checkpoint is written
/// to a new file of a random name in the same directory, then renamed over the old one, so
/// whoever can plant a link there cannot make tcverify read or write anything else.
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
    /// did not answer); what was checked is consistent, and `reason` names what was not.
    Unchecked { reason: String },
}

/// Why the freshness check did not pass.
#[derive(Debug, PartialEq, Eq)]
pub enum FreshnessFailure {
    /// The checkpoints seen are not one history: refused under
    /// [`Rule::LogConsistency`].
    Inconsistent(String),
    /// The policy requires freshness for the log and it could not be checked.
    Unavailable(String),
}

impl FreshnessFailure {
    /// The error the verification ends with, for the entry `inclusion` of release `index`.
    pub fn into_error(self, index: &Digest, inclusion: &LogInclusion) -> Error {
        match self {
            FreshnessFailure::Inconsistent(reason) => Rejection::Signature {
                index: index.clone(),
                failures: vec![SignatureFailure::new(
                    &format!("log {} entry {}", inclusion.log, inclusion.log_index),
                    Rule::LogConsistency,
                    reason,
                )],
            }
            .into(),
            FreshnessFailure::Unavailable(reason) => Error::Unavailable {
                operation: format!(
                    "checking the freshness of log {} (the policy sets freshness = \"required\")",
                    inclusion.log
                ),
                attempts: 1,
                detail: reason,
            },
        }
    }
}

/// A checkpoint seen, with where it was seen (for messages) and its signed text.
#[derive(Clone, Debug)]
struct Seen {
    place: &'static str,
    checkpoint: Checkpoint,
    text: String,
}

impl Seen {
    fn describe(&self) -> String {
        format!(
            "{} (size {}, root {})",
            self.place,
            self.checkpoint.tree_size(),
            self.checkpoint.root_hash().to_hex()
        )
    }
}

impl CheckpointStore {
    pub fn new(store: &Path) -> Self {
        CheckpointStore {
            dir: store.join(".tlog"),
        }
    }

    fn file_name(log: &TransparencyLog) -> CString {
        CString::new(hex::encode(log.key_id())).expect("hex has no NUL")
    }

    /// The remembered checkpoint, re-verified (a file someone edited proves nothing). A file
    /// that is missing, a symlink, too large or does not verify is no memory at all.
    fn load(&self, log: &TransparencyLog) -> Option<Seen> {
        Self::load_from(&open_dir(&self.dir).ok()?, log)
    }

    fn load_from(dir: &OwnedFd, log: &TransparencyLog) -> Option<Seen> {
        let text = read_capped(dir, &Self::file_name(log), MAX_CHECKPOINT_BYTES).ok()?;
        let checkpoint = verify_checkpoint(&text, log).ok()?;
        Some(Seen {
            place: "the checkpoint remembered in the store",
            checkpoint,
            text,
        })
    }

    /// Remembers `seen` unless a larger checkpoint is remembered already. Best effort: failing
    /// to remember only weakens later checks, never this one.
    fn save(&self, log: &TransparencyLog, seen: &Seen) {
        let _ = std::fs::create_dir_all(&self.dir);
        let Ok(dir) = open_dir(&self.dir) else {
            return;
        };
        let Ok(temp) = write_temp(&dir, seen.text.as_bytes()) else {
            return;
        };
        let keep = Self::load_from(&dir, log)
            .is_none_or(|old| old.checkpoint.tree_size() <= seen.checkpoint.tree_size());
        if !(keep && rename_in(&dir, &temp, &Self::file_name(log)).is_ok()) {
            let _ = unlink_in(&dir, &temp);
        }
    }
}

fn cstr(path: &Path) -> std::io::Result<CString> {
    use std::os::unix::ffi::OsStrExt as _;
    CString::new(path.as_os_str().as_bytes())
        .map_err(|_| std::io::Error::from(std::io::ErrorKind::InvalidInput))
}

fn cvt(rc: libc::c_int) -> std::io::Result<libc::c_int> {
    if rc < 0 {
        Err(std::io::Error::last_os_error())
    } else {
        Ok(rc)
    }
}

/// Opens `path` as a directory; a symlink in its place is refused (`ELOOP`).
fn open_dir(path: &Path) -> std::io::Result<OwnedFd> {
    let path = cstr(path)?;
    let flags = libc::O_RDONLY | libc::O_DIRECTORY | libc::O_NOFOLLOW | libc::O_CLOEXEC;
    // SAFETY: `path` is a NUL-terminated string that outlives the call.
    let fd = cvt(unsafe { libc::open(path.as_ptr(), flags) })?;
    // SAFETY: `fd` was just opened and is owned by nobody else.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Opens `name` inside `dir` with `flags` (plus `O_NOFOLLOW | O_CLOEXEC`).
fn open_in(dir: &OwnedFd, name: &CStr, flags: libc::c_int) -> std::io::Result<File> {
    let flags = flags | libc::O_NOFOLLOW | libc::O_CLOEXEC;
    let mode: libc::c_uint = 0o644;
    // SAFETY: `dir` is an open directory and `name` a NUL-terminated string, both valid for
    // the call.
    let fd = cvt(unsafe { libc::openat(dir.as_raw_fd(), name.as_ptr(), flags, mode) })?;
    // SAFETY: `fd` was just opened and is owned by nobody else.
    Ok(unsafe { File::from_raw_fd(fd) })
}

/// The text of regular file `name` in `dir`, refused when it holds more than `cap` bytes.
fn read_capped(dir: &OwnedFd, name: &CStr, cap: usize) -> std::io::Result<String> {
    let file = open_in(dir, name, libc::O_RDONLY | libc::O_NONBLOCK)?;
    if !file.metadata()?.is_file() {
        return Err(std::io::ErrorKind::InvalidInput.into());
    }
    let mut text = String::new();
    file.take(cap as u64 + 1).read_to_string(&mut text)?;
    if text.len() > cap {
        return Err(std::io::ErrorKind::FileTooLarge.into());
    }
    Ok(text)
}

/// Writes `bytes` to a new file of a random name in `dir` and returns its name.
fn write_temp(dir: &OwnedFd, bytes: &[u8]) -> std::io::Result<CString> {
    let mut random = [0u8; 16];
    ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut random)
        .map_err(|_| std::io::Error::other("no randomness for a temporary file name"))?;
    let name = CString::new(format!(".tmp-{}", hex::encode(random))).expect("hex has no NUL");
    let mut file = open_in(dir, &name, libc::O_WRONLY | libc::O_CREAT | libc::O_EXCL)?;
    if let Err(e) = file.write_all(bytes) {
        let _ = unlink_in(dir, &name);
        return Err(e);
    }
    Ok(name)
}

fn rename_in(dir: &OwnedFd, from: &CStr, to: &CStr) -> std::io::Result<()> {
    let fd = dir.as_raw_fd();
    // SAFETY: `dir` is an open directory and both names are NUL-terminated strings.
    cvt(unsafe { libc::renameat(fd, from.as_ptr(), fd, to.as_ptr()) }).map(drop)
}

fn unlink_in(dir: &OwnedFd, name: &CStr) -> std::io::Result<()> {
    // SAFETY: `dir` is an open directory and `name` a NUL-terminated string.
    cvt(unsafe { libc::unlinkat(dir.as_raw_fd(), name.as_ptr(), 0) }).map(drop)
}

/// Checks the entry's checkpoint against the remembered one and (online) the log's current one.
pub async fn check(
    inclusion: &LogInclusion,
    log: &TransparencyLog,
    store: Option<&CheckpointStore>,
    online: bool,
) -> Result<Freshness, FreshnessFailure> {
    let from_bundle = Seen {
        place: "the bundle's checkpoint",
        checkpoint: verify_checkpoint(&inclusion.checkpoint, log)
            .map_err(FreshnessFailure::Inconsistent)?,
        text: inclusion.checkpoint.clone(),
    };
    let mut seen = vec![from_bundle];
    // Where the policy counts witnesses, only a checkpoint they cosigned is remembered; the
    // bundle's and the log's own are compared with it, never kept.
    let witnessed = inclusion
        .witnessed_checkpoint
        .as_ref()
        .map(|text| {
            Ok::<_, FreshnessFailure>(Seen {
                place: "the witnessed checkpoint",
                checkpoint: verify_checkpoint(text, log).map_err(FreshnessFailure::Inconsistent)?,
                text: text.clone(),
            })
        })
        .transpose()?;
    seen.extend(witnessed.clone());
    seen.extend(store.and_then(|s| s.load(log)));
    let mut unproven = Vec::new();
    let reachable = match current_checkpoint(log, online).await? {
        Ok(current) => {
            seen.push(current);
            true
        }
        Err(reason) => {
            unproven.push(reason);
            false
        }
    };
    let newest = seen
        .iter()
        .max_by_key(|s| s.checkpoint.tree_size())
        .cloned()
        .expect("the bundle's checkpoint is always there");
    for older in &seen {
        if let Some(reason) = prove_consistent(older, &newest, log, reachable).await? {
            unproven.push(reason);
        }
    }
    if !unproven.is_empty() {
        let reason = unproven.join("; ");
        return match log.freshness {
            FreshnessMode::Required => Err(FreshnessFailure::Unavailable(reason)),
            FreshnessMode::BestEffort => Ok(Freshness::Unchecked { reason }),
        };
    }
    // Only a proven view is remembered: unproven, a bigger checkpoint from a bundle could be
    // a fork's, and remembering it would make the real log look forked later. Where the policy
    // counts witnesses, only the largest checkpoint they cosigned: the one beside the release,
    // or the log's current one when it serves their quorum (a log that does its own witnessing).
    let remembered = match &log.witnesses {
        Some(policy) => witnessed
            .iter()
            .chain(
                seen.iter()
                    .filter(|s| check_quorum(&s.checkpoint, &policy.keys, policy.quorum).is_ok()),
            )
            .max_by_key(|s| s.checkpoint.tree_size()),
        None => Some(&newest),
    };
    if let (Some(store), Some(remembered)) = (store, remembered) {
        store.save(log, remembered);
    }
    Ok(Freshness::Checked {
        latest_tree_size: newest.checkpoint.tree_size(),
    })
}

/// The log's current checkpoint. Outer `Err`: the log answered with a checkpoint that does
/// not verify (refused); inner `Err`: why it could not be had (freshness unchecked).
async fn current_checkpoint(
    log: &TransparencyLog,
    online: bool,
) -> Result<Result<Seen, String>, FreshnessFailure> {
    let url = match (&log.tiles_url, online) {
        (_, false) => return Ok(Err("offline: the log was not contacted".to_owned())),
        (None, true) => {
            return Ok(Err("the policy gives no url for the log's tiles".to_owned()));
        }
        (Some(url), true) => url,
    };
    let fetched = match TileReader::new(url, 0, TILES_TIMEOUT) {
        Ok(reader) => reader.checkpoint().await.map_err(|e| e.to_string()),
        Err(e) => Err(e),
    };
    let text = match fetched {
        Ok(text) => text,
        Err(e) => return Ok(Err(format!("the log did not answer: {e}"))),
    };
    let checkpoint = verify_checkpoint(&text, log).map_err(|e| {
        FreshnessFailure::Inconsistent(format!("the log's current checkpoint is refused: {e}"))
    })?;
    Ok(Ok(Seen {
        place: "the log's current checkpoint",
        checkpoint,
        text,
    }))
}

/// `older` must be a prefix of `newer`. Same size: same root. From an empty tree: trivially.
/// Otherwise a consistency proof is read from the tiles of `newer`, when the log can be
/// reached. `Ok(Some(reason))`: the pair could not be proven either way, and why.
async fn prove_consistent(
    older: &Seen,
    newer: &Seen,
    log: &TransparencyLog,
    reachable: bool,
) -> Result<Option<String>, FreshnessFailure> {
    let (old, new) = (&older.checkpoint, &newer.checkpoint);
    if old.tree_size() == new.tree_size() {
        if old.root_hash() != new.root_hash() {
            return Err(FreshnessFailure::Inconsistent(format!(
                "log {:?} shows two different trees of one size: {} and {}: a forked log",
                log.origin,
                older.describe(),
                newer.describe()
            )));
        }
        return Ok(None);
    }
    if old.tree_size() == 0 {
        return Ok(None);
    }
    let unproven = |why: &str| {
        Some(format!(
            "{} was not proven to be a prefix of {} ({why})",
            older.describe(),
            newer.describe()
        ))
    };
    let (Some(url), true) = (&log.tiles_url, reachable) else {
        return Ok(unproven("the log's tiles were not read"));
    };
    let proof = match TileReader::new(url, new.tree_size(), TILES_TIMEOUT) {
        Ok(mut reader) => reader.consistency_proof(old.tree_size()).await,
        Err(e) => Err(TileError::Unavailable(e)),
    };
    let proof = match proof {
        Ok(proof) => proof,
        Err(TileError::Unavailable(e)) => {
            return Ok(unproven(&format!("the log's tiles could not be read: {e}")));
        }
        Err(TileError::Invalid(e)) => {
            return Err(FreshnessFailure::Inconsistent(format!(
                "reading a consistency proof from the log's tiles: {e}"
            )));
        }
    };
    let proof: Vec<Sha256Hash> = proof.into_iter().map(Sha256Hash::new).collect();
    sigstore_merkle::verify_consistency_proof(
        old.tree_size(),
        new.tree_size(),
        &proof,
        old.root_hash(),
        new.root_hash(),
    )
    .map_err(|e| {
        FreshnessFailure::Inconsistent(format!(
            "log {:?} rewrote its history: {} is not a prefix of {} ({e})",
            log.origin,
            older.describe(),
            newer.describe()
        ))
    })?;
    Ok(None)
}

#[cfg(test)]
pub(crate) mod tests;
