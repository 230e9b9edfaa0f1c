//! The monitor's alerts. Each has a class, and the most severe class among those not yet
//! acknowledged decides the exit code of `distd monitor --once` (docs/monitor.md):
//! tamper 13, unauthorized 12, malformed 11, operational 10. Operational alerts (the log or
//! the ledger out of reach, the monitor behind) concern one round and are not kept; the others
//! are kept until `distd monitor ack`.

use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::io::AsyncWriteExt as _;

/// How long the alert hook may run.
const HOOK_TIMEOUT: Duration = Duration::from_secs(30);

/// Ordered by severity, least first.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AlertClass {
    /// The log or the ledger could not be read, or the monitor fell behind.
    Operational,
    /// An entry the monitor cannot parse (it is alerted, never skipped).
    Malformed,
    /// A watched identity signed something the ledger does not hold.
    Unauthorized,
    /// The log or the ledger contradicts itself or what the monitor accepted before.
    Tamper,
}

impl AlertClass {
    pub const ALL: [AlertClass; 4] = [
        AlertClass::Operational,
        AlertClass::Malformed,
        AlertClass::Unauthorized,
        AlertClass::Tamper,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            AlertClass::Operational => "operational",
            AlertClass::Malformed => "malformed",
            AlertClass::Unauthorized => "unauthorized",
            AlertClass::Tamper => "tamper",
        }
    }

    pub fn exit_code(self) -> u8 {
        match self {
            AlertClass::Operational => 10,
            AlertClass::Malformed => 11,
            AlertClass::Unauthorized => 12,
            AlertClass::Tamper => 13,
        }
    }
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Alert {
    /// Unique within the state directory (0 for operational alerts, which are not kept).
    pub id: u64,
    pub class: AlertClass,
    pub time: jiff::Timestamp,
    pub message: String,
    /// The log's origin, when it concerns a log.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub log: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub index: Option<u64>,
    /// What was signed (`sha256:<hex>` of the payload), for an entry.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub digest: Option<String>,
    /// Who signed it, as the entry's certificate says.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub identity: Option<String>,
    /// The portable proof: the entry with its inclusion proof and checkpoint, or the
    /// checkpoints that contradict each other.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub proof: Option<PathBuf>,
    /// What makes two alerts the same (so a finding seen again in a later round is not raised
    /// twice).
    pub key: String,
    #[serde(default)]
    pub acknowledged: bool,
}

impl Alert {
    pub fn new(class: AlertClass, key: String, message: String) -> Self {
        Alert {
            id: 0,
            class,
            time: jiff::Timestamp::now(),
            message,
            log: None,
            index: None,
            digest: None,
            identity: None,
            proof: None,
            key,
            acknowledged: false,
        }
    }

    pub fn at(mut self, log: &str, index: Option<u64>) -> Self {
        self.log = Some(log.to_owned());
        self.index = index;
        self
    }
}

/// Runs `hook` (a shell command) with `alert` as JSON on its stdin. A hook that fails or
/// hangs is reported, and the monitor goes on.
pub async fn run_hook(hook: &str, alert: &Alert) {
    let json = serde_json::to_vec(alert).expect("an alert serializes");
    let run = async {
        let mut child = tokio::process::Command::new("/bin/sh")
            .arg("-c")
            .arg(hook)
            .stdin(Stdio::piped())
            .kill_on_drop(true)
            .spawn()?;
        if let Some(mut stdin) = child.stdin.take() {
            // A hook that does not read its input is its own business.
            let _ = stdin.write_all(&json).await;
        }
        child.wait().await
    };
    match tokio::time::timeout(HOOK_TIMEOUT, run).await {
        Ok(Ok(status)) if status.success() => {}
        Ok(Ok(status)) => eprintln!(
            "distd monitor: the alert hook for alert {} exited with {status}",
            alert.id
        ),
        Ok(Err(e)) => eprintln!("distd monitor: the alert hook could not run: {e}"),
        Err(_) => eprintln!(
            "distd monitor: the alert hook for alert {} ran past {}s and was killed",
            alert.id,
            HOOK_TIMEOUT.as_secs()
        ),
    }
}
