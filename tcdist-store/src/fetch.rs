//! Layers from source to staging: each blob is downloaded (resuming with Range after
//! transient failures) into a spool file while its size and digest are checked, and only a
//! blob that matched its digest is decompressed and extracted. Layers run in parallel, so one
//! layer is extracted while the next downloads.

use std::io::{self, BufReader, Read};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use bytes::Buf;
use futures::StreamExt;

use crate::extract::{
    BudgetUse, BudgetedReader, ExtractError, Extracted, LayerExtractor, budget_or_malformed,
    manifest_of,
};
use crate::report::Reporter;
use crate::staging::Staging;
use crate::tree::TreeManifest;
use tcdist_core::error::{Error, Result};
use tcdist_oci::checked::{BlobSpool, CheckedBlob};
use tcdist_oci::release::{Compression, Descriptor};
use tcdist_oci::resolve::ResolvedRelease;
use tcdist_oci::source::{BlobHost, ReleaseSource};
use tcdist_verify::Verified;
use tcdist_verify::structure::ExtractBudget;

/// zstd frames may ask for a window of up to 2 GiB; distd's levels use at most 8 MiB. A
/// larger window is refused rather than allocated.
const ZSTD_WINDOW_LOG_MAX: u32 = 24;
/// Broken streams from a mirror resumed before the next host is tried.
const MIRROR_RESUMES: u32 = 1;
/// Read buffer between a spool file and its decompressor.
const SPOOL_READ_BUFFER: usize = 256 << 10;

pub struct LayerFetch<'a> {
    pub source: &'a ReleaseSource,
    pub staging: &'a Staging,
    pub budget: &'a ExtractBudget,
    pub reporter: &'a dyn Reporter,
    pub jobs: usize,
    pub retries: u32,
}

impl LayerFetch<'_> {
    /// Fetches and extracts every layer of a verified release into the staging directory,
    /// then makes their hard links; returns the manifest of what was written. The largest
    /// layers start first and a finished layer's slot goes to the next at once, so the last
    /// layers to finish are small ones and no core waits on one large layer at the end. On
    /// failure the first layer error (in manifest order) is returned; other layers are
    /// cancelled.
    pub async fn run(&self, release: &Verified<ResolvedRelease>) -> Result<TreeManifest> {
        let used = Arc::new(BudgetUse::default());
        let cancel = Arc::new(AtomicBool::new(false));
        let mut largest_first: Vec<(usize, &Descriptor)> =
            release.get().manifest.layers.iter().enumerate().collect();
        largest_first.sort_by_key(|(_, layer)| std::cmp::Reverse(layer.size));
        let mut results: Vec<(usize, Result<Option<Extracted>>)> =
            futures::stream::iter(largest_first)
                .map(|(index, layer)| {
                    let used = used.clone();
                    let cancel = cancel.clone();
                    async move {
                        let result = self.fetch_layer(layer, used, &cancel).await;
                        if result.is_err() {
                            cancel.store(true, Ordering::Relaxed);
                        }
                        (index, result)
                    }
                })
                .buffer_unordered(self.jobs.max(1))
                .collect()
                .await;
        results.sort_by_key(|(index, _)| *index);
        let mut layers = Vec::new();
        let mut first_error = None;
        for (_, result) in results {
            match result {
                Ok(Some(extracted)) => layers.push(extracted),
                // Stopped because another layer failed; that layer's error is reported.
                Ok(None) => {}
                Err(e) => {
                    first_error.get_or_insert(e);
                }
            }
        }
        if let Some(e) = first_error {
            return Err(e);
        }
        let staging = self.staging.path().to_owned();
        tokio::task::spawn_blocking(move || manifest_of(layers, &staging))
            .await
            .map_err(|e| task_failed("making hard links", e))?
            .map_err(into_error)
    }

    async fn fetch_layer(
        &self,
        layer: &Descriptor,
        used: Arc<BudgetUse>,
        cancel: &AtomicBool,
    ) -> Result<Option<Extracted>> {
        let Some(blob) = self.download(layer, cancel).await? else {
            return Ok(None);
        };
        let compression = Compression::from_media_type(&layer.media_type).ok_or_else(|| {
            tcdist_core::error::Rejection::malformed(
                format!("layer {}", layer.digest),
                format!("unknown layer media type {:?}", layer.media_type),
            )
        })?;
        let staging = self.staging.path().to_owned();
        let budget = self.budget.clone();
        tokio::task::spawn_blocking(move || {
            extract_blob(blob, compression, &staging, &budget, &used)
        })
        .await
        .map_err(|e| task_failed("extracting a layer", e))?
        .map(Some)
        .map_err(into_error)
    }

    /// Downloads the blob from the first host that serves it whole and right: each mirror in
    /// turn (one that fails, or serves other bytes, is noted and skipped for this layer), then
    /// the source itself, whose failure is the pull's. Returns `None` when cancelled because
    /// another layer failed.
    async fn download(
        &self,
        layer: &Descriptor,
        cancel: &AtomicBool,
    ) -> Result<Option<CheckedBlob>> {
        let hosts = self.source.blob_hosts();
        let (source, mirrors) = hosts
            .split_last()
            .expect("the source itself is always a blob host");
        for host in mirrors {
            match self
                .download_from(host, layer, cancel, MIRROR_RESUMES)
                .await
            {
                // The local store failing (a full disk) is not the mirror's fault: the next
                // host would fail the same way, after downloading the layer again.
                Err(e @ Error::Store { .. }) => return Err(e),
                Err(e) => self.source.mirror_skipped(
                    host.mirror().unwrap_or_default(),
                    &format!("layer {}", layer.digest),
                    &e,
                ),
                done => return done,
            }
        }
        self.download_from(source, layer, cancel, self.retries)
            .await
    }

    /// Downloads the blob from `host` into a spool file while checking its size and digest,
    /// resuming after up to `retries` broken streams. A digest or size mismatch is a
    /// verification failure, never retried.
    async fn download_from(
        &self,
        host: &BlobHost<'_>,
        layer: &Descriptor,
        cancel: &AtomicBool,
        retries: u32,
    ) -> Result<Option<CheckedBlob>> {
        let id = self.reporter.layer_started(&layer.digest, layer.size);
        let spool_dir = self.staging.spool_dir();
        let mut spool = BlobSpool::create(spool_dir, &format!("layer {}", layer.digest), layer)?;
        let mut failures = 0;
        'attempts: loop {
            let (mut stream, mut skip) = host.open(layer, spool.received()).await?;
            loop {
                if cancel.load(Ordering::Relaxed) {
                    return Ok(None);
                }
                let detail = match stream.next().await {
                    Some(Ok(mut chunk)) => {
                        let dropped = skip.min(chunk.len() as u64);
                        chunk.advance(dropped as usize);
                        skip -= dropped;
                        // Page-cache writes of one chunk; not worth a blocking-pool hop each.
                        spool.write(&chunk, spool_dir)?;
                        self.reporter.layer_progress(id, chunk.len() as u64);
                        continue;
                    }
                    Some(Err(e)) => e.to_string(),
                    None if spool.received() < layer.size => "connection closed early".to_owned(),
                    None => break 'attempts,
                };
                failures += 1;
                if failures > retries {
                    return Err(Error::Unavailable {
                        operation: format!("downloading layer {}", layer.digest),
                        attempts: failures,
                        detail,
                    });
                }
                // Resume where the stream broke.
                tokio::time::sleep(std::time::Duration::from_millis(200 << failures.min(4))).await;
                continue 'attempts;
            }
        }
        self.reporter.layer_finished(id);
        spool.finish(spool_dir).map(Some)
    }
}

fn into_error(e: ExtractError) -> Error {
    match e {
        ExtractError::Rejected(r) => Error::Rejected(r),
        ExtractError::Store(e) => e,
    }
}

fn task_failed(what: &str, e: tokio::task::JoinError) -> Error {
    Error::store(
        "running a task",
        Path::new(what),
        io::Error::other(e.to_string()),
    )
}

/// Decompresses and extracts one checked layer; runs on a blocking thread.
fn extract_blob(
    blob: CheckedBlob,
    compression: Compression,
    staging: &Path,
    budget: &ExtractBudget,
    used: &BudgetUse,
) -> std::result::Result<Extracted, ExtractError> {
    let layer = blob.descriptor().digest.clone();
    let malformed =
        |what: &str, e: io::Error| ExtractError::Rejected(budget_or_malformed(&layer, what, e));
    let reader = BufReader::with_capacity(SPOOL_READ_BUFFER, blob.into_reader());
    let decoder: Box<dyn Read> = match compression {
        Compression::Zstd => {
            let mut decoder = zstd::stream::read::Decoder::with_buffer(reader)
                .map_err(|e| malformed("starting zstd", e))?;
            decoder
                .window_log_max(ZSTD_WINDOW_LOG_MAX)
                .map_err(|e| malformed("limiting the zstd window", e))?;
            Box::new(decoder)
        }
        Compression::Gzip => Box::new(flate2::read::GzDecoder::new(reader)),
    };
    let mut archive = BudgetedReader::new(decoder, budget, used);
    let extracted = LayerExtractor::new(staging, &layer, budget, used).extract(&mut archive)?;
    // Read to the end: trailing bytes must decompress cleanly and count against the budget.
    io::copy(&mut archive, &mut io::sink())
        .map_err(|e| malformed("reading past the end of the archive", e))?;
    Ok(extracted)
}
