//! The monitor's Prometheus metrics (`GET /metrics` on `--metrics-listen`): per log, how far
//! it has read, the log's size and the lag between them, when it last caught up; alerts by
//! class (raised in total, and not yet acknowledged).

use std::sync::Mutex;

use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

use super::alert::{Alert, AlertClass};
use super::round::Round;
use super::state::MonitorState;

type Labels = Vec<(String, String)>;

fn label(key: &str, value: &str) -> Labels {
    vec![(key.to_owned(), value.to_owned())]
}

pub struct Metrics {
    registry: Mutex<Registry>,
    position: Family<Labels, Gauge<i64>>,
    size: Family<Labels, Gauge<i64>>,
    lag: Family<Labels, Gauge<i64>>,
    caught_up: Family<Labels, Gauge<i64>>,
    raised: Family<Labels, Counter>,
    open: Family<Labels, Gauge<i64>>,
}

impl Metrics {
    pub fn new() -> Self {
        let metrics = Metrics {
            registry: Mutex::new(Registry::default()),
            position: Family::default(),
            size: Family::default(),
            lag: Family::default(),
            caught_up: Family::default(),
            raised: Family::default(),
            open: Family::default(),
        };
        {
            let mut registry = metrics.registry.lock().expect("not poisoned");
            registry.register(
                "tcdist_monitor_position",
                "Entries of the log the monitor has read",
                metrics.position.clone(),
            );
            registry.register(
                "tcdist_monitor_tree_size",
                "The size of the log's newest checkpoint the monitor accepted",
                metrics.size.clone(),
            );
            registry.register(
                "tcdist_monitor_lag_entries",
                "Entries of the accepted checkpoint the monitor has not read yet",
                metrics.lag.clone(),
            );
            registry.register(
                "tcdist_monitor_caught_up_timestamp_seconds",
                "When the monitor last read the log up to its checkpoint (Unix time)",
                metrics.caught_up.clone(),
            );
            registry.register(
                "tcdist_monitor_alerts",
                "Alerts raised, by class (operational alerts once per round they hold)",
                metrics.raised.clone(),
            );
            registry.register(
                "tcdist_monitor_open_alerts",
                "Alerts not acknowledged yet, by class (operational: this round's)",
                metrics.open.clone(),
            );
        }
        for class in AlertClass::ALL {
            metrics
                .open
                .get_or_create(&label("class", class.as_str()))
                .set(0);
        }
        metrics
    }

    /// Sets everything from the state after `round`.
    pub fn observe(&self, state: &MonitorState, round: &Round) {
        for (origin, log) in &state.logs {
            let labels = label("log", origin);
            let size = round
                .progress
                .iter()
                .find(|(o, _, _)| o == origin)
                .map_or(log.position, |(_, _, size)| *size);
            self.position
                .get_or_create(&labels)
                .set(log.position as i64);
            self.size.get_or_create(&labels).set(size as i64);
            self.lag
                .get_or_create(&labels)
                .set(size.saturating_sub(log.position) as i64);
            if let Some(at) = log.caught_up_at {
                self.caught_up.get_or_create(&labels).set(at.as_second());
            }
        }
        for alert in round.raised.iter().chain(&round.operational) {
            self.raised
                .get_or_create(&label("class", alert.class.as_str()))
                .inc();
        }
        for class in AlertClass::ALL {
            let open = open_alerts(state, round)
                .filter(|a| a.class == class)
                .count();
            self.open
                .get_or_create(&label("class", class.as_str()))
                .set(open as i64);
        }
    }

    pub fn encode(&self) -> String {
        let mut text = String::new();
        encode(&mut text, &self.registry.lock().expect("not poisoned"))
            .expect("writing to a String does not fail");
        text
    }
}

/// The alerts not acknowledged, and this round's operational ones.
pub fn open_alerts<'a>(
    state: &'a MonitorState,
    round: &'a Round,
) -> impl Iterator<Item = &'a Alert> {
    state
        .alerts
        .iter()
        .filter(|a| !a.acknowledged)
        .chain(&round.operational)
}
