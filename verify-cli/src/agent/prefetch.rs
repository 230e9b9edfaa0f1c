//! Prefetch: the agent keeps the releases its `prefetch` references name installed ahead of
//! jobs. Every round resolves and verifies each reference for each platform exactly as a job's
//! pull does (with this host's ID, so a channel in rollout gives this host's arm, and the
//! verification is then reused by the job's pull), and installs what is new. During a running
//! rollout the other arm is installed too, by digest, so a host the next stage moves, or a halt
//! sends back, finds its release warm. What the rounds name is kept by the store budget.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::metrics::Metrics;
use super::server::Agent;
use tcdist_core::digest::Digest;
use tcdist_core::platform::Platform;
use tcdist_oci::attachments::rollout::RolloutState;
use tcdist_oci::reference::{RegistryRef, ReleaseRef};
use tcdist_store::report::Reporter;
use tcdist_verify::VerificationReport;
use tcdist_verify::rollout::Arm;

#[derive(Clone, Debug)]
pub struct PrefetchSettings {
    /// Registry references only (the config refuses others).
    pub references: Vec<ReleaseRef>,
    pub platforms: Vec<Platform>,
    pub interval: Duration,
    pub jitter: Duration,
}

/// The releases the newest successful round of each reference and platform named: the ones
/// the store budget keeps. A round that fails leaves what the one before named.
#[derive(Default)]
pub struct Prefetched(Mutex<HashMap<(String, Platform), Vec<Digest>>>);

impl Prefetched {
    pub fn names(&self, digest: &Digest, platform: &Platform) -> bool {
        self.0
            .lock()
            .expect("prefetched lock")
            .iter()
            .any(|((_, p), digests)| p == platform && digests.contains(digest))
    }

    fn set(&self, reference: String, platform: Platform, digests: Vec<Digest>) {
        self.0
            .lock()
            .expect("prefetched lock")
            .insert((reference, platform), digests);
    }
}

/// Rounds until the agent stops: the first after a random part of the jitter (a fleet started
/// at once does not ask the registry at once), then one every interval plus jitter.
pub async fn run(agent: Arc<Agent>, settings: PrefetchSettings) {
    tokio::time::sleep(random_part_of(settings.jitter)).await;
    loop {
        let (round_agent, round_settings) = (Arc::clone(&agent), settings.clone());
        // Pulls run on a thread of their own, as a job's do (server.rs says why).
        let runtime = tokio::runtime::Handle::current();
        let _ = tokio::task::spawn_blocking(move || {
            runtime.block_on(round(&round_agent, &round_settings))
        })
        .await;
        agent.store_budget_due();
        tokio::time::sleep(settings.interval + random_part_of(settings.jitter)).await;
    }
}

async fn round(agent: &Agent, settings: &PrefetchSettings) {
    for reference in &settings.references {
        for platform in &settings.platforms {
            if let Some(digests) = prefetch(agent, reference, platform).await {
                agent
                    .prefetched()
                    .set(reference.to_string(), platform.clone(), digests);
            }
        }
    }
}

/// Installs what `reference` names for this host, and during a running rollout the other
/// arm's release; the digests installed, or none when the reference's own pull failed.
async fn prefetch(
    agent: &Agent,
    reference: &ReleaseRef,
    platform: &Platform,
) -> Option<Vec<Digest>> {
    let label = reference.to_string();
    let report = pull_counted(agent, &label, &label, platform).await?;
    let mut digests = vec![report.index_digest];
    if let Some(rollout) = report.rollout
        && rollout.state == RolloutState::Running
        && let ReleaseRef::Registry(registry_ref) = reference
    {
        let other = match rollout.arm {
            Arm::Candidate => rollout.current,
            Arm::Current => rollout.candidate,
        };
        let by_digest = ReleaseRef::Registry(RegistryRef {
            tag: None,
            digest: Some(other.clone()),
            ..registry_ref.clone()
        });
        if pull_counted(agent, &label, &by_digest.to_string(), platform)
            .await
            .is_some()
        {
            digests.push(other);
        }
    }
    Some(digests)
}

/// One pull, counted under the configured reference `label` and logged; what it verified.
async fn pull_counted(
    agent: &Agent,
    label: &str,
    reference: &str,
    platform: &Platform,
) -> Option<VerificationReport> {
    let metrics = agent.metrics();
    let reporter = PrefetchReporter {
        metrics: Arc::clone(metrics),
        label: label.to_owned(),
    };
    let started = Instant::now();
    let pulled = agent
        .pull(reference, &platform.to_string(), &reporter)
        .await;
    let took = started.elapsed();
    let labels = [("reference", label)];
    metrics.add(
        "tcdist_agent_prefetch_duration_seconds_sum",
        &labels,
        took.as_secs_f64(),
    );
    metrics.add("tcdist_agent_prefetch_duration_seconds_count", &labels, 1.0);
    let pulled = match pulled {
        Ok(pulled) => pulled,
        Err(error) => {
            metrics.add(
                "tcdist_agent_prefetches_total",
                &[("reference", label), ("outcome", "failed")],
                1.0,
            );
            eprintln!("tcverify agent: prefetch {reference} ({platform}) failed: {error}");
            return None;
        }
    };
    let outcome = pulled.outcome;
    for warning in pulled.warnings {
        eprintln!("tcverify agent: prefetch {reference} ({platform}): {warning}");
    }
    let (counted, said) = if outcome.downloaded {
        ("installed", "installed")
    } else {
        ("present", "already installed")
    };
    metrics.add(
        "tcdist_agent_prefetches_total",
        &[("reference", label), ("outcome", counted)],
        1.0,
    );
    eprintln!(
        "tcverify agent: prefetch {reference} ({platform}): {} {said} in {:.1}s",
        outcome.report.index_digest,
        took.as_secs_f64()
    );
    Some(outcome.report)
}

/// Counts the bytes a prefetch downloads, also in the agent's total.
struct PrefetchReporter {
    metrics: Arc<Metrics>,
    label: String,
}

impl Reporter for PrefetchReporter {
    fn step(&self, _message: &str) {}

    fn layer_progress(&self, _id: usize, bytes: u64) {
        self.metrics
            .add("tcdist_agent_downloaded_bytes_total", &[], bytes as f64);
        self.metrics.add(
            "tcdist_agent_prefetch_bytes_total",
            &[("reference", &self.label)],
            bytes as f64,
        );
    }
}

/// A random duration up to `max`. The randomness is the standard library's per-process
/// hashing keys: enough to spread a fleet's rounds, with no generator to carry.
fn random_part_of(max: Duration) -> Duration {
    use std::hash::{BuildHasher, Hasher};
    let random = std::collections::hash_map::RandomState::new()
        .build_hasher()
        .finish();
    max.mul_f64(random as f64 / u64::MAX as f64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn random_part_stays_within_its_bound() {
        let max = Duration::from_millis(500);
        let parts: Vec<_> = (0..64).map(|_| random_part_of(max)).collect();
        assert!(parts.iter().all(|part| *part <= max));
        // Not one value over and over.
        assert!(parts.iter().any(|part| *part != parts[0]));
        assert_eq!(random_part_of(Duration::ZERO), Duration::ZERO);
    }

    #[test]
    fn prefetched_names_what_the_newest_round_of_a_reference_named() {
        let prefetched = Prefetched::default();
        let linux: Platform = "linux/amd64".parse().unwrap();
        let arm: Platform = "linux/arm64".parse().unwrap();
        let (one, two) = (Digest::of(b"one"), Digest::of(b"two"));
        prefetched.set("r/t:stable".into(), linux.clone(), vec![one.clone()]);
        assert!(prefetched.names(&one, &linux));
        assert!(!prefetched.names(&one, &arm));
        prefetched.set("r/t:stable".into(), linux.clone(), vec![two.clone()]);
        assert!(!prefetched.names(&one, &linux));
        assert!(prefetched.names(&two, &linux));
    }
}
