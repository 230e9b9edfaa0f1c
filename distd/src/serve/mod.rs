//! `distd serve`: the publisher daemon. It serves the API over SPIFFE mutual TLS with its own
//! X.509-SVID, works build jobs one at a time from a journaled queue, promotes and yanks on
//! request, re-signs channel heads before they expire, and serves health and metrics on a
//! separate plain-HTTP listener. SIGTERM stops it cleanly: no new connections, the running
//! job stopped (and resumed at the next start), then exit.

mod api;
mod audit;
pub mod config;
mod jobs;
mod journal;
mod judge;
mod ledger;
mod live;
mod metrics;
mod outcomes;
mod rollout_journal;
mod rollouts;

use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;
use hyper_util::rt::TokioIo;
use spiffe::X509Source;
use tcdist_oci::registry::RegistryArgs;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio_rustls::TlsAcceptor;

use crate::events;
pub use api::Signers;
use api::{Caller, Daemon};
use config::ServeConfig;
use jobs::{Jobs, Runner};
use journal::Journal;
use metrics::Metrics;

/// How long a client has to finish its TLS handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Runs the daemon until SIGTERM or SIGINT.
pub async fn serve(
    config: ServeConfig,
    signers: Signers,
    registry: RegistryArgs,
    workload_api: &str,
) -> Result<()> {
    std::fs::create_dir_all(&config.state_dir)
        .with_context(|| format!("creating {}", config.state_dir.display()))?;
    let metrics = Arc::new(Metrics::new());
    events::report_to({
        let metrics = Arc::clone(&metrics);
        move |event| metrics.observe(event)
    });
    let runner = Runner {
        exe: std::env::current_exe().context("finding the distd executable")?,
        lines_file: config.lines_file.clone(),
        cache_dir: config.cache_dir.clone(),
        ledger: config.ledger_path(),
        stop_grace: config.stop_grace.unsigned_abs(),
    };
    let jobs = Jobs::open(
        Journal::open(&config.state_dir)?,
        runner,
        Arc::clone(&metrics),
    )?;
    let source = distd_api::tls::workload_source(workload_api, Some(&config.identity)).await?;
    let acceptor = TlsAcceptor::from(Arc::new(distd_api::tls::server_config(
        source.clone(),
        &config.trust_domain(),
    )?));
    let listener = TcpListener::bind(config.listen)
        .await
        .with_context(|| format!("listening on {}", config.listen))?;
    let ops_listener = match config.ops_listen {
        Some(address) => Some(
            TcpListener::bind(address)
                .await
                .with_context(|| format!("listening on {address}"))?,
        ),
        None => None,
    };
    let (stop, stopping) = watch::channel(false);
    let identity = config.identity.clone();
    let daemon = Arc::new(Daemon::new(
        config,
        Arc::clone(&jobs),
        Arc::clone(&metrics),
        signers,
        registry,
    )?);
    let worker = tokio::spawn(Arc::clone(&jobs).work(stopping.clone()));
    tokio::spawn(refresh_channels(Arc::clone(&daemon), stopping.clone()));
    tokio::spawn(judge::watch_rollouts(Arc::clone(&daemon), stopping.clone()));
    if let Some(ops_listener) = ops_listener {
        let ops = Ops {
            source: source.clone(),
            metrics: Arc::clone(&metrics),
            stopping: stopping.clone(),
        };
        let mut stopped = stopping.clone();
        tokio::spawn(async move {
            let serving = axum::serve(ops_listener, ops_router(ops))
                .with_graceful_shutdown(async move {
                    let _ = stopped.wait_for(|stop| *stop).await;
                })
                .await;
            if let Err(e) = serving {
                eprintln!("distd: the ops listener failed: {e}");
            }
        });
    }
    eprintln!(
        "distd: serving the API on https://{} as {identity}",
        listener.local_addr()?
    );
    let router = api::router(daemon);
    let mut terminate = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .context("installing the SIGTERM handler")?;
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((tcp, peer)) => {
                    tokio::spawn(connection(tcp, peer, acceptor.clone(), router.clone()));
                }
                Err(e) => eprintln!("distd: accepting a connection: {e}"),
            },
            _ = terminate.recv() => break,
            _ = tokio::signal::ctrl_c() => break,
        }
    }
    eprintln!(
        "distd: stopping: no new connections; the running job is stopped and resumes at the next start"
    );
    let _ = stop.send(true);
    worker.await.context("the job worker")?;
    source.shutdown().await;
    eprintln!("distd: stopped");
    Ok(())
}

/// One client connection: the TLS handshake (which refuses any client without an SVID of the
/// trust domain), then HTTP/1.1 requests as the caller its certificate names.
async fn connection(
    tcp: TcpStream,
    peer: std::net::SocketAddr,
    acceptor: TlsAcceptor,
    router: Router,
) {
    let tls = match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await {
        Ok(Ok(tls)) => tls,
        Ok(Err(e)) => {
            eprintln!("distd: refused a connection from {peer}: TLS handshake failed: {e}");
            return;
        }
        Err(_) => {
            eprintln!(
                "distd: refused a connection from {peer}: no TLS handshake within {HANDSHAKE_TIMEOUT:?}"
            );
            return;
        }
    };
    let caller = match distd_api::tls::peer_id(tls.get_ref().1.peer_certificates()) {
        Ok(id) => Caller(id),
        Err(e) => {
            eprintln!("distd: refused a connection from {peer}: {e:#}");
            return;
        }
    };
    let service =
        hyper_util::service::TowerToHyperService::new(router.layer(axum::Extension(caller)));
    if let Err(e) = hyper::server::conn::http1::Builder::new()
        .serve_connection(TokioIo::new(tls), service)
        .await
    {
        // A client that went away mid-answer (a follower interrupted) is routine.
        if !e.is_incomplete_message() {
            eprintln!("distd: connection from {peer}: {e}");
        }
    }
}

/// What the ops listener reads.
#[derive(Clone)]
struct Ops {
    source: X509Source,
    metrics: Arc<Metrics>,
    stopping: watch::Receiver<bool>,
}

fn ops_router(ops: Ops) -> Router {
    Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(ready))
        .route("/metrics", get(scrape))
        .with_state(ops)
}

/// Ready while it has an SVID to serve with and is not stopping.
async fn ready(State(ops): State<Ops>) -> (StatusCode, String) {
    if *ops.stopping.borrow() {
        return (StatusCode::SERVICE_UNAVAILABLE, "stopping\n".into());
    }
    match ops.source.svid() {
        Ok(_) => (StatusCode::OK, "ready\n".into()),
        Err(e) => (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("no X.509-SVID to serve with: {e}\n"),
        ),
    }
}

async fn scrape(State(ops): State<Ops>) -> ([(axum::http::HeaderName, &'static str); 1], String) {
    // Every SVID the daemon holds (server, signer, promoter), as the agent last sent them.
    if let Ok(context) = ops.source.x509_context() {
        for svid in context.svids() {
            if let Some(leaf) = svid.cert_chain().first()
                && let Ok(parsed) = tcdist_verify::svid::parse_leaf(leaf.as_bytes())
            {
                ops.metrics
                    .set_svid_expiry(parsed.id.as_str(), parsed.not_after);
            }
        }
    }
    (
        [(
            axum::http::header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        ops.metrics.encode(),
    )
}

/// Re-signs the channel heads of every line that expire within `refresh_within`, at start and
/// every `refresh_every`; a channel never promoted is left alone. Failures are reported and
/// retried at the next round: the heads stay valid until they expire.
async fn refresh_channels(daemon: Arc<Daemon>, mut stopping: watch::Receiver<bool>) {
    let every = daemon.config.refresh_every.unsigned_abs();
    loop {
        for line in daemon
            .config
            .lines
            .iter()
            .filter(|l| !l.channels.is_empty())
        {
            if let Err(e) = daemon.refresh_line(line).await {
                eprintln!(
                    "distd: re-signing the channels of line {:?}: {e:#}",
                    line.name
                );
            }
        }
        tokio::select! {
            () = tokio::time::sleep(every) => {}
            _ = stopping.wait_for(|stop| *stop) => return,
        }
    }
}
