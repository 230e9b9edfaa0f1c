//! The API's routes (the table is in `distd_api::wire`). Every route names the action it
//! needs; the caller's SPIFFE ID, taken from its verified client certificate, must hold a
//! grant for that action on the line concerned, or the answer is 403 with the reason and the
//! refusal is audited. Changes (build, cancel, promote, yank) are audited when allowed too.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use crate::ledger::FileLedger;

use axum::body::{Body, Bytes};
use axum::extract::{MatchedPath, Path, Query, Request, State};
use axum::http::StatusCode;
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Extension, Json, Router};
use distd_api::wire::{
    Action, ApiError, Catalog, ChannelHead, ChannelRollout, Job, LifecycleAnswer, LineCatalog,
    PromoteRequest, TaggedRelease, YankRequest, YankedRelease,
};
use serde::Deserialize;
use tcdist_core::Digest;
use tcdist_oci::reference::RegistryRef;
use tcdist_oci::registry::RegistryArgs;
use tcdist_verify::spiffe_id::SpiffeId;

use super::audit::{Audit, AuditRecord};
use super::config::ServeConfig;
use super::jobs::{CancelError, Jobs, parse_id};
use super::judge::Judge;
use super::live::LiveRollouts;
use super::metrics::Metrics;
use super::rollout_journal::RolloutJournal;
use crate::lifecycle::{self, HeadRequest};
use crate::line::ReleaseLine;
use crate::publish::Signing;

/// How long a catalog read from the registry is served again, unless something changed it.
const CATALOG_TTL: Duration = Duration::from_secs(10);

/// The identities the daemon signs with: the promoter (channel heads, yank lists, rollouts
/// through the API), and the judge's brake (halts, advances along a plan, re-signs), absent
/// without a judge or in a dry run.
pub struct Signers {
    pub promoter: Signing,
    pub brake: Option<Signing>,
}

/// The caller of a connection, from its client certificate.
#[derive(Clone)]
pub struct Caller(pub SpiffeId);

pub struct Daemon {
    pub config: ServeConfig,
    pub jobs: Arc<Jobs>,
    pub metrics: Arc<Metrics>,
    pub audit: Audit,
    /// The publisher's ledger.
    pub ledger: FileLedger,
    /// Signs channel heads and yank lists, and reads them back.
    pub promoter: Signing,
    pub registry: RegistryArgs,
    /// One promote, yank or refresh at a time: each takes the next sequence from the registry.
    pub lifecycle: tokio::sync::Mutex<()>,
    /// Bumped by every promote and yank, so a cached catalog is not served after one.
    changes: AtomicU64,
    /// The last catalog: when it was read, what had changed by then, and it.
    catalog: tokio::sync::Mutex<Option<CachedCatalog>>,
    /// The running rollouts of every line, as last read: what outcomes are taken for.
    pub live: std::sync::RwLock<LiveRollouts>,
    /// When the last read of the rollouts began; held while one reads, so reads are one at a
    /// time.
    pub rollouts_read: tokio::sync::Mutex<Option<(jiff::Timestamp, Instant)>>,
    /// The stages' outcomes and the judge's verdicts.
    pub journal: RolloutJournal,
    /// The rollout judge, when the config has one.
    pub judge: Option<Judge>,
}

/// A catalog as read at `read`, when the change counters were `seen`.
struct CachedCatalog {
    read: Instant,
    seen: (u64, u64),
    catalog: Catalog,
}

/// An error answer: its status and reason.
pub struct Failure(pub StatusCode, pub String);

impl IntoResponse for Failure {
    fn into_response(self) -> Response {
        (self.0, Json(ApiError { error: self.1 })).into_response()
    }
}

impl Failure {
    pub fn not_found(what: String) -> Self {
        Failure(StatusCode::NOT_FOUND, what)
    }

    pub fn bad_request(what: String) -> Self {
        Failure(StatusCode::BAD_REQUEST, what)
    }

    /// The status that fits an error of the work: the verifier's exit codes mapped to HTTP.
    pub fn from_work(err: &anyhow::Error) -> Self {
        let code = err
            .chain()
            .find_map(|cause| cause.downcast_ref::<tcdist_core::Error>())
            .map(tcdist_core::Error::exit_code);
        let status = match code {
            Some(2) => StatusCode::BAD_REQUEST,
            Some(3) => StatusCode::BAD_GATEWAY,
            Some(4) => StatusCode::INTERNAL_SERVER_ERROR,
            // A verification failure, or a lifecycle rule (a yanked release is not promoted).
            _ => StatusCode::CONFLICT,
        };
        Failure(status, format!("{err:#}"))
    }
}

pub type Shared = Arc<Daemon>;

impl Daemon {
    pub fn new(
        config: ServeConfig,
        jobs: Arc<Jobs>,
        metrics: Arc<Metrics>,
        signers: Signers,
        registry: RegistryArgs,
    ) -> anyhow::Result<Self> {
        let judge = config.judge.clone().map(|settings| Judge {
            settings,
            brake: signers.brake,
        });
        Ok(Daemon {
            audit: Audit::new(&config.state_dir),
            ledger: FileLedger::new(config.ledger_path()),
            journal: RolloutJournal::open(&config.state_dir)?,
            config,
            jobs,
            metrics,
            promoter: signers.promoter,
            registry,
            lifecycle: tokio::sync::Mutex::new(()),
            changes: AtomicU64::new(0),
            catalog: tokio::sync::Mutex::new(None),
            live: std::sync::RwLock::new(LiveRollouts::default()),
            rollouts_read: tokio::sync::Mutex::new(None),
            judge,
        })
    }

    /// Says a channel changed, so the cached catalog is not served after it.
    pub fn changed(&self) {
        self.changes.fetch_add(1, Ordering::SeqCst);
    }

    /// Checks `caller` may do `action` on `line`; audits a refusal, and an allowed change.
    pub fn authorize(
        &self,
        caller: &Caller,
        action: Action,
        line: Option<&str>,
        target: Option<&str>,
    ) -> Result<(), Failure> {
        let decision = self.config.grants.check(&caller.0, action, line);
        if decision.is_err() || action != Action::Read {
            self.audit.record(&AuditRecord {
                time: jiff::Timestamp::now(),
                caller: caller.0.as_str(),
                action: action.as_str(),
                line,
                target,
                decision: if decision.is_ok() {
                    "allowed"
                } else {
                    "denied"
                },
                reason: decision.as_ref().err().map(String::as_str),
            });
        }
        decision.map_err(|reason| Failure(StatusCode::FORBIDDEN, reason))
    }

    pub fn line(&self, name: &str) -> Result<&ReleaseLine, Failure> {
        self.config
            .line(name)
            .ok_or_else(|| Failure::not_found(format!("there is no line {name:?}")))
    }

    fn job(&self, id: &str) -> Result<Job, Failure> {
        let id = parse_id(id).map_err(|e| Failure::bad_request(e.to_string()))?;
        self.jobs
            .get(id)
            .ok_or_else(|| Failure::not_found(format!("there is no job {id}")))
    }

    /// The whole catalog, from the cache when nothing changed since it was read.
    async fn catalog(&self) -> Result<Catalog, Failure> {
        let mut cached = self.catalog.lock().await;
        let version = (
            self.changes.load(Ordering::SeqCst),
            *self.jobs.subscribe().borrow(),
        );
        if let Some(last) = cached.as_ref()
            && last.read.elapsed() < CATALOG_TTL
            && last.seen == version
        {
            return Ok(last.catalog.clone());
        }
        let mut catalog = Catalog::default();
        for line in &self.config.lines {
            catalog
                .lines
                .push(self.line_catalog(line).await.map_err(|e| {
                    Failure::from_work(&e.context(format!("reading line {:?}", line.name)))
                })?);
        }
        *cached = Some(CachedCatalog {
            read: Instant::now(),
            seen: version,
            catalog: catalog.clone(),
        });
        Ok(catalog)
    }

    async fn line_catalog(&self, line: &ReleaseLine) -> anyhow::Result<LineCatalog> {
        let state = lifecycle::read_state(
            &line.repository,
            &line.channels,
            &self.promoter,
            &self.registry,
        )
        .await?;
        let channels = state
            .channels
            .into_iter()
            .map(|read| {
                let head = &read.head;
                if let Some((_, head)) = head {
                    self.metrics
                        .set_channel_expiry(&line.name, &read.name, head.expires);
                }
                ChannelHead {
                    release: head.as_ref().map(|(digest, _)| digest.to_string()),
                    sequence: head.as_ref().map(|(_, head)| head.sequence),
                    expires: head.as_ref().map(|(_, head)| head.expires),
                    rollout: read.rollout.map(|r| ChannelRollout {
                        sequence: r.sequence,
                        state: r.state.to_string(),
                        live: r.live,
                        candidate: r.candidate.to_string(),
                        stage: r.stage,
                        stages: r.stages,
                        share: r.share,
                        expires: r.expires,
                        reason: r.reason,
                    }),
                    channel: read.name,
                }
            })
            .collect();
        Ok(LineCatalog {
            name: line.name.clone(),
            repository: format!(
                "{}/{}",
                line.repository.registry, line.repository.repository
            ),
            platforms: line.platforms.iter().map(ToString::to_string).collect(),
            releases: state
                .releases
                .into_iter()
                .map(|(tag, digest)| TaggedRelease {
                    tag,
                    release: digest.to_string(),
                })
                .collect(),
            channels,
            yanks: state
                .yanks
                .into_iter()
                .map(|yank| YankedRelease {
                    release: yank.release.to_string(),
                    reason: yank.reason,
                    yanked_at: yank.yanked_at,
                })
                .collect(),
        })
    }

    /// Re-signs `line`'s channel heads that expire within `refresh_within`.
    pub async fn refresh_line(&self, line: &ReleaseLine) -> anyhow::Result<()> {
        let _one_at_a_time = self.lifecycle.lock().await;
        let state = lifecycle::read_state(
            &line.repository,
            &line.channels,
            &self.promoter,
            &self.registry,
        )
        .await?;
        let promoted: Vec<String> = state
            .channels
            .into_iter()
            .filter(|read| read.head.is_some())
            .map(|read| read.name)
            .collect();
        if promoted.is_empty() {
            return Ok(());
        }
        lifecycle::refresh(
            &line.repository,
            &promoted,
            self.config.refresh_within,
            line.channel_expires,
            &self.promoter,
            &self.registry,
        )
        .await?;
        self.changes.fetch_add(1, Ordering::SeqCst);
        drop(_one_at_a_time);
        // Read back, which also sets the channels' expiry in the metrics.
        self.line_catalog(line).await.map(drop)
    }

    /// Runs a promote or a yank: one at a time (each takes the next sequence from the
    /// registry), and the cached catalog is not served after it.
    pub(super) async fn change_lifecycle(
        &self,
        work: impl Future<Output = anyhow::Result<u64>>,
    ) -> Result<u64, Failure> {
        let _one_at_a_time = self.lifecycle.lock().await;
        let sequence = work.await.map_err(|e| Failure::from_work(&e))?;
        self.changes.fetch_add(1, Ordering::SeqCst);
        Ok(sequence)
    }

    /// The release `digest` of `line`, pinned.
    pub(super) fn release_of(line: &ReleaseLine, digest: &str) -> Result<RegistryRef, Failure> {
        let digest: Digest = digest
            .parse()
            .map_err(|e| Failure::bad_request(format!("release {digest:?}: {e}")))?;
        Ok(RegistryRef {
            tag: None,
            digest: Some(digest),
            ..line.repository.clone()
        })
    }
}

pub fn router(daemon: Shared) -> Router {
    Router::new()
        .route("/v1/catalog", get(catalog))
        .route("/v1/lines/{line}/builds", post(build))
        .route("/v1/lines/{line}/promote", post(promote))
        .route("/v1/lines/{line}/yank", post(yank))
        .route("/v1/jobs", get(list_jobs))
        .route("/v1/jobs/{id}", get(job))
        .route("/v1/jobs/{id}/log", get(job_log))
        .route("/v1/jobs/{id}/cancel", post(cancel))
        .merge(super::rollouts::routes())
        .merge(super::outcomes::routes())
        .merge(super::ledger::routes())
        .route_layer(middleware::from_fn_with_state(Arc::clone(&daemon), measure))
        .with_state(daemon)
}

/// Times every request for the metrics, by route (not path: ids would explode the labels).
async fn measure(State(daemon): State<Shared>, request: Request, next: Next) -> Response {
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_owned())
        .unwrap_or_default();
    let started = Instant::now();
    let response = next.run(request).await;
    daemon.metrics.api_request(
        &route,
        response.status().as_u16(),
        started.elapsed().as_secs_f64(),
    );
    response
}

async fn catalog(
    State(daemon): State<Shared>,
    Extension(caller): Extension<Caller>,
) -> Result<Json<Catalog>, Failure> {
    daemon.authorize(&caller, Action::Read, None, None)?;
    let mut catalog = daemon.catalog().await?;
    catalog.lines.retain(|line| {
        daemon
            .config
            .grants
            .check(&caller.0, Action::Read, Some(&line.name))
            .is_ok()
    });
    Ok(Json(catalog))
}

async fn build(
    State(daemon): State<Shared>,
    Extension(caller): Extension<Caller>,
    Path(line): Path<String>,
) -> Result<(StatusCode, Json<Job>), Failure> {
    daemon.authorize(&caller, Action::Build, Some(&line), None)?;
    daemon.line(&line)?;
    let job = daemon
        .jobs
        .submit(&line, caller.0.as_str())
        .map_err(|e| Failure(StatusCode::INTERNAL_SERVER_ERROR, format!("{e:#}")))?;
    eprintln!(
        "distd: job {} queued: line {line:?} for {}",
        job.id, caller.0
    );
    Ok((StatusCode::ACCEPTED, Json(job)))
}

async fn list_jobs(
    State(daemon): State<Shared>,
    Extension(caller): Extension<Caller>,
) -> Result<Json<Vec<Job>>, Failure> {
    daemon.authorize(&caller, Action::Read, None, None)?;
    let grants = &daemon.config.grants;
    Ok(Json(
        daemon
            .jobs
            .list()
            .into_iter()
            .filter(|job| {
                grants
                    .check(&caller.0, Action::Read, Some(&job.line))
                    .is_ok()
            })
            .collect(),
    ))
}

async fn job(
    State(daemon): State<Shared>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
) -> Result<Json<Job>, Failure> {
    let job = daemon.job(&id)?;
    daemon.authorize(&caller, Action::Read, Some(&job.line), Some(&id))?;
    Ok(Json(job))
}

#[derive(Deserialize)]
struct LogQuery {
    #[serde(default)]
    offset: u64,
    #[serde(default)]
    follow: bool,
}

/// The job's log from `offset`; with `follow`, streamed as it grows until the job ends.
async fn job_log(
    State(daemon): State<Shared>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
    Query(query): Query<LogQuery>,
) -> Result<Response, Failure> {
    let job = daemon.job(&id)?;
    daemon.authorize(&caller, Action::Read, Some(&job.line), Some(&id))?;
    let path = daemon.jobs.log_path(job.id);
    let changes = daemon.jobs.subscribe();
    let state = (daemon, job.id, path, query.offset, changes, query.follow);
    let stream = futures::stream::unfold(Some(state), |state| async move {
        let (daemon, id, path, mut offset, mut changes, follow) = state?;
        loop {
            // Whether the job had ended before this read: then what it reads is all there is.
            let ended = daemon.jobs.get(id).is_none_or(|job| {
                job.state.is_final() || job.state == distd_api::wire::JobState::Interrupted
            });
            match read_from(&path, offset) {
                Ok(chunk) if !chunk.is_empty() => {
                    offset += chunk.len() as u64;
                    let next = Some((daemon, id, path, offset, changes, follow));
                    return Some((Ok::<_, std::io::Error>(chunk), next));
                }
                Ok(_) if ended || !follow => return None,
                Ok(_) => {}
                Err(e) => return Some((Err(e), None)),
            }
            // Woken by any job's change; the timeout covers output the child wrote itself.
            let _ = tokio::time::timeout(Duration::from_millis(500), changes.changed()).await;
        }
    });
    Ok(Response::builder()
        .header(
            axum::http::header::CONTENT_TYPE,
            "text/plain; charset=utf-8",
        )
        .body(Body::from_stream(stream))
        .unwrap_or_else(|_| StatusCode::INTERNAL_SERVER_ERROR.into_response()))
}

/// Up to 64 KiB of `path` from `offset`; nothing when the file does not exist yet.
fn read_from(path: &std::path::Path, offset: u64) -> std::io::Result<Bytes> {
    use std::io::{Read as _, Seek as _};
    let mut file = match std::fs::File::open(path) {
        Ok(file) => file,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Bytes::new()),
        Err(e) => return Err(e),
    };
    file.seek(std::io::SeekFrom::Start(offset))?;
    let mut chunk = Vec::with_capacity(64 * 1024);
    file.take(64 * 1024).read_to_end(&mut chunk)?;
    Ok(Bytes::from(chunk))
}

async fn cancel(
    State(daemon): State<Shared>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
) -> Result<Json<Job>, Failure> {
    let job = daemon.job(&id)?;
    daemon.authorize(&caller, Action::Build, Some(&job.line), Some(&id))?;
    match daemon.jobs.cancel(job.id, caller.0.as_str()) {
        Ok(job) => Ok(Json(job)),
        Err(CancelError::NotFound) => Err(Failure::not_found(format!("there is no job {id}"))),
        Err(CancelError::Finished(state)) => Err(Failure(
            StatusCode::CONFLICT,
            format!("job {id} has ended ({})", super::jobs::state_name(state)),
        )),
    }
}

async fn promote(
    State(daemon): State<Shared>,
    Extension(caller): Extension<Caller>,
    Path(line): Path<String>,
    Json(request): Json<PromoteRequest>,
) -> Result<Json<LifecycleAnswer>, Failure> {
    daemon.authorize(
        &caller,
        Action::Promote,
        Some(&line),
        Some(&request.release),
    )?;
    let release_line = daemon.line(&line)?;
    if !release_line.channels.contains(&request.channel) {
        return Err(Failure::bad_request(format!(
            "line {line:?} feeds the channels {:?}, not {:?}",
            release_line.channels, request.channel
        )));
    }
    let reference = Daemon::release_of(release_line, &request.release)?;
    let head = HeadRequest {
        channel: &request.channel,
        expires_in: release_line.channel_expires,
    };
    let sequence = daemon
        .change_lifecycle(lifecycle::promote(
            &reference,
            &head,
            &daemon.promoter,
            &daemon.registry,
        ))
        .await?;
    eprintln!(
        "distd: {} promoted {} to {line}/{} (head {sequence})",
        caller.0, request.release, request.channel
    );
    Ok(Json(LifecycleAnswer {
        release: request.release,
        sequence,
    }))
}

async fn yank(
    State(daemon): State<Shared>,
    Extension(caller): Extension<Caller>,
    Path(line): Path<String>,
    Json(request): Json<YankRequest>,
) -> Result<Json<LifecycleAnswer>, Failure> {
    daemon.authorize(&caller, Action::Yank, Some(&line), Some(&request.release))?;
    let reference = Daemon::release_of(daemon.line(&line)?, &request.release)?;
    let sequence = daemon
        .change_lifecycle(lifecycle::yank(
            &reference,
            &request.reason,
            &daemon.promoter,
            &daemon.registry,
        ))
        .await?;
    eprintln!(
        "distd: {} yanked {} of {line}: {}",
        caller.0, request.release, request.reason
    );
    Ok(Json(LifecycleAnswer {
        release: request.release,
        sequence,
    }))
}
