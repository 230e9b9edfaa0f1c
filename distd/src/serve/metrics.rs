//! The daemon's Prometheus metrics (`GET /metrics` on the ops listener): builds and their
//! durations per platform, jobs by outcome, signatures, timestamp authority and log latency,
//! SVID and channel head expiry, queue depth, and the API's requests.

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
        let text = metrics.encode();
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
