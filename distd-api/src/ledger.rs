//! The publisher's ledger: every statement distd signs, recorded before it goes to the
//! transparency log (an intent) and after (where the log put it). One JSON object per line;
//! each line names the SHA-256 of the line before it, so a record cannot be changed, dropped
//! or reordered without breaking every line after it. The daemon writes it; the CLI appends
//! through the daemon's API or to a file ledger; the monitor and `distd ledger verify` read it.
//! This one type is used by all of them.

use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};

/// What the first record names as the line before it.
pub const GENESIS: &str = "sha256:0000000000000000000000000000000000000000000000000000000000000000";

/// One line of the ledger.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LedgerRecord {
    /// 0 for the first record, then one more per line.
    pub seq: u64,
    /// `sha256:<hex>` of the previous line's bytes (without its newline); [`GENESIS`] first.
    pub prev: String,
    pub time: jiff::Timestamp,
    /// Who appended it through the daemon's API (`None`: the daemon or a file ledger's writer).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub appended_by: Option<String>,
    #[serde(flatten)]
    pub event: LedgerEvent,
}

/// What a record says.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum LedgerEvent {
    /// A statement is signed and about to be submitted to the log. Written before the
    /// submission, so an entry the log holds without its intent was not made by distd.
    Intent(Intent),
    /// The log recorded the intent's signature.
    Logged(Logged),
}

/// A signed statement, named by what a log entry of it holds: the payload, the signature and
/// the certificate (a retried submission is the same content, so it matches the same intent).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Intent {
    /// The statement's subject (`sha256:<hex>`).
    pub subject: String,
    pub predicate_type: String,
    pub spiffe_id: String,
    /// `sha256:<hex>` of the leaf certificate (DER).
    pub certificate: String,
    /// `sha256:<hex>` of the signed payload (the in-toto statement).
    pub payload: String,
    /// `sha256:<hex>` of the signature bytes.
    pub signature: String,
}

/// Where the log put an intent's signature.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Logged {
    /// The intent's `seq`.
    pub intent: u64,
    /// The log's checkpoint origin.
    pub log: String,
    pub log_index: u64,
    /// The entry's RFC 6962 leaf hash, hex.
    pub leaf_hash: String,
}

/// `sha256:<hex>` of `bytes`.
pub fn sha256_id(bytes: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(bytes)))
}

/// Where a checked ledger ends: how many records, and the hash of its last line (what the
/// next record names as `prev`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LedgerHead {
    pub records: u64,
    pub head: String,
}

impl LedgerHead {
    pub fn empty() -> Self {
        LedgerHead {
            records: 0,
            head: GENESIS.to_owned(),
        }
    }
}

/// A ledger read and checked: every line parses, sequences count up from 0, every `prev` is
/// the previous line's hash, and every `logged` record names an earlier intent.
pub struct CheckedLedger {
    pub records: Vec<LedgerRecord>,
    /// The hash of each line, in order (`heads[n]` is what record `n + 1` names).
    pub hashes: Vec<String>,
}

impl CheckedLedger {
    pub fn head(&self) -> LedgerHead {
        LedgerHead {
            records: self.records.len() as u64,
            head: self
                .hashes
                .last()
                .cloned()
                .unwrap_or_else(|| GENESIS.to_owned()),
        }
    }

    /// Whether this ledger extends the one that ended at `pinned`: it has at least as many
    /// records and the pinned head is among them.
    pub fn extends(&self, pinned: &LedgerHead) -> bool {
        match pinned.records {
            0 => pinned.head == GENESIS,
            n => self
                .hashes
                .get(n as usize - 1)
                .is_some_and(|hash| *hash == pinned.head),
        }
    }

    /// The intent a `logged` record refers to.
    pub fn intent(&self, seq: u64) -> Option<&Intent> {
        match &self.records.get(seq as usize)?.event {
            LedgerEvent::Intent(intent) => Some(intent),
            LedgerEvent::Logged(_) => None,
        }
    }
}

/// Checks the chain of `text` (the whole ledger, one record per line). The error names the
/// first line that breaks it and why.
pub fn check(text: &[u8]) -> Result<CheckedLedger, String> {
    let mut ledger = CheckedLedger {
        records: Vec::new(),
        hashes: Vec::new(),
    };
    if text.is_empty() {
        return Ok(ledger);
    }
    let Some(body) = text.strip_suffix(b"\n") else {
        return Err(format!(
            "line {}: the last line is not complete (no newline): a write was cut short",
            text.split(|b| *b == b'\n').count()
        ));
    };
    for (n, line) in body.split(|b| *b == b'\n').enumerate() {
        let at = |why: String| format!("line {}: {why}", n + 1);
        let record: LedgerRecord =
            serde_json::from_slice(line).map_err(|e| at(format!("not a ledger record: {e}")))?;
        if record.seq != n as u64 {
            return Err(at(format!("sequence {} where {n} belongs", record.seq)));
        }
        let expected_prev = ledger.hashes.last().map_or(GENESIS, String::as_str);
        if record.prev != expected_prev {
            return Err(at(format!(
                "names {} as the line before it, but that line's hash is {expected_prev}: the \
                 ledger was changed",
                record.prev
            )));
        }
        if let LedgerEvent::Logged(logged) = &record.event
            && (logged.intent >= record.seq || ledger.intent(logged.intent).is_none())
        {
            return Err(at(format!(
                "records a log entry for intent {}, which is not an earlier intent",
                logged.intent
            )));
        }
        ledger.hashes.push(sha256_id(line));
        ledger.records.push(record);
    }
    Ok(ledger)
}

/// The next line to append after `head`: the record serialized, without its newline.
pub fn next_line(
    head: &LedgerHead,
    time: jiff::Timestamp,
    appended_by: Option<String>,
    event: LedgerEvent,
) -> (LedgerRecord, Vec<u8>) {
    let record = LedgerRecord {
        seq: head.records,
        prev: head.head.clone(),
        time,
        appended_by,
        event,
    };
    let line = serde_json::to_vec(&record).expect("a ledger record serializes");
    (record, line)
}

#[cfg(test)]
mod tests;
