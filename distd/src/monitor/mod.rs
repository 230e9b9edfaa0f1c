//! `distd monitor`: watches the transparency logs the policy trusts for entries of the
//! identities it gives power, and alerts on what the publisher's ledger does not hold, on a
//! log that contradicts itself, and on entries it cannot read (docs/monitor.md).

pub mod alert;
mod judge;
mod metrics;
pub mod round;
pub mod state;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use axum::Router;
use axum::routing::get;
use tokio::net::TcpListener;

use alert::{AlertClass, run_hook};
use metrics::{Metrics, open_alerts};
use round::{Monitor, Round};
use state::MonitorState;

/// How the monitor runs: one round (`--once`) or as a service.
pub struct Service {
    pub monitor: Monitor,
    pub once: bool,
    pub interval: Duration,
    pub hook: Option<String>,
    pub metrics_listen: Option<SocketAddr>,
}

/// Runs the monitor; returns the most severe class among the alerts still open when it
/// stopped (after its only round with `--once`).
pub async fn run(service: Service) -> Result<Option<AlertClass>> {
    let metrics = Arc::new(Metrics::new());
    if let Some(address) = service.metrics_listen {
        serve_metrics(address, Arc::clone(&metrics)).await?;
    }
    let mut terminate = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .context("installing the SIGTERM handler")?;
    let mut last_operational = Vec::new();
    loop {
        let (state, round) = one_round(&service.monitor).await?;
        metrics.observe(&state, &round);
        for (origin, position, size) in &round.progress {
            eprintln!("distd monitor: log {origin:?}: read {position} of {size} entries");
        }
        // Operational alerts are new when they start, not every round they last.
        let new: Vec<_> = round
            .raised
            .iter()
            .chain(
                round
                    .operational
                    .iter()
                    .filter(|a| !last_operational.contains(&a.key)),
            )
            .collect();
        let shown: Vec<_> = if service.once {
            open_alerts(&state, &round).collect()
        } else {
            new.clone()
        };
        for alert in shown {
            println!(
                "{}",
                serde_json::to_string(alert).expect("an alert serializes")
            );
        }
        if let Some(hook) = &service.hook {
            for alert in new {
                run_hook(hook, alert).await;
            }
        }
        last_operational = round.operational.iter().map(|a| a.key.clone()).collect();
        let worst = open_alerts(&state, &round).map(|a| a.class).max();
        if service.once {
            return Ok(worst);
        }
        tokio::select! {
            () = tokio::time::sleep(service.interval) => {}
            _ = terminate.recv() => return Ok(worst),
        }
    }
}

/// One round, with the state directory locked from loading the state to saving it.
async fn one_round(monitor: &Monitor) -> Result<(MonitorState, Round)> {
    let _lock = monitor.state_dir().lock().await?;
    let mut state = monitor.state_dir().load()?;
    let round = monitor.round(&mut state).await?;
    Ok((state, round))
}

async fn serve_metrics(address: SocketAddr, metrics: Arc<Metrics>) -> Result<()> {
    let listener = TcpListener::bind(address)
        .await
        .with_context(|| format!("listening on {address}"))?;
    let router = Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .route(
            "/metrics",
            get(move || {
                let metrics = Arc::clone(&metrics);
                async move {
                    (
                        [(
                            axum::http::header::CONTENT_TYPE,
                            "text/plain; version=0.0.4; charset=utf-8",
                        )],
                        metrics.encode(),
                    )
                }
            }),
        );
    eprintln!(
        "distd monitor: metrics on http://{}/metrics",
        listener.local_addr()?
    );
    tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, router).await {
            eprintln!("distd monitor: the metrics listener failed: {e}");
        }
    });
    Ok(())
}

/// `distd monitor ack`: acknowledges alerts `ids` (all open ones with `all`); returns them.
pub async fn acknowledge(dir: &std::path::Path, ids: &[u64], all: bool) -> Result<Vec<u64>> {
    let state_dir = state::StateDir::open(dir)?;
    let _lock = state_dir.lock().await?;
    let mut state = state_dir.load()?;
    for id in ids {
        if !state.alerts.iter().any(|a| a.id == *id) {
            anyhow::bail!("{} holds no alert {id}", dir.display());
        }
    }
    let mut acked = Vec::new();
    for alert in &mut state.alerts {
        if !alert.acknowledged && (all || ids.contains(&alert.id)) {
            alert.acknowledged = true;
            acked.push(alert.id);
        }
    }
    state_dir.save(&state)?;
    Ok(acked)
}
