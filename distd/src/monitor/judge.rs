//! Judging what the log holds against the ledger. An entry is watched when its certificate
//! names an identity the policy gives power or comes from a trust domain's CA key
//! (`tcdist_verify::watch`); a watched entry must match an intent of the ledger by content
//! (payload, signature and certificate, so a retried submission is not a stranger). And every
//! ledger record of a log entry must be that entry, at that index.

use std::collections::HashSet;

use distd_api::ledger::{CheckedLedger, LedgerEvent, sha256_id};
use tcdist_verify::tlog::entry::{EntryKind, LoggedEntry, Verifier};
use tcdist_verify::watch::Watchlist;

/// What an entry's content is known by in the ledger: payload, signature, certificate.
type ContentKey = (String, String, String);

/// The ledger's intents, by content.
pub struct Intents(HashSet<ContentKey>);

impl Intents {
    pub fn of(ledger: &CheckedLedger) -> Self {
        Intents(
            ledger
                .records
                .iter()
                .filter_map(|record| match &record.event {
                    LedgerEvent::Intent(intent) => Some((
                        intent.payload.clone(),
                        intent.signature.clone(),
                        intent.certificate.clone(),
                    )),
                    LedgerEvent::Logged(_) => None,
                })
                .collect(),
        )
    }
}

/// What one entry turned out to be.
pub enum Verdict {
    /// Nobody the monitor watches signed it.
    Unwatched,
    /// Watched, and in the ledger.
    Authorized,
    /// Watched, and not in the ledger.
    Unauthorized {
        kind: EntryKind,
        digest: String,
        identity: String,
        because: String,
    },
    /// It cannot be parsed (`kind`: as far as it was).
    Malformed {
        kind: Option<EntryKind>,
        reason: String,
    },
}

impl Verdict {
    pub fn watched(&self) -> bool {
        matches!(self, Verdict::Authorized | Verdict::Unauthorized { .. })
    }
}

/// Judges one proven entry.
pub fn judge(entry: &[u8], watchlist: &Watchlist, intents: &Intents) -> Verdict {
    let parsed = match LoggedEntry::parse(entry) {
        Ok(parsed) => parsed,
        Err(reason) => {
            return Verdict::Malformed { kind: None, reason };
        }
    };
    let payload = format!("sha256:{}", hex::encode(parsed.payload_sha256));
    let mut stranger = None;
    let mut watched = false;
    for signature in &parsed.signatures {
        let Verifier::Certificate(certificate) = &signature.verifier else {
            continue;
        };
        let signer = match watchlist.check(certificate) {
            Ok(Some(signer)) => signer,
            Ok(None) => continue,
            Err(reason) => {
                return Verdict::Malformed {
                    kind: Some(parsed.kind),
                    reason,
                };
            }
        };
        watched = true;
        let key = (
            payload.clone(),
            sha256_id(&signature.signature),
            sha256_id(certificate),
        );
        if !intents.0.contains(&key) {
            stranger = Some(signer);
        }
    }
    match (watched, stranger) {
        (false, _) => Verdict::Unwatched,
        (true, None) => Verdict::Authorized,
        (true, Some(signer)) => Verdict::Unauthorized {
            kind: parsed.kind,
            digest: payload,
            identity: signer
                .spiffe_id
                .unwrap_or_else(|| "a certificate that is not an X.509-SVID".to_owned()),
            because: signer.because,
        },
    }
}
