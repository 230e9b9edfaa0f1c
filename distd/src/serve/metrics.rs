//! The daemon's Prometheus metrics (`GET /metrics` on the ops listener): builds and their
//! durations per platform, jobs by outcome, signatures, timestamp authority and log latency,
//! SVID and channel head expiry, queue depth, the API's requests, and rollouts: each channel's
//! stage and share, the outcomes taken and dropped, the judge's verdicts, halts and alerts.

use std::sync::Mutex;

use jiff::Timestamp;
use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

use crate::events::Event;

type Labels = Vec<(String, String)>;
type Histograms = Family<Labels, Histogram, fn() -> Histogram>;

fn labels<const N: usize>(pairs: [(&str, &str); N]) -> Labels {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}

/// Build times: 1 s to about 70 min.
fn build_buckets() -> Histogram {
    Histogram::new(exponential_buckets(1.0, 2.0, 13))
}

/// Request times: 1 ms to about 33 s.
fn request_buckets() -> Histogram {
    Histogram::new(exponential_buckets(0.001, 2.0, 16))
}

pub struct Metrics {
    registry: Mutex<Registry>,
    builds: Histograms,
    jobs: Family<Labels, Counter>,
    signatures: Family<Labels, Counter>,
    timestamps: Histograms,
    log_entries: Histograms,
    svid_expiry: Family<Labels, Gauge<i64>>,
    channel_expiry: Family<Labels, Gauge<i64>>,
    queue_depth: Gauge<i64>,
    requests: Histograms,
    rollout_stage: Family<Labels, Gauge<i64>>,
    rollout_share: Family<Labels, Gauge<i64>>,
    rollout_outcomes: Family<Labels, Counter>,
    rollout_dropped: Family<Labels, Counter>,
    rollout_verdicts: Family<Labels, Counter>,
    rollout_halts: Family<Labels, Counter>,
    rollout_alerts: Family<Labels, Counter>,
}

impl Metrics {
    pub fn new() -> Self {
        let metrics = Metrics {
            registry: Mutex::new(Registry::with_prefix("distd")),
            builds: Family::new_with_constructor(build_buckets),
            jobs: Family::default(),
            signatures: Family::default(),
            timestamps: Family::new_with_constructor(request_buckets),
            log_entries: Family::new_with_constructor(request_buckets),
            svid_expiry: Family::default(),
            channel_expiry: Family::default(),
            queue_depth: Gauge::default(),
            requests: Family::new_with_constructor(request_buckets),
            rollout_stage: Family::default(),
            rollout_share: Family::default(),
            rollout_outcomes: Family::default(),
            rollout_dropped: Family::default(),
            rollout_verdicts: Family::default(),
            rollout_halts: Family::default(),
            rollout_alerts: Family::default(),
        };
        {
            let mut registry = metrics.registry.lock().expect("metrics registry");
            registry.register(
                "build_duration_seconds",
                "Toolchain builds by platform, and whether the tree came from the cache",
                metrics.builds.clone(),
            );
            registry.register(
                "jobs",
                "Build jobs finished, by line and final state",
                metrics.jobs.clone(),
            );
            registry.register(
                "signatures",
                "Statements signed, by signer SPIFFE ID",
                metrics.signatures.clone(),
            );
            registry.register(
                "timestamp_request_duration_seconds",
                "Requests to the timestamp authority, by outcome",
                metrics.timestamps.clone(),
            );
            registry.register(
                "log_entry_duration_seconds",
                "Entries submitted to the transparency log, by outcome",
                metrics.log_entries.clone(),
            );
            registry.register(
                "svid_expiry_timestamp_seconds",
                "When each X.509-SVID the daemon holds expires (Unix time)",
                metrics.svid_expiry.clone(),
            );
            registry.register(
                "channel_head_expiry_timestamp_seconds",
                "When each channel's current head expires (Unix time)",
                metrics.channel_expiry.clone(),
            );
            registry.register(
                "queue_depth",
                "Build jobs waiting, the running one included",
                metrics.queue_depth.clone(),
            );
            registry.register(
                "api_request_duration_seconds",
                "API requests by route and status",
                metrics.requests.clone(),
            );
            for (name, help, family) in [
                (
                    "rollout_stage",
                    "Each channel's running rollout stage (1-based; 0 without one)",
                    metrics.rollout_stage.clone(),
                ),
                (
                    "rollout_share_basis_points",
                    "The share of hosts in each channel's candidate arm (10000 is all)",
                    metrics.rollout_share.clone(),
                ),
            ] {
                registry.register(name, help, family);
            }
            for (name, help, family) in [
                (
                    "rollout_outcomes",
                    "Job outcomes taken for a rollout stage, by arm and result",
                    metrics.rollout_outcomes.clone(),
                ),
                (
                    "rollout_outcomes_dropped",
                    "Job outcomes not counted, by reason",
                    metrics.rollout_dropped.clone(),
                ),
                (
                    "rollout_verdicts",
                    "The judge's verdicts, by channel and verdict",
                    metrics.rollout_verdicts.clone(),
                ),
                (
                    "rollout_halts",
                    "Rollouts the judge halted",
                    metrics.rollout_halts.clone(),
                ),
                (
                    "rollout_alerts",
                    "The judge's alerts, by reason",
                    metrics.rollout_alerts.clone(),
                ),
            ] {
                registry.register(name, help, family);
            }
        }
        metrics
    }

    pub fn observe(&self, event: &Event) {
        let outcome = |ok: bool| if ok { "ok" } else { "error" };
        match event {
            Event::Build {
                platform,
                cached,
                seconds,
            } => self
                .builds
                .get_or_create(&labels([
                    ("platform", platform),
                    ("cached", if *cached { "true" } else { "false" }),
                ]))
                .observe(*seconds),
            Event::Signature { signer } => {
                self.signatures
                    .get_or_create(&labels([("signer", signer)]))
                    .inc();
            }
            Event::Timestamp { seconds, ok } => self
                .timestamps
                .get_or_create(&labels([("outcome", outcome(*ok))]))
                .observe(*seconds),
            Event::LogEntry { seconds, ok } => self
                .log_entries
                .get_or_create(&labels([("outcome", outcome(*ok))]))
                .observe(*seconds),
        }
    }

    pub fn job_finished(&self, line: &str, state: &str) {
        self.jobs
            .get_or_create(&labels([("line", line), ("state", state)]))
            .inc();
    }

    pub fn set_queue_depth(&self, depth: usize) {
        self.queue_depth
            .set(i64::try_from(depth).unwrap_or(i64::MAX));
    }

    pub fn set_svid_expiry(&self, id: &str, expires: Timestamp) {
        self.svid_expiry
            .get_or_create(&labels([("spiffe_id", id)]))
            .set(expires.as_second());
    }

    pub fn set_channel_expiry(&self, line: &str, channel: &str, expires: Timestamp) {
        self.channel_expiry
            .get_or_create(&labels([("line", line), ("channel", channel)]))
            .set(expires.as_second());
    }

    pub fn api_request(&self, route: &str, status: u16, seconds: f64) {
        self.requests
            .get_or_create(&labels([("route", route), ("status", &status.to_string())]))
            .observe(seconds);
    }

    /// A channel's rollout stage (1-based) and share; `None` when it runs none.
    pub fn set_rollout_stage(&self, line: &str, channel: &str, stage: Option<(usize, u32)>) {
        let key = labels([("line", line), ("channel", channel)]);
        let (stage, share) = stage.unwrap_or((0, 0));
        self.rollout_stage
            .get_or_create(&key)
            .set(i64::try_from(stage).unwrap_or(i64::MAX));
        self.rollout_share.get_or_create(&key).set(i64::from(share));
    }

    pub fn rollout_outcome(&self, line: &str, channel: &str, arm: &str, result: &str) {
        self.rollout_outcomes
            .get_or_create(&labels([
                ("line", line),
                ("channel", channel),
                ("arm", arm),
                ("result", result),
            ]))
            .inc();
    }

    pub fn rollout_dropped(&self, reason: &str, count: u64) {
        self.rollout_dropped
            .get_or_create(&labels([("reason", reason)]))
            .inc_by(count);
    }

    pub fn rollout_verdict(&self, line: &str, channel: &str, verdict: &str) {
        self.rollout_verdicts
            .get_or_create(&labels([
                ("line", line),
                ("channel", channel),
                ("verdict", verdict),
            ]))
            .inc();
    }

    pub fn rollout_halt(&self, line: &str, channel: &str) {
        self.rollout_halts
            .get_or_create(&labels([("line", line), ("channel", channel)]))
            .inc();
    }

    pub fn rollout_alert(&self, line: &str, channel: &str, reason: &str) {
        self.rollout_alerts
            .get_or_create(&labels([
                ("line", line),
                ("channel", channel),
                ("reason", reason),
            ]))
            .inc();
    }

    /// The text exposition format.
    pub fn encode(&self) -> String {
        let mut text = String::new();
        let registry = self.registry.lock().expect("metrics registry");
        // Writing to a String cannot fail.
        let _ = encode(&mut text, &registry);
        text
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_show_up_in_the_exposition() {
        let metrics = Metrics::new();
        metrics.observe(&Event::build(
            "linux/arm64".into(),
            false,
            std::time::Duration::from_secs(300),
        ));
        metrics.observe(&Event::Signature {
            signer: "spiffe://td/distd/signer".into(),
        });
        metrics.set_queue_depth(2);
        metrics.set_rollout_stage("go1.26", "stable", Some((2, 2500)));
        metrics.rollout_dropped("arm-mismatch", 3);
        let text = metrics.encode();
        assert!(text.contains("distd_rollout_stage{line=\"go1.26\",channel=\"stable\"} 2"));
        assert!(
            text.contains(
                "distd_rollout_share_basis_points{line=\"go1.26\",channel=\"stable\"} 2500"
            )
        );
        assert!(text.contains("distd_rollout_outcomes_dropped_total{reason=\"arm-mismatch\"} 3"));
        assert!(
            text.contains(
                "distd_build_duration_seconds_count{platform=\"linux/arm64\",cached=\"false\"} 1"
            ),
            "{text}"
        );
        assert!(text.contains("distd_signatures_total{signer=\"spiffe://td/distd/signer\"} 1"));
        assert!(text.contains("distd_queue_depth 2"));
    }
}
