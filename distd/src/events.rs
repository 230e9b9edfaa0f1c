//! Measurements the work reports as it goes, for the daemon's metrics: each platform's build,
//! each signature, each request to the timestamp authority and the transparency log. A
//! one-shot command reports nowhere. A job the daemon runs is a child `distd` process: it
//! appends its events as JSON lines to the file `TCDIST_EVENTS` names, which the daemon reads
//! when the job ends. The daemon's own work (promote, yank, refresh) reports to it directly.

use std::io::Write as _;
use std::path::PathBuf;
use std::sync::OnceLock;
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// The variable naming the file a child process appends its events to.
pub const EVENTS_VARIABLE: &str = "TCDIST_EVENTS";

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum Event {
    /// A platform's toolchain tree, built or taken from the cache.
    Build {
        platform: String,
        cached: bool,
        seconds: f64,
    },
    /// A statement signed (release, channel head, yank list) by this SPIFFE ID.
    Signature { signer: String },
    /// A request to the timestamp authority.
    Timestamp { seconds: f64, ok: bool },
    /// An entry submitted to the transparency log.
    LogEntry { seconds: f64, ok: bool },
}

impl Event {
    pub fn build(platform: String, cached: bool, took: Duration) -> Event {
        Event::Build {
            platform,
            cached,
            seconds: took.as_secs_f64(),
        }
    }
}

type Sink = Box<dyn Fn(&Event) + Send + Sync>;

static SINK: OnceLock<Sink> = OnceLock::new();

/// Sends every later event to `sink` (the daemon's metrics). Only the first call counts.
pub fn report_to(sink: impl Fn(&Event) + Send + Sync + 'static) {
    let _ = SINK.set(Box::new(sink));
}

/// Sends every later event to the file `TCDIST_EVENTS` names, when it is set.
pub fn report_to_file_from_environment() {
    if let Some(path) = std::env::var_os(EVENTS_VARIABLE) {
        let path = PathBuf::from(path);
        report_to(move |event| append(&path, event));
    }
}

/// Reports one event; measuring never fails the work it measures.
pub fn report(event: Event) {
    if let Some(sink) = SINK.get() {
        sink(&event);
    }
}

fn append(path: &std::path::Path, event: &Event) {
    let Ok(mut line) = serde_json::to_vec(event) else {
        return;
    };
    line.push(b'\n');
    let written = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .and_then(|mut file| file.write_all(&line));
    if let Err(e) = written {
        eprintln!(
            "distd: cannot record a measurement in {}: {e}",
            path.display()
        );
    }
}

/// The events of a file a child wrote; lines that do not parse are skipped (a child killed
/// mid-write leaves half a line).
pub fn read(path: &std::path::Path) -> Vec<Event> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .filter_map(|line| serde_json::from_str(line).ok())
        .collect()
}

/// Times `work` and reports it with `event` (given the outcome's success and the seconds).
pub async fn timed<T, E>(
    work: impl std::future::Future<Output = Result<T, E>>,
    event: impl FnOnce(f64, bool) -> Event,
) -> Result<T, E> {
    let started = std::time::Instant::now();
    let result = work.await;
    report(event(started.elapsed().as_secs_f64(), result.is_ok()));
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_round_trip_through_a_file_and_torn_lines_are_skipped() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("events");
        let events = [
            Event::build("linux/arm64".into(), false, Duration::from_millis(1500)),
            Event::Signature {
                signer: "spiffe://td/distd/signer".into(),
            },
            Event::LogEntry {
                seconds: 0.25,
                ok: true,
            },
        ];
        for event in &events {
            append(&path, event);
        }
        std::fs::OpenOptions::new()
            .append(true)
            .open(&path)
            .unwrap()
            .write_all(b"{\"event\":\"timest")
            .unwrap();
        assert_eq!(read(&path), events);
    }
}
