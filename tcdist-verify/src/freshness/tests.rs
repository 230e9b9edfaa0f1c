//! Freshness against a log served from memory: a real Ed25519 log key signs the checkpoints,
//! and a loopback HTTP server in the test serves them with the tree's tiles.

use std::net::TcpListener;

use super::*;
use crate::test_support::{LOG_ORIGIN, TestLog, TileServer, leaf_hashes, leaves, tree_hash};
use crate::trust::tlog::WitnessPolicy;

const NAME: &str = "stack";

/// What a bundle proves for an entry of the tree of `leaves`.
fn inclusion(log: &TestLog, leaves: &[Vec<u8>]) -> LogInclusion {
    LogInclusion {
        log: NAME.to_owned(),
        log_index: 0,
        tree_size: leaves.len() as u64,
        root_hash: tree_hash(&leaf_hashes(leaves)),
        checkpoint: log.checkpoint(leaves),
        witnesses: None,
        witnessed_checkpoint: None,
    }
}

/// A URL where nothing answers.
fn unreachable_url() -> String {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    format!("http://{}", listener.local_addr().unwrap())
}

struct Fixture {
    log: TestLog,
    store_dir: tempfile::TempDir,
}

impl Fixture {
    fn new(freshness: FreshnessMode, url: Option<String>) -> Self {
        let mut log = TestLog::new(freshness);
        log.log.tiles_url = url;
        Fixture {
            log,
            store_dir: tempfile::tempdir().unwrap(),
        }
    }

    fn store(&self) -> CheckpointStore {
        CheckpointStore::new(self.store_dir.path())
    }

    fn remembered_path(&self) -> PathBuf {
        self.store_dir
            .path()
            .join(".tlog")
            .join(hex::encode(self.log.log.key_id()))
    }

    fn remember(&self, leaves: &[Vec<u8>]) {
        std::fs::create_dir_all(self.store_dir.path().join(".tlog")).unwrap();
        std::fs::write(self.remembered_path(), self.log.checkpoint(leaves)).unwrap();
    }

    fn remembered(&self) -> Option<String> {
        std::fs::read_to_string(self.remembered_path()).ok()
    }

    async fn check(&self, bundle: &[Vec<u8>], online: bool) -> Result<Freshness, FreshnessFailure> {
        let store = self.store();
        check(
            &inclusion(&self.log, bundle),
            &self.log.log,
            Some(&store),
            online,
        )
        .await
    }
}

fn unchecked_reason(result: Result<Freshness, FreshnessFailure>) -> String {
    match result {
        Ok(Freshness::Unchecked { reason }) => reason,
        other => panic!("expected unchecked freshness, got {other:?}"),
    }
}

fn inconsistent_reason(result: Result<Freshness, FreshnessFailure>) -> String {
    match result {
        Err(FreshnessFailure::Inconsistent(reason)) => reason,
        other => panic!("expected a consistency failure, got {other:?}"),
    }
}

fn unavailable_reason(result: Result<Freshness, FreshnessFailure>) -> String {
    match result {
        Err(FreshnessFailure::Unavailable(reason)) => reason,
        other => panic!("expected unavailable, got {other:?}"),
    }
}

#[tokio::test]
async fn freshness_required_fails_if_log_unreachable() {
    let f = Fixture::new(FreshnessMode::Required, Some(unreachable_url()));
    let reason = unavailable_reason(f.check(&leaves(3, false), true).await);
    assert!(reason.contains("the log did not answer"), "{reason}");
    let reason = unavailable_reason(f.check(&leaves(3, false), false).await);
    assert!(reason.contains("offline"), "{reason}");
    // As an error: exit 3, naming the log.
    let error = FreshnessFailure::Unavailable(reason)
        .into_error(&Digest::of(b"index"), &inclusion(&f.log, &leaves(3, false)));
    assert_eq!(error.exit_code(), 3);
    assert!(error.to_string().contains("log stack"), "{error}");
}

#[tokio::test]
async fn freshness_best_effort_accepts_an_unreachable_log_as_unchecked() {
    let f = Fixture::new(FreshnessMode::BestEffort, Some(unreachable_url()));
    let reason = unchecked_reason(f.check(&leaves(3, false), true).await);
    assert!(reason.contains("the log did not answer"), "{reason}");
    assert!(f.remembered().is_none(), "nothing unproven is remembered");
}

#[tokio::test]
async fn unproven_pair_is_named_not_passed_when_log_unreachable() {
    for (remembered, bundle) in [(5, 7), (7, 5)] {
        let f = Fixture::new(FreshnessMode::BestEffort, Some(unreachable_url()));
        f.remember(&leaves(remembered, false));
        let before = f.remembered();
        let reason = unchecked_reason(f.check(&leaves(bundle, false), true).await);
        assert!(
            reason.contains(&format!("size {}", remembered.min(bundle)))
                && reason.contains(&format!("size {}", remembered.max(bundle)))
                && reason.contains("was not proven to be a prefix of"),
            "{reason}"
        );
        assert_eq!(f.remembered(), before, "the remembered checkpoint is kept");

        let required = Fixture {
            log: TestLog {
                log: TransparencyLog {
                    freshness: FreshnessMode::Required,
                    ..f.log.log.clone()
                },
                key: f.log.key,
            },
            store_dir: f.store_dir,
        };
        let reason = unavailable_reason(required.check(&leaves(bundle, false), false).await);
        assert!(
            reason.contains("was not proven to be a prefix of"),
            "{reason}"
        );
    }
}

#[tokio::test]
async fn consistent_checkpoints_are_proven_from_tiles_and_the_newest_remembered() {
    let server = TileServer::start();
    let f = Fixture::new(FreshnessMode::Required, Some(server.url.clone()));
    server.serve_log(&f.log, &leaves(7, false));
    f.remember(&leaves(5, false));
    let freshness = f.check(&leaves(6, false), true).await.unwrap();
    assert!(
        matches!(
            freshness,
            Freshness::Checked {
                latest_tree_size: 7
            }
        ),
        "{freshness:?}"
    );
    assert_eq!(f.remembered(), Some(f.log.checkpoint(&leaves(7, false))));
}

#[tokio::test]
async fn where_witnesses_count_only_a_witnessed_checkpoint_is_remembered() {
    let server = TileServer::start();
    let mut f = Fixture::new(FreshnessMode::Required, Some(server.url.clone()));
    f.log.log.witnesses = Some(WitnessPolicy {
        keys: Vec::new(),
        addresses: Vec::new(),
        quorum: 1,
        mode: FreshnessMode::Required,
    });
    server.serve_log(&f.log, &leaves(7, false));
    // The bundle's and the log's checkpoints are checked, and neither is kept.
    f.check(&leaves(6, false), true).await.unwrap();
    assert_eq!(f.remembered(), None);
    // The witnessed checkpoint is.
    let mut witnessed = inclusion(&f.log, &leaves(6, false));
    witnessed.witnessed_checkpoint = Some(f.log.checkpoint(&leaves(6, false)));
    check(&witnessed, &f.log.log, Some(&f.store()), true)
        .await
        .unwrap();
    assert_eq!(f.remembered(), Some(f.log.checkpoint(&leaves(6, false))));
}

#[tokio::test]
async fn forked_log_is_refused_even_offline() {
    let f = Fixture::new(FreshnessMode::BestEffort, None);
    f.remember(&leaves(7, true));
    let reason = inconsistent_reason(f.check(&leaves(7, false), false).await);
    assert!(reason.contains("a forked log"), "{reason}");
}

#[tokio::test]
async fn rewritten_history_is_refused() {
    let server = TileServer::start();
    let f = Fixture::new(FreshnessMode::BestEffort, Some(server.url.clone()));
    server.serve_log(&f.log, &leaves(7, false));
    f.remember(&leaves(5, true));
    let reason = inconsistent_reason(f.check(&leaves(7, false), true).await);
    assert!(reason.contains("rewrote its history"), "{reason}");
}

#[tokio::test]
async fn checkpoint_of_size_zero_is_handled() {
    let server = TileServer::start();
    let f = Fixture::new(FreshnessMode::Required, Some(server.url.clone()));
    server.serve_log(&f.log, &leaves(3, false));
    // An empty tree is a prefix of every tree: nothing to read from the tiles.
    f.remember(&[]);
    let freshness = f.check(&leaves(3, false), true).await.unwrap();
    assert!(matches!(
        freshness,
        Freshness::Checked {
            latest_tree_size: 3
        }
    ));
    // The log's current checkpoint may be of an empty tree too.
    server.serve("/checkpoint", f.log.checkpoint(&[]));
    let freshness = f.check(&leaves(3, false), true).await.unwrap();
    assert!(matches!(
        freshness,
        Freshness::Checked {
            latest_tree_size: 3
        }
    ));
    // A consistency proof from size 0 is empty, and none leads to a smaller tree.
    let mut reader = TileReader::new(&unreachable_url(), 5, TILES_TIMEOUT).unwrap();
    assert_eq!(reader.consistency_proof(0).await, Ok(Vec::new()));
    assert!(matches!(
        reader.consistency_proof(6).await,
        Err(TileError::Invalid(_))
    ));
}

#[tokio::test]
async fn remembered_checkpoint_symlink_not_followed() {
    let server = TileServer::start();
    let f = Fixture::new(FreshnessMode::BestEffort, Some(server.url.clone()));
    server.serve_log(&f.log, &leaves(7, false));
    // A link planted at .tlog/<id> to a forked checkpoint elsewhere: read, it would refuse.
    let elsewhere = tempfile::tempdir().unwrap();
    let target = elsewhere.path().join("forked");
    let forked = f.log.checkpoint(&leaves(7, true));
    std::fs::write(&target, &forked).unwrap();
    std::fs::create_dir(f.store_dir.path().join(".tlog")).unwrap();
    std::os::unix::fs::symlink(&target, f.remembered_path()).unwrap();

    let freshness = f.check(&leaves(7, false), true).await.unwrap();
    assert!(matches!(
        freshness,
        Freshness::Checked {
            latest_tree_size: 7
        }
    ));
    // The link was replaced, not written through.
    assert!(!f.remembered_path().is_symlink());
    assert_eq!(std::fs::read_to_string(&target).unwrap(), forked);
}

#[tokio::test]
async fn tlog_directory_symlink_not_followed() {
    let server = TileServer::start();
    let f = Fixture::new(FreshnessMode::BestEffort, Some(server.url.clone()));
    server.serve_log(&f.log, &leaves(7, false));
    let elsewhere = tempfile::tempdir().unwrap();
    let forked = f.log.checkpoint(&leaves(7, true));
    let planted = elsewhere.path().join(hex::encode(f.log.log.key_id()));
    std::fs::write(&planted, &forked).unwrap();
    std::os::unix::fs::symlink(elsewhere.path(), f.store_dir.path().join(".tlog")).unwrap();

    let freshness = f.check(&leaves(7, false), true).await.unwrap();
    assert!(matches!(
        freshness,
        Freshness::Checked {
            latest_tree_size: 7
        }
    ));
    assert_eq!(std::fs::read_to_string(&planted).unwrap(), forked);
    assert_eq!(std::fs::read_dir(elsewhere.path()).unwrap().count(), 1);
}

#[tokio::test]
async fn oversized_remembered_checkpoint_is_ignored() {
    let f = Fixture::new(FreshnessMode::BestEffort, None);
    f.remember(&leaves(7, true));
    let mut padded = f.remembered().unwrap();
    padded.push_str(&" ".repeat(MAX_CHECKPOINT_BYTES));
    std::fs::write(f.remembered_path(), padded).unwrap();
    // Read, the forked checkpoint would refuse the release.
    unchecked_reason(f.check(&leaves(7, false), false).await);
}

#[tokio::test]
async fn tile_larger_than_its_size_is_refused() {
    let server = TileServer::start();
    let mut tile = leaf_hashes(&leaves(7, false)).concat();
    tile.extend_from_slice(&[0; 32]);
    server.serve("/tile/0/000.p/7", tile);
    let mut reader = TileReader::new(&server.url, 7, TILES_TIMEOUT).unwrap();
    let Err(TileError::Invalid(reason)) = reader.consistency_proof(5).await else {
        panic!("an oversized tile should be refused");
    };
    assert!(reason.contains("000.p/7: more than 224 bytes"), "{reason}");
}

#[tokio::test]
async fn entry_bundle_larger_than_its_entries_can_be_is_refused() {
    // Three entries of at most 64 KiB each and their lengths, and one byte more: what a
    // hostile log would stream to a monitor without end.
    let server = TileServer::start();
    let cap = 3 * (2 + usize::from(u16::MAX));
    server.serve("/tile/entries/000.p/3", vec![0xff; cap + 1]);
    let reader = TileReader::new(&server.url, 3, TILES_TIMEOUT).unwrap();
    let Err(TileError::Invalid(reason)) = reader.entry_bundle(0).await else {
        panic!("an oversized entry bundle should be refused");
    };
    assert!(
        reason.contains(&format!("entries/000.p/3: more than {cap} bytes")),
        "{reason}"
    );
    // One that ends inside its second entry.
    server.serve(
        "/tile/entries/000.p/3",
        [&[0, 1, b'a', 0, 9][..], b"short"].concat(),
    );
    let Err(TileError::Invalid(reason)) = reader.entry_bundle(0).await else {
        panic!("a cut entry bundle should be refused");
    };
    assert!(
        reason.contains("entry bundle 0 ends after 1 of its 3 entries"),
        "{reason}"
    );
}

#[tokio::test]
async fn checkpoint_over_the_size_cap_is_refused() {
    let server = TileServer::start();
    server.serve("/checkpoint", vec![b'a'; MAX_CHECKPOINT_BYTES + 1]);
    let reader = TileReader::new(&server.url, 0, TILES_TIMEOUT).unwrap();
    assert!(matches!(
        reader.checkpoint().await,
        Err(TileError::Invalid(reason)) if reason.contains("more than 65536 bytes")
    ));
}

#[tokio::test]
async fn missing_tile_is_refused_but_unreachable_tiles_leave_freshness_unchecked() {
    let server = TileServer::start();
    let f = Fixture::new(FreshnessMode::BestEffort, Some(server.url.clone()));
    server.serve("/checkpoint", f.log.checkpoint(&leaves(7, false)));
    f.remember(&leaves(5, false));
    let reason = inconsistent_reason(f.check(&leaves(7, false), true).await);
    assert!(reason.contains("404"), "{reason}");
    server.answer("/tile/0/000.p/7", "503 Service Unavailable", Vec::new());
    let reason = unchecked_reason(f.check(&leaves(7, false), true).await);
    assert!(
        reason.contains("503") && reason.contains("was not proven to be a prefix of"),
        "{reason}"
    );
}

#[tokio::test]
async fn log_text_is_sanitized_before_it_is_printed() {
    let server = TileServer::start();
    let f = Fixture::new(FreshnessMode::BestEffort, Some(server.url.clone()));
    let evil = "\x1b[2Jrekor\rforged line";
    server.serve(
        "/checkpoint",
        f.log
            .checkpoint(&leaves(3, false))
            .replacen(LOG_ORIGIN, evil, 1),
    );
    let reason = inconsistent_reason(f.check(&leaves(3, false), true).await);
    assert!(
        !reason.contains('\x1b') && !reason.contains('\r'),
        "{reason:?}"
    );
    assert!(reason.contains("[2Jrekor forged line"), "{reason}");
}
