//! One round of the monitor: refresh the trust domains' CA keys, take a step along every log
//! the policy trusts (checkpoint, consistency, proven leaf hashes), read the ledger after the
//! checkpoints (so every entry they hold had its intent written before), then read and judge
//! every new entry and check the ledger's records against the log. Progress is saved as it
//! goes; alerts are raised once each.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::time::Duration;

use anyhow::Result;
use distd_api::ledger::{CheckedLedger, LedgerEvent};
use futures::{StreamExt as _, TryStreamExt as _};
use jiff::{SignedDuration, Timestamp};
use serde_json::json;
use sigstore_types::Checkpoint;
use tcdist_oci::bundle::{
    Checkpoint as BundleCheckpoint, InclusionProof, KindVersion, LogId, TransparencyLogEntry,
};
use tcdist_verify::follow::{self, FollowError, Step};
use tcdist_verify::merkle::leaf_hash;
use tcdist_verify::policy::Policy;
use tcdist_verify::tlog::entry::EntryKind;
use tcdist_verify::trust::tlog::TransparencyLog;
use tcdist_verify::watch::{Watchlist, subject_key_id};
use tcdist_verify::witness::check_quorum;
use tcdist_verify::witness::client::{Cosigning, WitnessClient};

use super::alert::{Alert, AlertClass};
use super::judge::{Intents, Verdict, judge};
use super::state::{LogState, MonitorState, StateDir, write_atomic};
use crate::ledger::Ledger;
use crate::sign::witness::Witnesses;

/// Entry bundles read at once.
const PARALLEL_BUNDLES: usize = 8;
/// Progress is saved after this many bundles.
const SAVE_EVERY_BUNDLES: usize = 16;

pub struct Monitor {
    policy: Policy,
    /// The logs the policy trusts, each once.
    logs: Vec<TransparencyLog>,
    /// By log origin, for each log whose witnesses the policy counts: their client, or why
    /// there is none.
    witnesses: BTreeMap<String, std::result::Result<WitnessClient, String>>,
    ledger: Ledger,
    state_dir: StateDir,
    /// How long a log may go unread to its checkpoint before that is an operational alert.
    max_lag: SignedDuration,
    timeout: Duration,
}

/// What a round found.
#[derive(Default)]
pub struct Round {
    /// Alerts raised for the first time (kept until acknowledged).
    pub raised: Vec<Alert>,
    /// This round's operational alerts (not kept).
    pub operational: Vec<Alert>,
    /// Per log: origin, entries read, the log's size.
    pub progress: Vec<(String, u64, u64)>,
}

impl Monitor {
    /// The monitor of the logs `policy` trusts; their witnesses are asked at the addresses the
    /// policy gives, else at those of `witnesses_file` (the file distd signs with).
    pub fn new(
        policy: Policy,
        witnesses_file: Option<&Path>,
        ledger: Ledger,
        state_dir: StateDir,
        max_lag: SignedDuration,
        timeout: Duration,
    ) -> Self {
        let logs = watched_logs(&policy);
        let witnesses = logs
            .iter()
            .filter_map(|log| {
                let policy = log.witnesses.as_ref()?;
                let client = match (witnesses_file, &log.tiles_url) {
                    _ if !policy.addresses.is_empty() => log.witness_client(),
                    (Some(file), Some(tiles)) => Witnesses::load(file, tiles)
                        .map(Witnesses::into_client)
                        .map_err(|e| format!("{e:#}")),
                    (Some(_), None) => log.witness_client(),
                    (None, _) => Err("the monitor does not know where they are (a url for each \
                                      witness in the policy, or --witnesses)"
                        .to_owned()),
                };
                Some((log.origin.clone(), client))
            })
            .collect();
        Monitor {
            policy,
            logs,
            witnesses,
            ledger,
            state_dir,
            max_lag,
            timeout,
        }
    }

    pub fn state_dir(&self) -> &StateDir {
        &self.state_dir
    }

    pub async fn round(&self, state: &mut MonitorState) -> Result<Round> {
        let mut round = Round::default();
        self.refresh_ca_keys(state, &mut round).await;
        let logs = &self.logs;
        let mut steps = Vec::new();
        for log in logs {
            let log_state = state.logs.entry(log.origin.clone()).or_default();
            let range = log_state.compact_range()?;
            match follow::step(log, log_state.checkpoint.as_deref(), &range, self.timeout).await {
                Ok(step) => steps.push((log, step)),
                Err(FollowError::Unavailable(reason)) => round.operational.push(
                    Alert::new(
                        AlertClass::Operational,
                        format!("unreachable:{}", log.origin),
                        format!("log {:?} could not be read: {reason}", log.origin),
                    )
                    .at(&log.origin, None),
                ),
                Err(FollowError::Tamper {
                    reason,
                    checkpoints,
                }) => {
                    let proof = json!({ "reason": &reason, "checkpoints": checkpoints });
                    let alert = Alert::new(
                        AlertClass::Tamper,
                        format!("tamper:{}:{reason}", log.origin),
                        format!("log {:?}: {reason}", log.origin),
                    )
                    .at(&log.origin, None);
                    self.raise(state, &mut round, alert, Some(proof))?;
                }
            }
        }
        // Read after the checkpoints: an entry they hold had its intent written before.
        if let Some(ledger) = self.read_ledger(state, &mut round).await? {
            let intents = Intents::of(&ledger);
            let watchlist = Watchlist::new(
                &self.policy,
                state
                    .ca_key_ids
                    .iter()
                    .filter_map(|id| hex::decode(id).ok())
                    .collect(),
            );
            for (log, mut step) in steps {
                match self.witnessed(log, &step).await {
                    Ok(Some(note)) => step.checkpoint_text = note,
                    Ok(None) => continue,
                    Err(alert) if alert.class == AlertClass::Operational => {
                        round.operational.push(alert);
                        continue;
                    }
                    Err(alert) => {
                        let proof = json!({ "checkpoints": [&step.checkpoint_text] });
                        self.raise(state, &mut round, alert, Some(proof))?;
                        continue;
                    }
                }
                self.read_entries(state, &mut round, log, &step, &watchlist, &intents)
                    .await?;
                self.check_ledger_records(state, &mut round, log, &ledger)?;
            }
        }
        let now = Timestamp::now();
        for log in logs {
            let log_state = state.logs.entry(log.origin.clone()).or_default();
            let behind = log_state
                .caught_up_at
                .is_none_or(|at| now.duration_since(at) > self.max_lag);
            if behind
                && !round
                    .operational
                    .iter()
                    .any(|a| a.log.as_deref() == Some(&log.origin))
            {
                round.operational.push(
                    Alert::new(
                        AlertClass::Operational,
                        format!("behind:{}", log.origin),
                        format!(
                            "log {:?} has not been read to its checkpoint {}",
                            log.origin,
                            log_state.caught_up_at.map_or_else(
                                || "yet".to_owned(),
                                |at| format!("since {at} (more than {:#})", self.max_lag)
                            )
                        ),
                    )
                    .at(&log.origin, Some(log_state.position)),
                );
            }
        }
        self.state_dir.save(state)?;
        round.operational.retain(|alert| {
            let log_state = alert.log.as_ref().and_then(|log| state.logs.get(log));
            // An unreachable log read recently enough is not yet worth an alert.
            log_state
                .and_then(|s| s.caught_up_at)
                .is_none_or(|at| now.duration_since(at) > self.max_lag)
        });
        Ok(round)
    }

    /// The step's checkpoint cosigned by the policy's quorum of the log's witnesses (the
    /// monitor asks them, as any witness client may): a checkpoint they refuse, or that is
    /// older than one they cosigned, is a tree they never saw (`tamper`); witnesses out of
    /// reach are `operational`. `Ok(None)`: the log moved on meanwhile; next round.
    async fn witnessed(&self, log: &TransparencyLog, step: &Step) -> Result<Option<String>, Alert> {
        let Some(policy) = &log.witnesses else {
            return Ok(Some(step.checkpoint_text.clone()));
        };
        let origin = &log.origin;
        let operational = |why: String| {
            Alert::new(
                AlertClass::Operational,
                format!("witnesses:{origin}"),
                format!("the witnesses of log {origin:?}: {why}"),
            )
            .at(origin, None)
        };
        let tamper = |why: String| {
            Alert::new(
                AlertClass::Tamper,
                format!("unwitnessed:{origin}:{}", step.size()),
                format!(
                    "log {origin:?} showed a checkpoint of size {} that its witnesses did not \
                     cosign: {why}",
                    step.size()
                ),
            )
            .at(origin, None)
        };
        // A log that does its own witnessing serves its checkpoint cosigned already.
        let checkpoint = Checkpoint::from_text(&step.checkpoint_text)
            .map_err(|e| operational(format!("the checkpoint does not parse: {e}")))?;
        if check_quorum(&checkpoint, &policy.keys, policy.quorum).is_ok() {
            return Ok(Some(step.checkpoint_text.clone()));
        }
        let client = match self.witnesses.get(origin) {
            Some(Ok(client)) => client,
            Some(Err(why)) => return Err(operational(why.clone())),
            None => return Err(operational("no witness client".into())),
        };
        match client.cosign(&step.checkpoint_text).await {
            Ok(Cosigning::Quorum { note, .. }) => {
                let checkpoint = Checkpoint::from_text(&note)
                    .map_err(|e| operational(format!("their cosigned note does not parse: {e}")))?;
                check_quorum(&checkpoint, &policy.keys, policy.quorum)
                    .map_err(|e| operational(format!("the policy's quorum: {e}")))?;
                Ok(Some(note))
            }
            Ok(Cosigning::Ahead(size)) => {
                let current = client
                    .tiles(0)
                    .checkpoint()
                    .await
                    .map_err(|e| operational(e.to_string()))?;
                match Checkpoint::from_text(&current) {
                    Ok(current) if current.tree_size() >= size => Ok(None),
                    _ => Err(tamper(format!(
                        "they already cosigned a tree of {size} entries, larger than the log's \
                         newest checkpoint"
                    ))),
                }
            }
            Ok(Cosigning::Short { refused, detail }) if !refused.is_empty() => Err(tamper(detail)),
            Ok(Cosigning::Short { detail, .. }) => Err(operational(detail)),
            Err(e) => Err(operational(e)),
        }
    }

    /// Adds the subject key IDs of the trust domains' current CA certificates to those kept.
    async fn refresh_ca_keys(&self, state: &mut MonitorState, round: &mut Round) {
        let domains: BTreeSet<String> = self
            .policy
            .trust()
            .domains
            .keys()
            .map(ToString::to_string)
            .collect();
        for domain in domains {
            match self.policy.trust_domain_authorities(&domain).await {
                Ok(authorities) => state.ca_key_ids.extend(
                    authorities
                        .unwrap_or_default()
                        .iter()
                        .filter_map(|a| subject_key_id(a.certificate.as_ref()))
                        .map(hex::encode),
                ),
                Err(e) => round.operational.push(Alert::new(
                    AlertClass::Operational,
                    format!("bundle:{domain}"),
                    format!(
                        "the CA certificates of trust domain {domain} could not be read ({e}); \
                         entries are matched against the CA keys seen before"
                    ),
                )),
            }
        }
    }

    /// The ledger, checked against the head pinned last round. `None` when it cannot be
    /// relied on this round (out of reach, or broken), so no entry is judged.
    async fn read_ledger(
        &self,
        state: &mut MonitorState,
        round: &mut Round,
    ) -> Result<Option<CheckedLedger>> {
        let ledger = match self.ledger.read().await {
            Ok(ledger) => ledger,
            Err(e) if is_rejection(&e) => {
                let alert = Alert::new(
                    AlertClass::Tamper,
                    format!("ledger-broken:{e:#}"),
                    format!("{e:#}; no entry is judged against it"),
                );
                self.raise(state, round, alert, None)?;
                return Ok(None);
            }
            Err(e) => {
                round.operational.push(Alert::new(
                    AlertClass::Operational,
                    "ledger".into(),
                    format!("the ledger could not be read ({e:#}); no entry was judged"),
                ));
                return Ok(None);
            }
        };
        let head = ledger.head();
        if let Some(pinned) = &state.ledger
            && !ledger.extends(pinned)
        {
            let alert = Alert::new(
                AlertClass::Tamper,
                format!("ledger-rewritten:{}:{}", pinned.records, pinned.head),
                format!(
                    "the ledger does not extend the one read before ({} records, head {}); it \
                     now has {} records, head {}",
                    pinned.records, pinned.head, head.records, head.head
                ),
            );
            let proof = json!({ "pinned": pinned, "now": head });
            self.raise(state, round, alert, Some(proof))?;
        }
        state.ledger = Some(head);
        Ok(Some(ledger))
    }

    /// Reads and judges the step's new entries, a few bundles at a time, saving progress.
    async fn read_entries(
        &self,
        state: &mut MonitorState,
        round: &mut Round,
        log: &TransparencyLog,
        step: &Step,
        watchlist: &Watchlist,
        intents: &Intents,
    ) -> Result<()> {
        let origin = log.origin.clone();
        {
            let log_state = state.logs.get_mut(&origin).expect("every log has a state");
            log_state.accept(step.checkpoint_text.clone());
        }
        self.state_dir.save(state)?;
        let size = step.size();
        let mut range = state.logs[&origin].compact_range()?;
        let starts: Vec<u64> = bundle_starts(range.size(), size);
        let mut bundles = futures::stream::iter(starts)
            .map(|start| step.entries_from(start))
            .buffered(PARALLEL_BUNDLES);
        let mut bundles_read = 0;
        let failure = loop {
            let entries = match bundles.try_next().await {
                Ok(Some(entries)) => entries,
                Ok(None) => break None,
                Err(e) => break Some(e),
            };
            for (index, entry) in entries {
                let leaf = leaf_hash(&entry);
                let verdict = judge(&entry, watchlist, intents);
                if verdict.watched() {
                    state
                        .logs
                        .get_mut(&origin)
                        .expect("every log has a state")
                        .watched
                        .insert(index, hex::encode(leaf));
                }
                // Raised (and saved) before the position passes the entry.
                self.raise_entry(state, round, log, step, index, &entry, verdict)
                    .await?;
                range.push(leaf);
            }
            state
                .logs
                .get_mut(&origin)
                .expect("every log has a state")
                .set_range(&range);
            bundles_read += 1;
            if bundles_read % SAVE_EVERY_BUNDLES == 0 {
                self.state_dir.save(state)?;
            }
        };
        drop(bundles);
        if let Some(failure) = failure {
            match failure {
                FollowError::Unavailable(reason) => round.operational.push(
                    Alert::new(
                        AlertClass::Operational,
                        format!("unreachable:{origin}"),
                        format!(
                            "log {origin:?} could not be read past entry {}: {reason}",
                            range.size()
                        ),
                    )
                    .at(&origin, Some(range.size())),
                ),
                FollowError::Tamper {
                    reason,
                    checkpoints,
                } => {
                    let alert = Alert::new(
                        AlertClass::Tamper,
                        format!("tamper:{origin}:{reason}"),
                        format!("log {origin:?}: {reason}"),
                    )
                    .at(&origin, Some(range.size()));
                    let proof = json!({ "reason": &reason, "checkpoints": checkpoints });
                    self.raise(state, round, alert, Some(proof))?;
                }
            }
        }
        let log_state = state.logs.get_mut(&origin).expect("every log has a state");
        if log_state.position == size {
            log_state.caught_up_at = Some(Timestamp::now());
        }
        round.progress.push((origin, log_state.position, size));
        self.state_dir.save(state)
    }

    /// Raises the alert an unauthorized or malformed entry calls for, with its proof.
    #[allow(clippy::too_many_arguments)]
    async fn raise_entry(
        &self,
        state: &mut MonitorState,
        round: &mut Round,
        log: &TransparencyLog,
        step: &Step,
        index: u64,
        entry: &[u8],
        verdict: Verdict,
    ) -> Result<()> {
        let origin = &log.origin;
        let (alert, kind) = match verdict {
            Verdict::Unauthorized {
                kind,
                digest,
                identity,
                because,
            } => {
                let mut alert = Alert::new(
                    AlertClass::Unauthorized,
                    format!("unauthorized:{origin}:{index}"),
                    format!(
                        "entry {index} of log {origin:?}: {identity} signed {digest}, which the \
                         ledger does not hold (watched: {because})"
                    ),
                )
                .at(origin, Some(index));
                alert.digest = Some(digest);
                alert.identity = Some(identity);
                (alert, Some(kind))
            }
            Verdict::Malformed { kind, reason } => (
                Alert::new(
                    AlertClass::Malformed,
                    format!("malformed:{origin}:{index}"),
                    format!("entry {index} of log {origin:?} cannot be read: {reason}"),
                )
                .at(origin, Some(index)),
                kind,
            ),
            Verdict::Unwatched | Verdict::Authorized => return Ok(()),
        };
        if state.alerts.iter().any(|a| a.key == alert.key) {
            return Ok(());
        }
        let proof = match step.inclusion_proof(index).await {
            Ok(hashes) => {
                let (kind, version) = kind.map_or(("unknown", "unknown"), EntryKind::kind_version);
                let entry = TransparencyLogEntry {
                    log_index: index as i64,
                    log_id: LogId {
                        key_id: log.key_id().to_vec(),
                    },
                    kind_version: KindVersion {
                        kind: kind.to_owned(),
                        version: version.to_owned(),
                    },
                    inclusion_proof: Some(InclusionProof {
                        log_index: index as i64,
                        root_hash: step.checkpoint.root_hash().as_bytes().to_vec(),
                        tree_size: step.size() as i64,
                        hashes: hashes.iter().map(|h| h.to_vec()).collect(),
                        checkpoint: BundleCheckpoint {
                            envelope: step.checkpoint_text.clone(),
                        },
                    }),
                    canonicalized_body: entry.to_vec(),
                };
                Some(json!({ "log": origin, "entry": entry }))
            }
            Err(e) => {
                eprintln!(
                    "distd monitor: no inclusion proof for entry {index} of {origin:?}: {e:?}"
                );
                None
            }
        };
        self.raise(state, round, alert, proof)
    }

    /// Every ledger record of an entry of `log` that the monitor has read past must be a
    /// watched entry of the log at its index, with its leaf hash.
    fn check_ledger_records(
        &self,
        state: &mut MonitorState,
        round: &mut Round,
        log: &TransparencyLog,
        ledger: &CheckedLedger,
    ) -> Result<()> {
        let log_state: &LogState = &state.logs[&log.origin];
        let mut missing = Vec::new();
        for record in &ledger.records {
            let LedgerEvent::Logged(logged) = &record.event else {
                continue;
            };
            if logged.log != log.origin || logged.log_index >= log_state.position {
                continue;
            }
            if log_state.watched.get(&logged.log_index) != Some(&logged.leaf_hash) {
                missing.push((record.seq, logged.clone()));
            }
        }
        for (seq, logged) in missing {
            let alert = Alert::new(
                AlertClass::Tamper,
                format!("ledger-entry:{seq}"),
                format!(
                    "ledger record {seq} says log {:?} holds its statement at index {} (leaf \
                     {}), and the log holds no such entry there",
                    log.origin, logged.log_index, logged.leaf_hash
                ),
            )
            .at(&log.origin, Some(logged.log_index));
            self.raise(state, round, alert, None)?;
        }
        Ok(())
    }

    /// Keeps `alert` (with its proof) unless the same finding was raised before.
    fn raise(
        &self,
        state: &mut MonitorState,
        round: &mut Round,
        mut alert: Alert,
        proof: Option<serde_json::Value>,
    ) -> Result<()> {
        if state.alerts.iter().any(|a| a.key == alert.key) {
            return Ok(());
        }
        alert.id = state.alerts.iter().map(|a| a.id).max().unwrap_or(0) + 1;
        if let Some(proof) = proof {
            let path = self.state_dir.proof_path(alert.id);
            write_atomic(&path, &serde_json::to_vec_pretty(&proof)?)?;
            alert.proof = Some(path);
        }
        state.alerts.push(alert.clone());
        self.state_dir.save(state)?;
        round.raised.push(alert);
        Ok(())
    }
}

/// The logs the policy trusts, each once (a policy table and a trusted root may name the same
/// log: by key ID), with the tiles URL and witnesses whichever names them gives.
fn watched_logs(policy: &Policy) -> Vec<TransparencyLog> {
    let mut logs: Vec<TransparencyLog> = Vec::new();
    for (_, log) in &policy.trust().transparency_logs {
        match logs.iter_mut().find(|l| l.key_id() == log.key_id()) {
            Some(known) => {
                if known.tiles_url.is_none() {
                    known.tiles_url.clone_from(&log.tiles_url);
                }
                if known.witnesses.is_none() {
                    known.witnesses.clone_from(&log.witnesses);
                }
            }
            None => logs.push(log.clone()),
        }
    }
    logs
}

/// Where each entry bundle's reading starts, for entries `from..to`.
fn bundle_starts(from: u64, to: u64) -> Vec<u64> {
    let width = tcdist_verify::tiles::TILE_WIDTH;
    let mut starts = Vec::new();
    let mut at = from;
    while at < to {
        starts.push(at);
        at = (at / width + 1) * width;
    }
    starts
}

fn is_rejection(e: &anyhow::Error) -> bool {
    e.chain().any(|c| {
        matches!(
            c.downcast_ref::<tcdist_core::Error>(),
            Some(tcdist_core::Error::Rejected(_))
        )
    })
}
