//! Freshness against a log served from memory: a real Ed25519 log key signs the checkpoints,
//! and a loopback HTTP server in the test serves them with the tree's tiles.

use std::collections::HashMap;
use std::io::{BufRead as _, BufReader, Write as _};
use std::net::TcpListener;
use std::sync::{Arc, Mutex};

use base64::Engine as _;
use ring::signature::{Ed25519KeyPair, KeyPair as _};
use sha2::Digest as _;
use sigstore_merkle::{hash_children, hash_leaf};

use super::*;
use crate::trust::tlog::LogKeyAlgorithm;

const ORIGIN: &str = "rekor.tcdist.test";
const NAME: &str = "stack";

/// A log key, the log as the policy would declare it, and what it has signed.
pub(crate) struct TestLog {
    key: Ed25519KeyPair,
    pub(crate) log: TransparencyLog,
}

impl TestLog {
    pub(crate) fn new(freshness: FreshnessMode) -> Self {
        let pkcs8 = Ed25519KeyPair::generate_pkcs8(&ring::rand::SystemRandom::new()).unwrap();
        let key = Ed25519KeyPair::from_pkcs8(pkcs8.as_ref()).unwrap();
        let raw = key.public_key().as_ref().to_vec();
        let mut spki = hex::decode("302a300506032b6570032100").unwrap();
        spki.extend_from_slice(&raw);
        let log = TransparencyLog {
            freshness,
            ..TransparencyLog::with_key((spki, raw, LogKeyAlgorithm::Ed25519), ORIGIN)
        };
        TestLog { key, log }
    }

    /// A checkpoint of the tree of `leaves`, signed by the log's key.
    pub(crate) fn checkpoint(&self, leaves: &[Vec<u8>]) -> String {
        let root = tree_hash(&leaf_hashes(leaves));
        let body = format!(
            "{ORIGIN}\n{}\n{}\n",
            leaves.len(),
            base64::engine::general_purpose::STANDARD.encode(root)
        );
        let mut signature = self.log.key_id()[..4].to_vec();
        signature.extend_from_slice(self.key.sign(body.as_bytes()).as_ref());
        format!(
            "{body}\n— {ORIGIN} {}\n",
            base64::engine::general_purpose::STANDARD.encode(signature)
        )
    }

    /// What a bundle proves for an entry of the tree of `leaves`.
    fn inclusion(&self, leaves: &[Vec<u8>]) -> LogInclusion {
        LogInclusion {
            log: NAME.to_owned(),
            log_index: 0,
            tree_size: leaves.len() as u64,
            root_hash: tree_hash(&leaf_hashes(leaves)),
            checkpoint: self.checkpoint(leaves),
        }
    }
}

/// `n` leaves; `fork` makes another tree of the same size.
pub(crate) fn leaves(n: u8, fork: bool) -> Vec<Vec<u8>> {
    (0..n).map(|i| vec![i, u8::from(fork)]).collect()
}

fn leaf_hashes(leaves: &[Vec<u8>]) -> Vec<[u8; 32]> {
    leaves.iter().map(|l| *hash_leaf(l).as_bytes()).collect()
}

/// RFC 6962 MTH.
fn tree_hash(hashes: &[[u8; 32]]) -> [u8; 32] {
    match hashes {
        [] => sha2::Sha256::digest([]).into(),
        [one] => *one,
        _ => {
            let k = (hashes.len() - 1).ilog2();
            let (left, right) = hashes.split_at(1 << k);
            let (left, right) = (tree_hash(left), tree_hash(right));
            *hash_children(&Sha256Hash::new(left), &Sha256Hash::new(right)).as_bytes()
        }
    }
}

/// A loopback HTTP server that answers GETs from `routes` (404 otherwise).
pub(crate) struct TileServer {
    pub(crate) url: String,
    routes: Routes,
}

/// Path → status line and body.
type Routes = Arc<Mutex<HashMap<String, (&'static str, Vec<u8>)>>>;

impl TileServer {
    pub(crate) fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let routes = Routes::default();
        let served = routes.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(mut stream) = stream else { continue };
                let mut request = String::new();
                let mut reader = BufReader::new(stream.try_clone().unwrap());
                if reader.read_line(&mut request).is_err() {
                    continue;
                }
                // The rest of the head is not needed.
                let mut line = String::new();
                while reader.read_line(&mut line).is_ok_and(|n| n > 2) {
                    line.clear();
                }
                let path = request.split_whitespace().nth(1).unwrap_or("/").to_owned();
                let route = served.lock().unwrap().get(&path).cloned();
                let (status, body) = route.unwrap_or(("404 Not Found", Vec::new()));
                let head = format!(
                    "HTTP/1.1 {status}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                    body.len()
                );
                let _ = stream.write_all(head.as_bytes());
                let _ = stream.write_all(&body);
            }
        });
        TileServer { url, routes }
    }

    pub(crate) fn serve(&self, path: &str, body: impl Into<Vec<u8>>) {
        self.answer(path, "200 OK", body.into());
    }

    fn answer(&self, path: &str, status: &'static str, body: Vec<u8>) {
        self.routes
            .lock()
            .unwrap()
            .insert(path.to_owned(), (status, body));
    }

    /// The log of `leaves` (fewer than 256): its checkpoint and its one partial tile.
    fn serve_log(&self, log: &TestLog, leaves: &[Vec<u8>]) {
        self.serve("/checkpoint", log.checkpoint(leaves));
        self.serve(
            &format!("/tile/0/000.p/{}", leaves.len()),
            leaf_hashes(leaves).concat(),
        );
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
            &self.log.inclusion(bundle),
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
        .into_error(&Digest::of(b"index"), &f.log.inclusion(&leaves(3, false)));
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
            .replacen(ORIGIN, evil, 1),
    );
    let reason = inconsistent_reason(f.check(&leaves(3, false), true).await);
    assert!(
        !reason.contains('\x1b') && !reason.contains('\r'),
        "{reason:?}"
    );
    assert!(reason.contains("[2Jrekor forged line"), "{reason}");
}
