//! The agent's side: load the config and the trust it names once, listen on the unix socket,
//! answer each connection's request with the same core direct mode uses, and check the store
//! on a schedule. Requests for one release share the store's per-entry lock, so concurrent
//! pulls download it once; verifications are reused for a bounded time (`cache.rs`). A pull
//! that names its job is recorded, and the job's report closes the record (`served.rs`); with
//! `report_to`, a task sends the outcomes to the daemon (`sender.rs`).

use std::collections::{HashMap, HashSet};
use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::BufReader;
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::mpsc;
use tokio::task::JoinSet;

use super::admission::{ConnectionLimits, PeerConnections};
use super::cache::{CacheKey, VerificationCache};
use super::config::AgentConfig;
use super::host::HostIdentity;
use super::metrics::{self, Metrics};
use super::outbox::Outbox;
use super::outcome::ServedRollout;
use super::prefetch::{self, PrefetchSettings, Prefetched};
use super::protocol::{Reply, Request, receive, send};
use super::sender::Sender;
use super::served::{JobReport, ServedJobs};
use super::store_budget::BudgetKeeper;
use crate::audit::AuditLog;
use crate::jobenv::environment_for;
use crate::output;
use tcdist_core::digest::Digest;
use tcdist_core::error::{Error, Result};
use tcdist_core::platform::Platform;
use tcdist_oci::mirrors::{Mirror, MirrorConfig, MirrorSkip};
use tcdist_oci::reference::ReleaseRef;
use tcdist_oci::registry::{Registry, RegistryArgs};
use tcdist_oci::resolve::ResolvedRelease;
use tcdist_oci::source::ReleaseSource;
use tcdist_store::Store;
use tcdist_store::pull::{PullOptions, PullOutcome, install};
use tcdist_store::report::Reporter;
use tcdist_verify::policy::Policy;
use tcdist_verify::structure::ExtractBudget;
use tcdist_verify::{Verified, Verifier};

/// How long in-flight requests may finish after SIGTERM.
const DRAIN: Duration = Duration::from_secs(30);

pub struct Agent {
    config: AgentConfig,
    registry_args: RegistryArgs,
    verifier: Verifier,
    store: Store,
    audit: AuditLog,
    cache: VerificationCache,
    /// The policy's and the trusted root's digests: part of every cache key.
    trust: (Digest, Option<Digest>),
    /// The host ID that decides this host's arm in rollouts, and where it came from.
    host: HostIdentity,
    /// One client per registry host, so connections and tokens are reused across requests.
    registries: Mutex<HashMap<String, Arc<Registry>>>,
    /// The mirrors the config names (`mirrors`), and their clients per origin registry.
    mirrors: Option<MirrorConfig>,
    mirror_clients: Mutex<HashMap<String, Vec<Mirror>>>,
    metrics: Arc<Metrics>,
    /// The jobs served a pull, waiting for their outcome.
    served: ServedJobs,
    /// What sends their outcomes to the daemon (`report_to`), until `serve` starts it.
    sender: Mutex<Option<Sender>>,
    limits: ConnectionLimits,
    /// The connections open, per user.
    peers: Arc<PeerConnections>,
    /// What to prefetch (`prefetch`), and what the rounds named.
    prefetch: Option<PrefetchSettings>,
    prefetched: Prefetched,
    /// The store's budget (`store_max_bytes`).
    budget_keeper: Option<BudgetKeeper>,
}

impl Agent {
    /// Loads everything the config names; any problem is a configuration error (exit 2) or a
    /// store error (4) before the socket exists. `host` is the config's host ID, resolved
    /// (`host::resolve`).
    pub fn new(config: AgentConfig, host: HostIdentity) -> Result<Self> {
        let policy = Policy::load_with_trusted_root(&config.policy, config.trust.as_deref())
            .map_err(|e| {
                let hint = e.hint();
                Error::usage_with_hint(e.to_string(), hint)
            })?;
        let file_digest = |path: &Path| {
            std::fs::read(path)
                .map(|bytes| Digest::of(&bytes))
                .map_err(|e| Error::store("reading", path, e))
        };
        let trust = (
            file_digest(&config.policy)?,
            config.trust.as_deref().map(file_digest).transpose()?,
        );
        let mut budget = ExtractBudget::default();
        if let Some(max) = config.max_unpacked_bytes {
            budget.max_unpacked_bytes = max;
        }
        // The config picks how long verifications are reused; the policy caps it.
        let policy_bound = Duration::try_from(policy.max_verification_age()).unwrap_or_default();
        let cache = VerificationCache::new(
            config
                .verification_cache()
                .map_err(|e| Error::usage(format!("agent config: {e}")))?
                .min(policy_bound),
        );
        let verifier = Verifier::new(policy, budget)
            .remembering(&config.store)
            .for_host(host.host_id().map(|id| id.as_str().to_owned()));
        let verifier = if config.offline {
            verifier.offline()
        } else {
            verifier
        };
        let metrics = Arc::<Metrics>::default();
        let usage = |e: String| Error::usage(format!("agent config: {e}"));
        let served = ServedJobs::new(
            &config.outcome_settings().map_err(usage)?,
            host.host_id().map(|id| id.as_str().to_owned()),
            Arc::clone(&metrics),
        )?;
        let sender = match config.report_settings().map_err(usage)? {
            Some(settings) => {
                // The config makes the host ID the SVID's with report_to; the daemon checks it.
                let id = host.spiffe_id().ok_or_else(|| {
                    usage("report_to needs the host ID from the agent's SVID".into())
                })?;
                let outbox = Outbox::open(served.spool())?;
                Some(Sender::new(settings, id, outbox, Arc::clone(&metrics)))
            }
            None => None,
        };
        let limits = config.connection_limits().map_err(usage)?;
        let mirrors = config
            .mirrors
            .as_deref()
            .map(MirrorConfig::load)
            .transpose()?;
        let prefetch = config.prefetch_settings().map_err(usage)?;
        Ok(Self {
            prefetch,
            prefetched: Prefetched::default(),
            budget_keeper: config.store_budget().map(BudgetKeeper::new),
            mirrors,
            mirror_clients: Mutex::new(HashMap::new()),
            peers: PeerConnections::new(limits.max_per_peer),
            limits,
            registry_args: config.registry_args(),
            store: Store::open(&config.store)?,
            audit: AuditLog::from_setting(config.audit_log.as_deref()),
            verifier,
            cache,
            trust,
            host,
            registries: Mutex::new(HashMap::new()),
            metrics,
            served,
            sender: Mutex::new(sender),
            config,
        })
    }

    /// Serves until SIGTERM or SIGINT, then lets requests in flight finish (up to [`DRAIN`])
    /// and removes the socket.
    pub async fn serve(self: Arc<Self>) -> Result<()> {
        let listener = self.bind()?;
        let metrics = match self.config.metrics_listen {
            Some(address) => {
                let listener = metrics::bind(address).await?;
                Some(tokio::spawn(Arc::clone(&self.metrics).serve(listener)))
            }
            None => None,
        };
        eprintln!(
            "tcverify agent: listening on {} (store {}, policy {}, verifications reused for {}s)",
            self.config.socket.display(),
            self.config.store.display(),
            self.config.policy.display(),
            self.cache.ttl().as_secs()
        );
        eprintln!("tcverify agent: {}", self.host.describe());
        let mut terminate =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
                .map_err(|e| Error::store("handling SIGTERM for", &self.config.socket, e))?;
        let mut requests = JoinSet::new();
        let fsck = self.config.fsck_interval().ok().flatten().map(|every| {
            let agent = Arc::clone(&self);
            tokio::spawn(agent.check_store_every(every))
        });
        let lost = Some(tokio::spawn(Arc::clone(&self).sweep_outcomes()));
        let prefetch = self.prefetch.clone().map(|settings| {
            eprintln!(
                "tcverify agent: prefetching {} every {}s (plus up to {}s)",
                settings
                    .references
                    .iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join(", "),
                settings.interval.as_secs(),
                settings.jitter.as_secs()
            );
            tokio::spawn(prefetch::run(Arc::clone(&self), settings))
        });
        let budget = self
            .budget_keeper
            .is_some()
            .then(|| tokio::spawn(BudgetKeeper::run(Arc::clone(&self))));
        let sender = self
            .sender
            .lock()
            .expect("sender lock")
            .take()
            .map(|sender| {
                eprintln!("tcverify agent: {}", sender.describe());
                tokio::spawn(sender.run())
            });
        loop {
            tokio::select! {
                accepted = listener.accept() => match accepted {
                    Ok((stream, _)) => {
                        requests.spawn(Arc::clone(&self).admit(stream));
                    }
                    Err(e) => {
                        eprintln!("tcverify agent: accepting a connection failed: {e}");
                        // Out of file descriptors, say: give connections time to close
                        // instead of spinning on the same error.
                        tokio::time::sleep(Duration::from_millis(50)).await;
                    }
                },
                Some(_) = requests.join_next(), if !requests.is_empty() => {}
                _ = terminate.recv() => break,
                _ = tokio::signal::ctrl_c() => break,
            }
        }
        for task in [fsck, metrics, lost, sender, prefetch, budget]
            .into_iter()
            .flatten()
        {
            task.abort();
        }
        drop(listener);
        let _ = std::fs::remove_file(&self.config.socket);
        eprintln!(
            "tcverify agent: stopping; {} request(s) in flight",
            requests.len()
        );
        let _ = tokio::time::timeout(DRAIN, async {
            while requests.join_next().await.is_some() {}
        })
        .await;
        Ok(())
    }

    /// Binds the socket, replacing a stale one (never another kind of file, never a live
    /// agent's), and gives it the configured mode and group.
    fn bind(&self) -> Result<UnixListener> {
        let path = &self.config.socket;
        if let Ok(metadata) = std::fs::symlink_metadata(path) {
            if !metadata.file_type().is_socket() {
                return Err(Error::usage(format!(
                    "{} exists and is not a socket; refusing to replace it",
                    path.display()
                )));
            }
            if std::os::unix::net::UnixStream::connect(path).is_ok() {
                return Err(Error::usage(format!(
                    "another agent is listening on {}",
                    path.display()
                )));
            }
            std::fs::remove_file(path)
                .map_err(|e| Error::store("removing stale socket", path, e))?;
        }
        let listener = UnixListener::bind(path).map_err(|e| Error::store("binding", path, e))?;
        let mode = self.config.socket_mode().map_err(Error::usage)?;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
            .map_err(|e| Error::store("setting permissions of", path, e))?;
        if let Some(group) = &self.config.socket_group {
            let gid = group_id(group).ok_or_else(|| {
                Error::usage(format!(
                    "agent config: socket_group {group:?} does not exist"
                ))
            })?;
            std::os::unix::fs::chown(path, None, Some(gid))
                .map_err(|e| Error::store("changing the group of", path, e))?;
        }
        Ok(listener)
    }

    /// One connection, up to its request: a slot of its user's, then the request line within
    /// the deadline, on the runtime (no thread is held for a connection that has not asked
    /// yet); then the request is answered on a thread of its own.
    async fn admit(self: Arc<Self>, stream: UnixStream) {
        let credentials = stream.peer_cred().ok();
        let peer = credentials
            .map(|c| format!("uid {} pid {}", c.uid(), c.pid().unwrap_or(0)))
            .unwrap_or_else(|| "unknown peer".into());
        let (read, mut write) = stream.into_split();
        let admitted = match credentials {
            Some(c) => self.peers.admit(c.uid()).ok_or_else(|| {
                format!(
                    "{peer} has {} connections open, the most the agent takes from one user",
                    self.peers.max_per_peer()
                )
            }),
            // Without a uid the connection cannot be counted against anyone's cap.
            None => Err("the connection's peer credentials cannot be read".to_owned()),
        };
        let slot = match admitted {
            Ok(slot) => slot,
            Err(detail) => {
                self.metrics.add(
                    "tcdist_agent_connections_refused_total",
                    &[("reason", "per-peer-limit")],
                    1.0,
                );
                let error = Error::Unavailable {
                    operation: "connecting to the agent".into(),
                    attempts: 1,
                    detail,
                };
                let _ = send(&mut write, &Reply::failed(&error)).await;
                return;
            }
        };
        self.count_open_connections();
        Arc::clone(&self).converse(read, write, peer).await;
        drop(slot);
        self.count_open_connections();
    }

    pub(super) fn store(&self) -> &Store {
        &self.store
    }

    pub(super) fn served(&self) -> &ServedJobs {
        &self.served
    }

    pub(super) fn metrics(&self) -> &Arc<Metrics> {
        &self.metrics
    }

    pub(super) fn prefetched(&self) -> &Prefetched {
        &self.prefetched
    }

    pub(super) fn budget_keeper(&self) -> Option<&BudgetKeeper> {
        self.budget_keeper.as_ref()
    }

    pub(super) fn store_budget_due(&self) {
        if let Some(keeper) = &self.budget_keeper {
            keeper.due();
        }
    }

    /// The releases the newest pulls under the prefetched references installed, by platform.
    pub(super) fn prefetch_remembered(&self) -> HashSet<(Digest, Platform)> {
        let Some(settings) = &self.prefetch else {
            return HashSet::new();
        };
        let mut remembered = HashSet::new();
        for reference in &settings.references {
            for platform in &settings.platforms {
                if let Some(digest) = self
                    .store
                    .remembered_release(&reference.to_string(), platform)
                {
                    remembered.insert((digest, platform.clone()));
                }
            }
        }
        remembered
    }

    /// Counts each skipped mirror in the metrics, and hands the skips on.
    fn counted(&self, skips: Vec<MirrorSkip>) -> Vec<MirrorSkip> {
        for skip in &skips {
            self.metrics.add(
                "tcdist_agent_mirror_skips_total",
                &[("mirror", &skip.mirror)],
                1.0,
            );
        }
        skips
    }

    fn count_open_connections(&self) {
        self.metrics.set(
            "tcdist_agent_connections_open",
            &[],
            self.peers.open() as f64,
        );
    }

    /// An admitted connection: its request line within the deadline, then its answer.
    async fn converse(
        self: Arc<Self>,
        read: tokio::net::unix::OwnedReadHalf,
        mut write: tokio::net::unix::OwnedWriteHalf,
        peer: String,
    ) {
        let received = tokio::time::timeout(
            self.limits.request_timeout,
            receive(&mut BufReader::new(read)),
        )
        .await;
        let request: Request = match received {
            Ok(Ok(Some(request))) => request,
            Ok(Ok(None)) => return,
            Ok(Err(e)) => {
                let error = Error::usage(format!("the agent could not read the request: {e}"));
                let _ = send(&mut write, &Reply::failed(&error)).await;
                return;
            }
            Err(_) => {
                self.metrics.add(
                    "tcdist_agent_connections_refused_total",
                    &[("reason", "request-timeout")],
                    1.0,
                );
                return;
            }
        };
        // A request runs on its own blocking thread, driven by the runtime: the pull's layer
        // streams borrow across awaits in ways the compiler cannot prove `Send`, and a thread
        // per request is cheap at this scale.
        let runtime = tokio::runtime::Handle::current();
        let _ = tokio::task::spawn_blocking(move || {
            runtime.block_on(self.handle(request, write, peer))
        })
        .await;
    }

    /// One request: progress while it runs, one final answer.
    async fn handle(
        self: Arc<Self>,
        request: Request,
        mut write: tokio::net::unix::OwnedWriteHalf,
        peer: String,
    ) {
        let (replies, mut outgoing) = mpsc::unbounded_channel();
        let writer = tokio::spawn(async move {
            while let Some(reply) = outgoing.recv().await {
                if send(&mut write, &reply).await.is_err() {
                    break;
                }
            }
        });
        let reporter = ChannelReporter {
            replies: replies.clone(),
            metrics: Arc::clone(&self.metrics),
        };
        let started = std::time::Instant::now();
        let answer = self.answer(&request, &reporter).await;
        self.count(&request, &answer, started.elapsed());
        let answer = match answer {
            Ok((stdout, warnings)) => Reply::Done { stdout, warnings },
            Err(error) => {
                eprintln!("tcverify agent: {peer}: {request:?}: {error}");
                Reply::failed(&error)
            }
        };
        let _ = replies.send(answer);
        drop(reporter);
        drop(replies);
        let _ = writer.await;
    }

    fn count(&self, request: &Request, answer: &Result<(String, Vec<String>)>, took: Duration) {
        let command = request.command();
        let outcome = match answer {
            Ok(_) => "ok",
            Err(Error::Rejected(rejection)) => {
                self.metrics.add(
                    "tcdist_agent_refusals_total",
                    &[("rule", rejection.rule())],
                    1.0,
                );
                "refused"
            }
            Err(_) => "error",
        };
        self.metrics.add(
            "tcdist_agent_requests_total",
            &[("command", command), ("outcome", outcome)],
            1.0,
        );
        let labels = [("command", command)];
        self.metrics.add(
            "tcdist_agent_request_duration_seconds_sum",
            &labels,
            took.as_secs_f64(),
        );
        self.metrics
            .add("tcdist_agent_request_duration_seconds_count", &labels, 1.0);
    }

    /// What a request's command prints in direct mode: stdout and warnings, or the error.
    async fn answer(
        &self,
        request: &Request,
        reporter: &dyn Reporter,
    ) -> Result<(String, Vec<String>)> {
        match request {
            Request::Pull {
                reference,
                platform,
                json,
                job,
            } => {
                let pulled = self.pull(reference, platform, reporter).await?;
                let outcome = &pulled.outcome;
                if let Some(rollout) = &outcome.report.rollout {
                    self.metrics
                        .count_rollout_pull(&rollout.channel, rollout.arm);
                }
                if let Some(job) = job {
                    self.served.served(
                        jiff::Timestamp::now(),
                        job,
                        outcome.report.index_digest.clone(),
                        outcome.report.rollout.as_ref().and_then(ServedRollout::of),
                    );
                }
                if outcome.downloaded {
                    self.store_budget_due();
                }
                Ok((
                    output::pull_stdout(outcome, &pulled.reference, *json),
                    pulled.warnings,
                ))
            }
            Request::Verify {
                reference,
                platform,
                json,
            } => {
                let (reference, source, verified) =
                    self.verify(reference, platform, reporter).await?;
                let skips = self.counted(source.mirror_skips());
                Ok((
                    output::verify_stdout(verified.report(), &reference, *json),
                    output::stderr_lines(verified.report(), &skips),
                ))
            }
            Request::Env {
                reference,
                platform,
                format,
                goexperiment,
                path,
            } => {
                let (reference, platform) = parse_release(reference, platform)?;
                if format != "sh" && format != "json" {
                    return Err(Error::usage(format!("unknown env format {format:?}")));
                }
                let environment =
                    environment_for(&self.store, &reference, &platform, goexperiment, path)?;
                Ok((output::env_stdout(&environment, format), Vec::new()))
            }
            Request::Report {
                job,
                pipeline,
                exit_status,
                cancelled,
                if_served,
                json,
            } => {
                let report = JobReport {
                    job: job.clone(),
                    pipeline: pipeline.clone(),
                    exit_status: *exit_status,
                    cancelled: *cancelled,
                };
                let answer = self
                    .served
                    .answer(jiff::Timestamp::now(), &report, *if_served)?;
                Ok((answer.stdout(*json), Vec::new()))
            }
        }
    }

    /// A pull as a job's: the release verified (or its verification reused) and installed
    /// unless the store has it, with the warnings direct mode would print. The caller makes
    /// the store budget due after an install, once it has recorded who uses the entry.
    pub(super) async fn pull(
        &self,
        reference: &str,
        platform: &str,
        reporter: &dyn Reporter,
    ) -> Result<Pulled> {
        let (reference, source, verified) = self.verify(reference, platform, reporter).await?;
        let options = PullOptions {
            registry: &self.registry_args,
            mirrors: self.mirrors.as_ref(),
            platform: verified.get().platform.clone(),
            jobs: self.config.jobs,
        };
        let mut outcome = install(
            &source,
            verified,
            &options,
            &self.verifier,
            &self.store,
            reporter,
        )
        .await?;
        if outcome.downloaded {
            self.metrics.add("tcdist_agent_installs_total", &[], 1.0);
        }
        let skips = self.counted(std::mem::take(&mut outcome.mirror_skips));
        let warnings = output::stderr_lines(&outcome.report, &skips);
        Ok(Pulled {
            reference,
            outcome,
            warnings,
        })
    }

    /// Counts the jobs whose window ended without a report as `lost`, every few seconds (at
    /// most a minute, at least four times a window).
    async fn sweep_outcomes(self: Arc<Self>) {
        let every =
            (self.served.window() / 4).clamp(Duration::from_secs(1), Duration::from_secs(60));
        let mut ticks = tokio::time::interval(every);
        loop {
            ticks.tick().await;
            self.served.sweep(jiff::Timestamp::now());
        }
    }

    /// The release a request names, verified (or from the cache), with its audit record.
    async fn verify(
        &self,
        reference: &str,
        platform: &str,
        reporter: &dyn Reporter,
    ) -> Result<(ReleaseRef, ReleaseSource, Verified<ResolvedRelease>)> {
        let (reference, platform) = parse_release(reference, platform)?;
        let source = self.source(&reference).await?;
        reporter.step(&format!("verifying {reference}"));
        let outcome = self.verified(&source, &reference, &platform).await;
        self.audit.record(
            &reference.to_string(),
            outcome.as_ref().map(|v| v.report()),
            &source.mirror_skips(),
        )?;
        Ok((reference, source, outcome?))
    }

    /// A source for the reference, through the agent's client for its registry.
    async fn source(&self, reference: &ReleaseRef) -> Result<ReleaseSource> {
        let ReleaseRef::Registry(registry_ref) = reference else {
            return Err(Error::usage(
                "the agent pulls from registries only; an oci-layout: reference is for direct \
                 mode (tcverify pull without --agent)",
            ));
        };
        let existing = self
            .registries
            .lock()
            .expect("registry map lock")
            .get(&registry_ref.registry)
            .cloned();
        let registry = match existing {
            Some(registry) => registry,
            None => {
                let registry =
                    Arc::new(Registry::connect(&self.registry_args, &registry_ref.registry).await?);
                self.registries
                    .lock()
                    .expect("registry map lock")
                    .entry(registry_ref.registry.clone())
                    .or_insert(registry)
                    .clone()
            }
        };
        let source = ReleaseSource::through(registry_ref, registry);
        Ok(match &self.mirrors {
            Some(mirrors) => source.with_mirrors(self.mirror_clients(mirrors, registry_ref).await?),
            None => source,
        })
    }

    /// Clients of the mirrors of the reference's registry, connected once and then shared.
    async fn mirror_clients(
        &self,
        mirrors: &MirrorConfig,
        registry_ref: &tcdist_oci::reference::RegistryRef,
    ) -> Result<Vec<Mirror>> {
        let origin = &registry_ref.registry;
        if let Some(clients) = self
            .mirror_clients
            .lock()
            .expect("mirror map lock")
            .get(origin)
        {
            return Ok(clients.clone());
        }
        let clients = mirrors.connect(origin, &self.registry_args).await?;
        Ok(self
            .mirror_clients
            .lock()
            .expect("mirror map lock")
            .entry(origin.clone())
            .or_insert(clients)
            .clone())
    }

    async fn verified(
        &self,
        source: &ReleaseSource,
        reference: &ReleaseRef,
        platform: &Platform,
    ) -> Result<Verified<ResolvedRelease>> {
        if !self.cache.enabled() {
            return self
                .verifier
                .verify(source, &reference.to_string(), platform)
                .await;
        }
        // The tag is resolved on every request; only what its digest was verified as is reused.
        let top = source.resolve_top().await?;
        let key = CacheKey {
            reference: reference.to_string(),
            index: top.digest().clone(),
            platform: platform.to_string(),
            policy: self.trust.0.clone(),
            trusted_root: self.trust.1.clone(),
        };
        let cache_total = "tcdist_agent_verification_cache_total";
        if let Some(verified) = self.cache.get(&key) {
            self.metrics.add(cache_total, &[("result", "hit")], 1.0);
            return Ok(verified);
        }
        self.metrics.add(cache_total, &[("result", "miss")], 1.0);
        let verified = self
            .verifier
            .verify(source, &reference.to_string(), platform)
            .await?;
        // Keyed by the release the tag named when it was verified: during a channel's
        // rollout that is the channel's current release, also for a host in the candidate arm
        // (whose verified release is the candidate), so the next request finds it.
        let index = match &verified.report().rollout {
            Some(rollout) => rollout.current.clone(),
            None => verified.get().index_digest.clone(),
        };
        self.cache
            .insert(CacheKey { index, ..key }, verified.clone());
        Ok(verified)
    }

    async fn check_store_every(self: Arc<Self>, every: Duration) {
        let mut ticks = tokio::time::interval(every);
        ticks.tick().await;
        loop {
            ticks.tick().await;
            let agent = Arc::clone(&self);
            match tokio::task::spawn_blocking(move || agent.store.fsck(false)).await {
                Ok(Ok(report)) => {
                    eprintln!(
                        "tcverify agent: fsck: {} intact, {} quarantined, {} busy",
                        report.intact.len(),
                        report.damaged.len(),
                        report.busy.len()
                    );
                    for damaged in &report.damaged {
                        eprintln!(
                            "tcverify agent: fsck: quarantined {}: {}",
                            damaged.entry.display(),
                            damaged.reason
                        );
                    }
                }
                Ok(Err(e)) => eprintln!("tcverify agent: fsck failed: {e}"),
                Err(e) => eprintln!("tcverify agent: fsck failed: {e}"),
            }
        }
    }
}

/// What [`Agent::pull`] did.
pub(super) struct Pulled {
    pub reference: ReleaseRef,
    pub outcome: PullOutcome,
    pub warnings: Vec<String>,
}

fn parse_release(reference: &str, platform: &str) -> Result<(ReleaseRef, Platform)> {
    let platform = platform
        .parse()
        .map_err(|e| Error::usage(format!("platform {platform:?}: {e}")))?;
    Ok((ReleaseRef::parse(reference)?, platform))
}

/// The numeric ID of a group, from the system's group database.
fn group_id(name: &str) -> Option<u32> {
    let name = std::ffi::CString::new(name).ok()?;
    // SAFETY: called once, at start-up, and nothing else in the agent reads the group
    // database, so the static record is not overwritten before it is read.
    let group = unsafe { libc::getgrnam(name.as_ptr()) };
    // SAFETY: non-null pointers from getgrnam point to a valid record.
    (!group.is_null()).then(|| unsafe { (*group).gr_gid })
}

/// Sends progress steps to the client, and counts the bytes downloaded.
struct ChannelReporter {
    replies: mpsc::UnboundedSender<Reply>,
    metrics: Arc<Metrics>,
}

impl Reporter for ChannelReporter {
    fn step(&self, message: &str) {
        let _ = self.replies.send(Reply::Progress(message.to_owned()));
    }

    fn layer_progress(&self, _id: usize, bytes: u64) {
        self.metrics
            .add("tcdist_agent_downloaded_bytes_total", &[], bytes as f64);
    }
}
