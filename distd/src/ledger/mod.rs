//! Where distd records what it signs (the publisher's ledger, `distd_api::ledger`): a file
//! ledger on this host ([`file`]), or the daemon's, appended through its API ([`remote`]).
//! Every statement is recorded as an intent before its log submission, and as logged after.

pub mod file;
pub mod remote;

use anyhow::{Context, Result};
use distd_api::ledger::{CheckedLedger, Intent, LedgerEvent, LedgerRecord, Logged, check};
use tcdist_core::error::Rejection;

pub use file::FileLedger;
pub use remote::RemoteLedger;

/// The ledger a distd process appends to.
pub enum Ledger {
    File(FileLedger),
    Remote(RemoteLedger),
    /// None configured: statements are signed and logged, and the monitor will report them.
    None,
}

impl Ledger {
    /// Appends `event`; returns the record, or `None` when no ledger is configured.
    pub async fn append(&self, event: LedgerEvent) -> Result<Option<LedgerRecord>> {
        match self {
            Ledger::File(file) => file.append(event, None).await.map(Some),
            Ledger::Remote(remote) => remote.append(&event).await.map(Some),
            Ledger::None => Ok(None),
        }
    }

    /// Records `intent` before its submission; its `seq` is what [`Ledger::logged`] names.
    pub async fn intent(&self, intent: Intent) -> Result<Option<u64>> {
        let record = self
            .append(LedgerEvent::Intent(intent))
            .await
            .context("recording the statement in the ledger before logging it")?;
        Ok(record.map(|r| r.seq))
    }

    pub async fn logged(&self, logged: Logged) -> Result<()> {
        self.append(LedgerEvent::Logged(logged))
            .await
            .context("recording the log entry in the ledger")?;
        Ok(())
    }

    /// The whole ledger, checked.
    pub async fn read(&self) -> Result<CheckedLedger> {
        let (text, source) = match self {
            Ledger::File(file) => (file.read().await?, file.path().display().to_string()),
            Ledger::Remote(remote) => (remote.read().await?, remote.server().to_owned()),
            Ledger::None => anyhow::bail!("no ledger is configured"),
        };
        check(&text).map_err(|reason| {
            tcdist_core::Error::from(Rejection::malformed(format!("ledger {source}"), reason))
                .into()
        })
    }
}
