//! Sends the spooled outcomes to the daemon (`report_to`) for its rollout judge. Every
//! `report_every`, the records the daemon has not answered for go to `POST /v1/outcomes` in
//! batches of at most [`MAX_OUTCOME_BATCH`], over mutual TLS with this host's SVID: its SPIFFE
//! ID is the host ID every record carries, and the daemon takes a host's records only under it.
//!
//! A batch the daemon answers with 2xx is done, whatever it dropped; any other answer, or none,
//! leaves it (and the ones after it) for the next round. Records are so sent at least once: a
//! batch whose answer was lost is sent again, and the judge counts a job once. Where the
//! answered records end is the outbox's to keep (`outbox.rs`).

use std::sync::Arc;
use std::time::Duration;

use anyhow::anyhow;
use distd_api::client::{Answer, Client};
use distd_api::wire::{MAX_OUTCOME_BATCH, OutcomeAnswer, OutcomeBatch};
use http::Method;
use tcdist_verify::spiffe_id::SpiffeId;
use tcdist_verify::trust::WORKLOAD_API_TIMEOUT;

use super::metrics::Metrics;
use super::outbox::Outbox;

/// The report settings of the agent's config.
#[derive(Clone, Debug)]
pub struct ReportSettings {
    /// The daemon: `https://HOST:PORT`.
    pub to: String,
    /// The SPIFFE ID the daemon must present.
    pub server_id: SpiffeId,
    /// How often a round runs.
    pub every: Duration,
    /// The Workload API this host's SVID comes from.
    pub endpoint: String,
}

/// Where batches go: the daemon's API, or a test's stand-in for it.
trait Daemon {
    async fn send(&self, batch: &OutcomeBatch) -> anyhow::Result<OutcomeAnswer>;
}

impl Daemon for Client {
    async fn send(&self, batch: &OutcomeBatch) -> anyhow::Result<OutcomeAnswer> {
        self.call(Method::POST, "/v1/outcomes", Some(batch)).await
    }
}

pub struct Sender {
    settings: ReportSettings,
    /// This host's SPIFFE ID: the SVID the batches go with.
    host: SpiffeId,
    outbox: Outbox,
    metrics: Arc<Metrics>,
    /// Rounds failed in a row (0: sending works).
    failed_rounds: u64,
}

impl Sender {
    pub fn new(
        settings: ReportSettings,
        host: SpiffeId,
        outbox: Outbox,
        metrics: Arc<Metrics>,
    ) -> Self {
        Self {
            settings,
            host,
            outbox,
            metrics,
            failed_rounds: 0,
        }
    }

    /// One line for the agent's log.
    pub fn describe(&self) -> String {
        format!(
            "sending job outcomes to {} ({}) as {}, every {}s",
            self.settings.to,
            self.settings.server_id,
            self.host,
            self.settings.every.as_secs()
        )
    }

    /// Runs a round every `report_every` until the task is dropped.
    pub async fn run(mut self) {
        let mut client = None;
        let mut ticks = tokio::time::interval(self.settings.every);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            ticks.tick().await;
            let result = self.attempt(&mut client).await;
            if let Some(line) = self.settle(result) {
                eprintln!("tcverify agent: {line}");
            }
            if let Ok(waiting) = self.outbox.waiting() {
                self.metrics
                    .set("tcdist_agent_outcomes_waiting", &[], waiting as f64);
            }
        }
    }

    /// One round, with the client an earlier round made, else a new one: its SVID source
    /// follows renewals, so a client is made once, as soon as the Workload API gives the SVID.
    async fn attempt(&mut self, client: &mut Option<Client>) -> anyhow::Result<()> {
        let daemon = match client.take() {
            Some(daemon) => daemon,
            None => self.connect().await?,
        };
        let result = self.round(&daemon).await;
        *client = Some(daemon);
        result
    }

    async fn connect(&self) -> anyhow::Result<Client> {
        let endpoint = &self.settings.endpoint;
        let source = tokio::time::timeout(
            WORKLOAD_API_TIMEOUT,
            distd_api::tls::workload_source(endpoint, Some(&self.host)),
        )
        .await
        .map_err(|_| {
            anyhow!(
                "the Workload API at {endpoint} gave no SVID for {} within {}s",
                self.host,
                WORKLOAD_API_TIMEOUT.as_secs()
            )
        })??;
        Client::new(
            &self.settings.to,
            distd_api::tls::client_config(source, &self.settings.server_id)?,
        )
    }

    /// Sends every record not answered for, batch by batch, then empties the spool if the
    /// daemon answered for all of it. Stops at the first batch not answered.
    async fn round(&mut self, daemon: &impl Daemon) -> anyhow::Result<()> {
        while let Some(batch) = self.outbox.next_batch(MAX_OUTCOME_BATCH)? {
            // A batch of lines that do not parse is passed over without a request.
            if !batch.records.is_empty() {
                let count = batch.records.len();
                let answer = daemon
                    .send(&OutcomeBatch {
                        records: batch.records,
                    })
                    .await?;
                self.count(count, &answer);
            }
            self.outbox.mark_sent(batch.end)?;
        }
        self.outbox.compact()?;
        Ok(())
    }

    fn count(&self, sent: usize, answer: &OutcomeAnswer) {
        self.metrics
            .add("tcdist_agent_outcomes_sent_total", &[], sent as f64);
        for (reason, records) in &answer.dropped {
            self.metrics.add(
                "tcdist_agent_outcomes_dropped_by_daemon_total",
                &[("reason", reason_label(reason))],
                *records as f64,
            );
        }
    }

    /// Counts a round's failure, and gives the line to log: the first failure of a streak,
    /// naming the daemon and the error, and the first success after one.
    fn settle(&mut self, result: anyhow::Result<()>) -> Option<String> {
        let to = &self.settings.to;
        match result {
            Ok(()) => {
                let failed = std::mem::take(&mut self.failed_rounds);
                (failed > 0).then(|| {
                    format!(
                        "sending job outcomes to {to} works again, after {failed} failed round(s)"
                    )
                })
            }
            Err(error) => {
                self.metrics
                    .add("tcdist_agent_outcome_send_failures_total", &[], 1.0);
                self.failed_rounds += 1;
                (self.failed_rounds == 1).then(|| {
                    format!(
                        "sending job outcomes to {to} failed: {}; they wait in the spool and are \
                         sent again every {}s (logged again once it works)",
                        self.explain(&error),
                        self.settings.every.as_secs()
                    )
                })
            }
        }
    }

    fn explain(&self, error: &anyhow::Error) -> String {
        match error.chain().find_map(|c| c.downcast_ref::<Answer>()) {
            Some(answer) if answer.status == http::StatusCode::FORBIDDEN => format!(
                "{answer}; the daemon takes outcomes only from hosts granted `report`: grant it \
                 to {} in the daemon's config",
                self.host
            ),
            _ => format!("{error:#}"),
        }
    }
}

/// The daemon's reason as a label when it is one word of lowercase letters and dashes, as the
/// API's reasons are; else `other`, so an odd answer cannot make series of any text.
fn reason_label(reason: &str) -> &str {
    let word = !reason.is_empty()
        && reason.len() <= 32
        && reason.bytes().all(|b| b.is_ascii_lowercase() || b == b'-');
    if word { reason } else { "other" }
}

#[cfg(test)]
mod tests {
    use std::collections::{BTreeMap, VecDeque};
    use std::sync::Mutex;

    use super::super::outbox::testing::Fixture;
    use super::*;

    /// Answers with what a test lined up, then accepts everything; keeps what it was sent.
    #[derive(Default)]
    struct FakeDaemon {
        answers: Mutex<VecDeque<anyhow::Result<OutcomeAnswer>>>,
        batches: Mutex<Vec<Vec<String>>>,
    }

    impl FakeDaemon {
        fn answering(answers: Vec<anyhow::Result<OutcomeAnswer>>) -> Self {
            Self {
                answers: Mutex::new(answers.into()),
                ..Self::default()
            }
        }

        fn batches(&self) -> Vec<Vec<String>> {
            std::mem::take(&mut self.batches.lock().unwrap())
        }
    }

    impl Daemon for FakeDaemon {
        async fn send(&self, batch: &OutcomeBatch) -> anyhow::Result<OutcomeAnswer> {
            self.batches
                .lock()
                .unwrap()
                .push(batch.records.iter().map(|r| r.job_id.to_string()).collect());
            self.answers.lock().unwrap().pop_front().unwrap_or_else(|| {
                Ok(OutcomeAnswer {
                    accepted: batch.records.len() as u64,
                    dropped: BTreeMap::new(),
                })
            })
        }
    }

    fn sender(fixture: &Fixture) -> Sender {
        Sender::new(
            ReportSettings {
                to: "https://127.0.0.1:8443".into(),
                server_id: SpiffeId::parse("spiffe://tcdist.test/distd/server").unwrap(),
                every: Duration::from_secs(2),
                endpoint: "unix:///nonexistent/api.sock".into(),
            },
            SpiffeId::parse("spiffe://tcdist.test/buildkite/agent").unwrap(),
            fixture.outbox(),
            Arc::new(Metrics::default()),
        )
    }

    fn metric(sender: &Sender, series: &str) -> Option<f64> {
        sender
            .metrics
            .render()
            .lines()
            .find_map(|line| line.strip_prefix(&format!("{series} "))?.parse().ok())
    }

    fn forbidden() -> anyhow::Error {
        Answer {
            status: http::StatusCode::FORBIDDEN,
            error: "spiffe://tcdist.test/buildkite/agent may not report".into(),
        }
        .into()
    }

    /// What the loopback daemon saw of one request.
    struct Seen {
        method: http::Method,
        path: String,
        batch: OutcomeBatch,
    }

    /// A daemon on a loopback port speaking HTTP/1 over TLS, as the API does (without the
    /// client certificate: SVIDs need a Workload API): it gives each connection the next
    /// answer, and a client that trusts its certificate.
    async fn loopback_daemon(
        answers: Vec<(http::StatusCode, String)>,
    ) -> (Client, Arc<Mutex<Vec<Seen>>>) {
        use http_body_util::{BodyExt as _, Full};
        use hyper::body::Incoming;
        use hyper_util::rt::TokioIo;

        let certified = rcgen::generate_simple_self_signed(["127.0.0.1".to_owned()]).unwrap();
        let certificate = certified.cert.der().clone();
        let key =
            rustls::pki_types::PrivatePkcs8KeyDer::from(certified.signing_key.serialize_der());
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let server = rustls::ServerConfig::builder_with_provider(Arc::clone(&provider))
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(vec![certificate.clone()], key.into())
            .unwrap();
        let mut roots = rustls::RootCertStore::empty();
        roots.add(certificate).unwrap();
        let client = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(server));
        let seen = Arc::new(Mutex::new(Vec::new()));
        let requests = Arc::clone(&seen);
        tokio::spawn(async move {
            for (status, body) in answers {
                let (tcp, _) = listener.accept().await.unwrap();
                let tls = acceptor.accept(tcp).await.unwrap();
                let requests = Arc::clone(&requests);
                let service =
                    hyper::service::service_fn(move |request: http::Request<Incoming>| {
                        let (requests, body) = (Arc::clone(&requests), body.clone());
                        async move {
                            let method = request.method().clone();
                            let path = request.uri().path().to_owned();
                            let bytes = request.into_body().collect().await?.to_bytes();
                            requests.lock().unwrap().push(Seen {
                                method,
                                path,
                                batch: serde_json::from_slice(&bytes).unwrap(),
                            });
                            let answer = http::Response::builder()
                                .status(status)
                                .body(Full::new(bytes::Bytes::from(body)))
                                .unwrap();
                            Ok::<_, hyper::Error>(answer)
                        }
                    });
                hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(tls), service)
                    .await
                    .unwrap();
            }
        });
        let client = Client::new(&format!("https://{address}"), client).unwrap();
        (client, seen)
    }

    #[tokio::test]
    async fn round_posts_the_batch_to_the_api_and_reads_its_answer_or_its_refusal() {
        let f = Fixture::new();
        f.append("j-1");
        f.append("j-2");
        let (client, seen) = loopback_daemon(vec![
            (
                http::StatusCode::FORBIDDEN,
                r#"{"error":"spiffe://tcdist.test/buildkite/agent may not report"}"#.into(),
            ),
            (
                http::StatusCode::OK,
                r#"{"accepted":1,"dropped":{"not-in-rollout":1}}"#.into(),
            ),
        ])
        .await;
        let mut sender = sender(&f);
        let result = sender.round(&client).await;
        let line = sender.settle(result).unwrap();
        assert!(
            line.contains("403 Forbidden: spiffe://tcdist.test/buildkite/agent may not report"),
            "{line}"
        );
        sender.round(&client).await.unwrap();
        let seen = std::mem::take(&mut *seen.lock().unwrap());
        assert_eq!(seen.len(), 2);
        for request in &seen {
            assert_eq!(
                (&request.method, request.path.as_str()),
                (&http::Method::POST, "/v1/outcomes")
            );
            let jobs: Vec<&str> = request
                .batch
                .records
                .iter()
                .map(|r| r.job_id.as_str())
                .collect();
            assert_eq!(jobs, ["j-1", "j-2"]);
        }
        assert_eq!(
            metric(
                &sender,
                "tcdist_agent_outcomes_dropped_by_daemon_total{reason=\"not-in-rollout\"}"
            ),
            Some(1.0)
        );
        assert_eq!(f.spool_len(), 0);
    }

    #[tokio::test]
    async fn batches_split_at_the_max_and_the_spool_is_emptied_once_all_were_answered() {
        let f = Fixture::new();
        let total = 2 * MAX_OUTCOME_BATCH + 5;
        for i in 0..total {
            f.append(&format!("job-{i}"));
        }
        let mut sender = sender(&f);
        let daemon = FakeDaemon::default();
        sender.round(&daemon).await.unwrap();
        let sizes: Vec<usize> = daemon.batches().iter().map(Vec::len).collect();
        assert_eq!(sizes, [MAX_OUTCOME_BATCH, MAX_OUTCOME_BATCH, 5]);
        assert_eq!(f.spool_len(), 0);
        assert_eq!(f.cursor(), "0\n");
        assert_eq!(
            metric(&sender, "tcdist_agent_outcomes_sent_total"),
            Some(total as f64)
        );
        // Nothing waits: the next round sends nothing.
        sender.round(&daemon).await.unwrap();
        assert!(daemon.batches().is_empty());
    }

    #[tokio::test]
    async fn failed_batch_leaves_the_cursor_and_the_rest_for_the_next_round() {
        let f = Fixture::new();
        for i in 0..MAX_OUTCOME_BATCH + 3 {
            f.append(&format!("job-{i}"));
        }
        let mut sender = sender(&f);
        let daemon = FakeDaemon::answering(vec![
            Ok(OutcomeAnswer::default()),
            Err(anyhow!(
                "connecting to the daemon at 127.0.0.1:8443: refused"
            )),
        ]);
        assert!(sender.round(&daemon).await.is_err());
        assert_eq!(daemon.batches().len(), 2);
        // The first batch was answered for; the spool keeps everything until all is.
        assert_eq!(sender.outbox.waiting().unwrap(), 3);
        assert!(f.spool_len() > 0);
        sender.round(&daemon).await.unwrap();
        assert_eq!(daemon.batches(), [vec!["job-1000", "job-1001", "job-1002"]]);
        assert_eq!(f.spool_len(), 0);
    }

    #[tokio::test]
    async fn failures_are_logged_once_per_streak_and_recovery_once() {
        let f = Fixture::new();
        f.append("j-1");
        let mut sender = sender(&f);
        let daemon = FakeDaemon::answering(vec![
            Err(anyhow!("connection refused").context("connecting to the daemon")),
            Err(Answer {
                status: http::StatusCode::SERVICE_UNAVAILABLE,
                error: "not ready".into(),
            }
            .into()),
        ]);
        let result = sender.round(&daemon).await;
        let line = sender.settle(result).unwrap();
        assert!(
            line.contains("https://127.0.0.1:8443")
                && line.contains("connecting to the daemon: connection refused"),
            "{line}"
        );
        let result = sender.round(&daemon).await;
        assert_eq!(sender.settle(result), None);
        assert_eq!(
            metric(&sender, "tcdist_agent_outcome_send_failures_total"),
            Some(2.0)
        );
        let result = sender.round(&daemon).await;
        assert_eq!(
            sender.settle(result).unwrap(),
            "sending job outcomes to https://127.0.0.1:8443 works again, after 2 failed round(s)"
        );
        let result = sender.round(&daemon).await;
        assert_eq!(sender.settle(result), None);
        // The same record went three times: twice unanswered, once answered.
        assert_eq!(daemon.batches(), [["j-1"], ["j-1"], ["j-1"]]);
    }

    #[tokio::test]
    async fn forbidden_is_logged_with_the_daemons_reason_and_the_grant_it_needs() {
        let f = Fixture::new();
        f.append("j-1");
        let mut sender = sender(&f);
        let daemon = FakeDaemon::answering(vec![Err(forbidden())]);
        let result = sender.round(&daemon).await;
        let line = sender.settle(result).unwrap();
        assert!(
            line.contains("403 Forbidden: spiffe://tcdist.test/buildkite/agent may not report")
                && line.contains("grant it to spiffe://tcdist.test/buildkite/agent"),
            "{line}"
        );
        assert_eq!(sender.outbox.waiting().unwrap(), 1);
    }

    #[tokio::test]
    async fn records_the_daemon_dropped_are_counted_by_its_reason() {
        let f = Fixture::new();
        for job in ["a", "b", "c", "d"] {
            f.append(job);
        }
        let mut sender = sender(&f);
        let daemon = FakeDaemon::answering(vec![Ok(OutcomeAnswer {
            accepted: 1,
            dropped: BTreeMap::from([
                ("stale-stage".to_owned(), 2),
                ("Not a\nreason".to_owned(), 1),
            ]),
        })]);
        sender.round(&daemon).await.unwrap();
        for (series, want) in [
            ("tcdist_agent_outcomes_sent_total", 4.0),
            (
                "tcdist_agent_outcomes_dropped_by_daemon_total{reason=\"stale-stage\"}",
                2.0,
            ),
            (
                "tcdist_agent_outcomes_dropped_by_daemon_total{reason=\"other\"}",
                1.0,
            ),
        ] {
            assert_eq!(metric(&sender, series), Some(want), "{series}");
        }
        // Dropped records are answered for: they are not sent again.
        assert_eq!(f.spool_len(), 0);
    }
}
