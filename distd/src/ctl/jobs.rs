//! `distd ctl build`, `jobs`, `job` and `cancel`: a line's builds, and following one's log.

use anyhow::{Context, Result};
use distd_api::client::{Client, ok};
use distd_api::wire::{Job, JobState};
use http::Method;
use http_body_util::BodyExt as _;
use tokio::io::AsyncWriteExt as _;

use super::print;

/// Requests a build of `line`; with `follow`, follows it to its end.
pub async fn build(client: &Client, line: &str, follow: bool) -> Result<()> {
    let job: Job = client
        .call(
            Method::POST,
            &format!("/v1/lines/{line}/builds"),
            None::<&()>,
        )
        .await?;
    eprintln!("distd ctl: job {} queued for line {line:?}", job.id);
    if follow {
        return follow_job(client, job.id).await;
    }
    print(&job)
}

pub async fn list(client: &Client) -> Result<()> {
    print(
        &client
            .call::<Vec<Job>>(Method::GET, "/v1/jobs", None::<&()>)
            .await?,
    )
}

/// Prints job `id`; with `follow`, follows it to its end.
pub async fn show(client: &Client, id: u64, follow: bool) -> Result<()> {
    if follow {
        return follow_job(client, id).await;
    }
    print(
        &client
            .call::<Job>(Method::GET, &format!("/v1/jobs/{id}"), None::<&()>)
            .await?,
    )
}

pub async fn cancel(client: &Client, id: u64) -> Result<()> {
    print(
        &client
            .call::<Job>(Method::POST, &format!("/v1/jobs/{id}/cancel"), None::<&()>)
            .await?,
    )
}

/// Streams the job's log to stderr until it ends, prints the job, and fails unless it
/// succeeded.
async fn follow_job(client: &Client, id: u64) -> Result<()> {
    let response = ok(client
        .send(Method::GET, &format!("/v1/jobs/{id}/log?follow=true"), None)
        .await?)
    .await?;
    let mut body = response.into_body();
    let mut stderr = tokio::io::stderr();
    while let Some(frame) = body.frame().await {
        if let Ok(data) = frame.context("reading the job's log")?.into_data() {
            stderr.write_all(&data).await?;
        }
    }
    let job: Job = client
        .call(Method::GET, &format!("/v1/jobs/{id}"), None::<&()>)
        .await?;
    print(&job)?;
    match job.state {
        JobState::Succeeded => Ok(()),
        state => anyhow::bail!(
            "job {id} ended {state:?}{}",
            job.error.map(|e| format!(": {e}")).unwrap_or_default()
        ),
    }
}
