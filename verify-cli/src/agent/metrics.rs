//! What the agent counts, served in the Prometheus text format on a loopback TCP port:
//! requests by command and outcome, refusals by rule, verification cache hits and misses,
//! pulls during a channel's rollout by channel and arm, bytes downloaded, installs, request
//! durations, the outcomes jobs report (`served.rs`), and how sending them to the daemon goes
//! (`sender.rs`), prefetches (`prefetch.rs`) and the store budget (`store_budget.rs`).

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::sync::Mutex;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

use tcdist_core::error::{Error, Result};
use tcdist_verify::rollout::Arm;

/// A request head longer than this is not a scrape.
const MAX_REQUEST_HEAD: usize = 8 * 1024;

/// Channels counted by name in `tcdist_agent_rollout_pulls_total`; pulls on any further channel
/// are counted under [`OTHER_CHANNELS`], so the series stay few whatever is pulled.
pub const MAX_ROLLOUT_CHANNELS: usize = 32;

/// The `channel` label beyond [`MAX_ROLLOUT_CHANNELS`] (no tag can be named this).
pub const OTHER_CHANNELS: &str = "(other)";

/// Each metric family: name, type, help.
const FAMILIES: &[(&str, &str, &str)] = &[
    (
        "tcdist_agent_requests_total",
        "counter",
        "Requests answered, by command and outcome (ok, refused: exit 42, error: any other).",
    ),
    (
        "tcdist_agent_refusals_total",
        "counter",
        "Releases refused, by the rule that refused them.",
    ),
    (
        "tcdist_agent_verification_cache_total",
        "counter",
        "Verifications reused (hit) or done (miss).",
    ),
    (
        "tcdist_agent_rollout_pulls_total",
        "counter",
        "Pulls of a channel during its rollout, by channel and this host's arm (candidate, current).",
    ),
    (
        "tcdist_agent_downloaded_bytes_total",
        "counter",
        "Layer bytes downloaded.",
    ),
    (
        "tcdist_agent_installs_total",
        "counter",
        "Releases installed into the store.",
    ),
    (
        "tcdist_agent_outcomes_total",
        "counter",
        "Outcomes of first attempts of served jobs, by arm (candidate, control; none: no rollout was running) and result (passed, failed, cancelled, lost).",
    ),
    (
        "tcdist_agent_retried_outcomes_total",
        "counter",
        "Outcomes of retried attempts (retry > 0) of served jobs, by arm and result.",
    ),
    (
        "tcdist_agent_report_refusals_total",
        "counter",
        "Outcome reports refused, by reason (unknown-job, duplicate, late, retry-mismatch).",
    ),
    (
        "tcdist_agent_served_jobs_dropped_total",
        "counter",
        "Served jobs forgotten without an outcome because outcome_max_jobs was reached.",
    ),
    (
        "tcdist_agent_outcomes_unspooled_total",
        "counter",
        "Outcomes not written to the spool, by reason (full, error).",
    ),
    (
        "tcdist_agent_outcomes_sent_total",
        "counter",
        "Outcome records the daemon answered for (accepted or dropped).",
    ),
    (
        "tcdist_agent_outcome_send_failures_total",
        "counter",
        "Rounds of sending outcomes to the daemon that failed (no answer, or one that is not 2xx); their records are sent again at the next round.",
    ),
    (
        "tcdist_agent_outcomes_dropped_by_daemon_total",
        "counter",
        "Outcome records the daemon answered for and dropped, by its reason (not-in-rollout, stale-stage, host-mismatch, arm-mismatch, not-granted).",
    ),
    (
        "tcdist_agent_outcomes_waiting",
        "gauge",
        "Outcome records in the spool the daemon has not answered for yet.",
    ),
    (
        "tcdist_agent_mirror_skips_total",
        "counter",
        "Objects a mirror did not serve (an error, nothing, or other bytes than their digest names), by mirror; each was then read from the next mirror or the registry.",
    ),
    (
        "tcdist_agent_connections_open",
        "gauge",
        "Client connections open, all users together.",
    ),
    (
        "tcdist_agent_connections_refused_total",
        "counter",
        "Client connections closed unanswered, by reason (per-peer-limit: the user held max_connections_per_peer already; request-timeout: no request within request_timeout).",
    ),
    (
        "tcdist_agent_request_duration_seconds",
        "summary",
        "Time to answer a request, by command.",
    ),
    (
        "tcdist_agent_prefetches_total",
        "counter",
        "Prefetch pulls, by configured reference and outcome (installed, present: already in the store, failed); during a rollout each arm counts once.",
    ),
    (
        "tcdist_agent_prefetch_bytes_total",
        "counter",
        "Layer bytes prefetch pulls downloaded, by configured reference (also counted in tcdist_agent_downloaded_bytes_total).",
    ),
    (
        "tcdist_agent_prefetch_duration_seconds",
        "summary",
        "Time a prefetch pull took (verification and install), by configured reference.",
    ),
    (
        "tcdist_agent_store_bytes",
        "gauge",
        "Bytes the store's entries take (as du counts them), after the newest collection.",
    ),
    (
        "tcdist_agent_store_budget_bytes",
        "gauge",
        "The store's budget (store_max_bytes).",
    ),
    (
        "tcdist_agent_store_over_budget",
        "gauge",
        "1 when the entries the budget must keep (in use, named by prefetch, the last used, being pulled) take more than the budget by themselves.",
    ),
    (
        "tcdist_agent_store_collected_total",
        "counter",
        "Entries the store budget removed.",
    ),
    (
        "tcdist_agent_store_collected_bytes_total",
        "counter",
        "Bytes the store budget freed.",
    ),
];

#[derive(Default)]
pub struct Metrics {
    /// Series (name with labels) to value.
    series: Mutex<BTreeMap<String, f64>>,
    /// The channels `tcdist_agent_rollout_pulls_total` names, at most [`MAX_ROLLOUT_CHANNELS`].
    rollout_channels: Mutex<BTreeSet<String>>,
}

impl Metrics {
    /// Counts a pull that a rollout of `channel` answered with `arm`'s release.
    pub fn count_rollout_pull(&self, channel: &str, arm: Arm) {
        let channel = {
            let mut channels = self.rollout_channels.lock().expect("metrics lock");
            if channels.contains(channel) || channels.len() < MAX_ROLLOUT_CHANNELS {
                channels.insert(channel.to_owned());
                channel
            } else {
                OTHER_CHANNELS
            }
        };
        self.add(
            "tcdist_agent_rollout_pulls_total",
            &[("channel", channel), ("arm", &arm.to_string())],
            1.0,
        );
    }

    /// Adds `value` to the series `name{labels}`.
    pub fn add(&self, name: &str, labels: &[(&str, &str)], value: f64) {
        *self
            .series
            .lock()
            .expect("metrics lock")
            .entry(series(name, labels))
            .or_default() += value;
    }

    /// Sets the gauge `name{labels}` to `value`.
    pub fn set(&self, name: &str, labels: &[(&str, &str)], value: f64) {
        self.series
            .lock()
            .expect("metrics lock")
            .insert(series(name, labels), value);
    }

    /// The text exposition: each family's help and type, then its series.
    pub fn render(&self) -> String {
        let series = self.series.lock().expect("metrics lock");
        let mut text = String::new();
        for (family, kind, help) in FAMILIES {
            text.push_str(&format!("# HELP {family} {help}\n# TYPE {family} {kind}\n"));
            for (name, value) in series.iter() {
                let base = name.split('{').next().unwrap_or(name);
                let base = base
                    .strip_suffix("_sum")
                    .or_else(|| base.strip_suffix("_count"))
                    .filter(|_| *kind == "summary")
                    .unwrap_or(base);
                if base == *family {
                    text.push_str(&format!("{name} {value}\n"));
                }
            }
        }
        text
    }

    /// Serves `GET /metrics` on `address` (loopback only) until the task is dropped.
    pub async fn serve(self: std::sync::Arc<Self>, listener: TcpListener) {
        loop {
            let Ok((mut stream, _)) = listener.accept().await else {
                continue;
            };
            let metrics = std::sync::Arc::clone(&self);
            tokio::spawn(async move {
                let mut head = Vec::new();
                let mut buffer = [0u8; 1024];
                while !head.windows(4).any(|w| w == b"\r\n\r\n") && head.len() < MAX_REQUEST_HEAD {
                    match stream.read(&mut buffer).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => head.extend_from_slice(&buffer[..n]),
                    }
                }
                let (status, body) = if head.starts_with(b"GET /metrics ") {
                    ("200 OK", metrics.render())
                } else {
                    ("404 Not Found", "only GET /metrics is served\n".to_owned())
                };
                let response = format!(
                    "HTTP/1.1 {status}\r\nContent-Type: text/plain; version=0.0.4\r\n\
                     Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = stream.write_all(response.as_bytes()).await;
            });
        }
    }
}

/// Binds the metrics listener; only a loopback address is accepted.
pub async fn bind(address: SocketAddr) -> Result<TcpListener> {
    if !address.ip().is_loopback() {
        return Err(Error::usage(format!(
            "agent config: metrics_listen {address} is not a loopback address"
        )));
    }
    TcpListener::bind(address).await.map_err(|e| {
        Error::usage(format!(
            "agent config: metrics_listen {address} cannot be bound: {e}"
        ))
    })
}

/// A series' name with its labels: `name{key="value",…}`.
fn series(name: &str, labels: &[(&str, &str)]) -> String {
    let labels: Vec<String> = labels
        .iter()
        .map(|(key, value)| format!("{key}=\"{}\"", escape(value)))
        .collect();
    if labels.is_empty() {
        name.to_owned()
    } else {
        format!("{name}{{{}}}", labels.join(","))
    }
}

fn escape(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rendered_series_sit_under_their_family_with_escaped_labels() {
        let metrics = Metrics::default();
        metrics.add(
            "tcdist_agent_requests_total",
            &[("command", "pull"), ("outcome", "ok")],
            1.0,
        );
        metrics.add(
            "tcdist_agent_requests_total",
            &[("command", "pull"), ("outcome", "ok")],
            1.0,
        );
        metrics.add("tcdist_agent_refusals_total", &[("rule", "a\"b")], 1.0);
        metrics.set("tcdist_agent_outcomes_waiting", &[], 7.0);
        metrics.set("tcdist_agent_outcomes_waiting", &[], 3.0);
        metrics.add(
            "tcdist_agent_request_duration_seconds_sum",
            &[("command", "pull")],
            0.5,
        );
        metrics.add(
            "tcdist_agent_request_duration_seconds_count",
            &[("command", "pull")],
            1.0,
        );
        let text = metrics.render();
        assert!(text.contains(
            "# TYPE tcdist_agent_requests_total counter\n\
             tcdist_agent_requests_total{command=\"pull\",outcome=\"ok\"} 2\n"
        ));
        assert!(text.contains("tcdist_agent_refusals_total{rule=\"a\\\"b\"} 1\n"));
        assert!(text.contains(
            "# TYPE tcdist_agent_outcomes_waiting gauge\ntcdist_agent_outcomes_waiting 3\n"
        ));
        assert!(text.contains(
            "# TYPE tcdist_agent_request_duration_seconds summary\n\
             tcdist_agent_request_duration_seconds_count{command=\"pull\"} 1\n\
             tcdist_agent_request_duration_seconds_sum{command=\"pull\"} 0.5\n"
        ));
    }

    #[test]
    fn rollout_pulls_are_counted_by_channel_and_arm_with_channels_bounded() {
        let metrics = Metrics::default();
        metrics.count_rollout_pull("stable", Arm::Candidate);
        metrics.count_rollout_pull("stable", Arm::Candidate);
        metrics.count_rollout_pull("stable", Arm::Current);
        for i in 1..MAX_ROLLOUT_CHANNELS + 5 {
            metrics.count_rollout_pull(&format!("c{i}"), Arm::Current);
        }
        // A channel counted before the bound was reached keeps its own series.
        metrics.count_rollout_pull("stable", Arm::Current);
        let text = metrics.render();
        assert!(text.contains("# TYPE tcdist_agent_rollout_pulls_total counter\n"));
        assert!(text.contains(
            "tcdist_agent_rollout_pulls_total{channel=\"stable\",arm=\"candidate\"} 2\n"
        ));
        assert!(
            text.contains(
                "tcdist_agent_rollout_pulls_total{channel=\"stable\",arm=\"current\"} 2\n"
            )
        );
        assert!(
            text.contains(
                "tcdist_agent_rollout_pulls_total{channel=\"(other)\",arm=\"current\"} 5\n"
            )
        );
        let channels: BTreeSet<&str> = text
            .lines()
            .filter(|line| line.starts_with("tcdist_agent_rollout_pulls_total{"))
            .filter_map(|line| line.split('"').nth(1))
            .collect();
        assert_eq!(channels.len(), MAX_ROLLOUT_CHANNELS + 1);
    }
}
