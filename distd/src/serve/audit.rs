//! The audit trail: one JSON line per API decision (who, what, on which line, allowed or
//! denied and why) in `<state_dir>/audit.log`, appended with a single write so concurrent
//! requests never interleave. Denials are also printed, for whoever watches the daemon.

use std::io::Write as _;
use std::path::PathBuf;

use jiff::Timestamp;
use serde::Serialize;

#[derive(Serialize)]
pub struct AuditRecord<'a> {
    pub time: Timestamp,
    pub caller: &'a str,
    pub action: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub line: Option<&'a str>,
    /// What was acted on: a job id, a release digest.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub target: Option<&'a str>,
    pub decision: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<&'a str>,
}

pub struct Audit {
    path: PathBuf,
}

impl Audit {
    pub fn new(state_dir: &std::path::Path) -> Self {
        Audit {
            path: state_dir.join("audit.log"),
        }
    }

    pub fn record(&self, record: &AuditRecord<'_>) {
        if record.decision == "denied" {
            eprintln!(
                "distd: denied {} {} to {}: {}",
                record.action,
                record.line.unwrap_or("-"),
                record.caller,
                record.reason.unwrap_or("")
            );
        }
        let Ok(mut line) = serde_json::to_vec(record) else {
            return;
        };
        line.push(b'\n');
        let written = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.path)
            .and_then(|mut file| file.write_all(&line));
        if let Err(e) = written {
            // The decision stands; losing its record is reported, loudly.
            eprintln!(
                "distd: cannot write the audit log {}: {e}",
                self.path.display()
            );
        }
    }
}
