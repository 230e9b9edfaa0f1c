//! The daemon's ledger, appended through its API (`POST /v1/ledger`, the `ledger` grant) with
//! the SVID that signs: the daemon records only intents of the caller's own SPIFFE ID.

use anyhow::{Context, Result};
use distd_api::client::{Client, ok};
use distd_api::ledger::{LedgerEvent, LedgerRecord};
use http::Method;
use http_body_util::BodyExt;
use tcdist_verify::spiffe_id::SpiffeId;
use tokio::sync::OnceCell;

pub struct RemoteLedger {
    server: String,
    server_id: SpiffeId,
    endpoint: String,
    /// The SVID the client presents (the signer's own, when appending); `None`: the
    /// Workload API's first.
    caller: Option<SpiffeId>,
    client: OnceCell<Client>,
}

impl RemoteLedger {
    pub fn new(
        server: String,
        server_id: SpiffeId,
        endpoint: String,
        caller: Option<SpiffeId>,
    ) -> Self {
        RemoteLedger {
            server,
            server_id,
            endpoint,
            caller,
            client: OnceCell::new(),
        }
    }

    pub fn server(&self) -> &str {
        &self.server
    }

    async fn client(&self) -> Result<&Client> {
        self.client
            .get_or_try_init(|| async {
                let source =
                    distd_api::tls::workload_source(&self.endpoint, self.caller.as_ref()).await?;
                Client::new(
                    &self.server,
                    distd_api::tls::client_config(source, &self.server_id)?,
                )
            })
            .await
    }

    pub async fn append(&self, event: &LedgerEvent) -> Result<LedgerRecord> {
        self.client()
            .await?
            .call(Method::POST, "/v1/ledger", Some(event))
            .await
            .with_context(|| format!("appending to the ledger of the daemon at {}", self.server))
    }

    /// The whole ledger as the daemon holds it.
    pub async fn read(&self) -> Result<Vec<u8>> {
        let context = || format!("reading the ledger of the daemon at {}", self.server);
        let response = ok(self
            .client()
            .await?
            .send(Method::GET, "/v1/ledger", None)
            .await
            .with_context(context)?)
        .await
        .with_context(context)?;
        Ok(response
            .into_body()
            .collect()
            .await
            .with_context(context)?
            .to_bytes()
            .to_vec())
    }
}
