//! Layers from source to staging in one streaming pass each: download (resuming with Range
//! after transient failures) → size and digest check → decompress → extract. Layers run in
//! parallel; the async side downloads and hashes, a blocking thread decompresses and writes.

use std::io::{self, Read};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use bytes::{Buf, Bytes};
use futures::StreamExt;
use sha2::{Digest as _, Sha256};
use tokio::sync::mpsc;

use crate::digest::Digest;
use crate::error::{Error, Rejection, Result};
use crate::release::{Compression, Descriptor};
use crate::report::Reporter;
use crate::source::ReleaseSource;
use crate::store::extract::{
    BudgetUse, BudgetedReader, ExtractBudget, ExtractError, LayerExtractor, PendingHardLink,
    budget_or_malformed, create_hard_links,
};

/// Chunks in flight between a download and its extraction thread; bounds memory per layer.
const CHANNEL_DEPTH: usize = 16;

pub struct LayerFetch<'a> {
    pub source: &'a ReleaseSource,
    pub staging: &'a Path,
    pub budget: &'a ExtractBudget,
    pub reporter: &'a dyn Reporter,
    pub jobs: usize,
    pub retries: u32,
}

impl LayerFetch<'_> {
    /// Fetches and extracts all `layers` into the staging directory, then makes their hard
    /// links. On failure the first layer error (in manifest order) is returned; other layers
    /// are cancelled.
    pub async fn run(&self, layers: &[Descriptor]) -> Result<()> {
        let used = Arc::new(BudgetUse::default());
        let cancel = Arc::new(AtomicBool::new(false));
        let results: Vec<Result<Option<Vec<PendingHardLink>>>> = futures::stream::iter(layers)
            .map(|layer| {
                let used = used.clone();
                let cancel = cancel.clone();
                async move {
                    let result = self.fetch_layer(layer, used, &cancel).await;
                    if result.is_err() {
                        cancel.store(true, Ordering::Relaxed);
                    }
                    result
                }
            })
            .buffered(self.jobs.max(1))
            .collect()
            .await;
        let mut links = Vec::new();
        let mut first_error = None;
        for result in results {
            match result {
                Ok(Some(layer_links)) => links.extend(layer_links),
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
        let staging = self.staging.to_owned();
        tokio::task::spawn_blocking(move || create_hard_links(&staging, &links))
            .await
            .expect("hard link task does not panic")
            .map_err(into_error)
    }

    async fn fetch_layer(
        &self,
        layer: &Descriptor,
        used: Arc<BudgetUse>,
        cancel: &AtomicBool,
    ) -> Result<Option<Vec<PendingHardLink>>> {
        let compression = Compression::from_media_type(&layer.media_type)
            .expect("the structure stage admits only known layer media types");
        let (sender, receiver) = mpsc::channel(CHANNEL_DEPTH);
        let extraction = {
            let staging = self.staging.to_owned();
            let digest = layer.digest.clone();
            let budget = self.budget.clone();
            tokio::task::spawn_blocking(move || {
                extract_stream(
                    ChannelReader::new(receiver),
                    compression,
                    &staging,
                    &digest,
                    &budget,
                    &used,
                )
            })
        };
        let downloaded = self.download(layer, sender, cancel).await;
        let extracted = extraction.await.expect("extraction thread does not panic");
        // A digest or size mismatch explains any extraction error, so it is reported first.
        if !downloaded? {
            return Ok(None);
        }
        extracted.map(Some).map_err(into_error)
    }

    /// Streams the blob into `sender` while checking its size and digest. Keeps reading (and
    /// hashing) if extraction stops early, so a corrupted blob is reported as one. Returns
    /// false when cancelled because another layer failed.
    async fn download(
        &self,
        layer: &Descriptor,
        sender: mpsc::Sender<Bytes>,
        cancel: &AtomicBool,
    ) -> Result<bool> {
        let id = self.reporter.layer_started(&layer.digest, layer.size);
        let mut hasher = Sha256::new();
        let mut received: u64 = 0;
        let mut sender = Some(sender);
        let mut failures = 0;
        'attempts: loop {
            let (mut stream, mut skip) = self.source.open_blob(layer, received).await?;
            loop {
                if cancel.load(Ordering::Relaxed) {
                    return Ok(false);
                }
                let failure = match stream.next().await {
                    Some(Ok(chunk)) => Ok(chunk),
                    Some(Err(e)) => Err(e.to_string()),
                    None if received < layer.size => Err("connection closed early".to_owned()),
                    None => break 'attempts,
                };
                let mut chunk = match failure {
                    Ok(chunk) => chunk,
                    Err(detail) => {
                        failures += 1;
                        if failures > self.retries {
                            return Err(Error::Unavailable {
                                operation: format!("downloading layer {}", layer.digest),
                                attempts: failures,
                                detail,
                            });
                        }
                        // Resume where the stream broke.
                        tokio::time::sleep(std::time::Duration::from_millis(
                            200 << failures.min(4),
                        ))
                        .await;
                        continue 'attempts;
                    }
                };
                let dropped = skip.min(chunk.len() as u64);
                chunk.advance(dropped as usize);
                skip -= dropped;
                if chunk.is_empty() {
                    continue;
                }
                received += chunk.len() as u64;
                if received > layer.size {
                    return Err(Rejection::SizeMismatch {
                        object: format!("layer {}", layer.digest),
                        expected: layer.size,
                        actual: received,
                    }
                    .into());
                }
                hasher.update(&chunk);
                self.reporter.layer_progress(id, chunk.len() as u64);
                if let Some(tx) = &sender
                    && tx.send(chunk).await.is_err()
                {
                    sender = None;
                }
            }
        }
        drop(sender);
        self.reporter.layer_finished(id);
        if received != layer.size {
            return Err(Rejection::SizeMismatch {
                object: format!("layer {}", layer.digest),
                expected: layer.size,
                actual: received,
            }
            .into());
        }
        let actual = Digest::from_hasher(hasher);
        if actual != layer.digest {
            return Err(Rejection::DigestMismatch {
                object: format!("layer {}", layer.digest),
                expected: layer.digest.clone(),
                actual,
            }
            .into());
        }
        Ok(true)
    }
}

fn into_error(e: ExtractError) -> Error {
    match e {
        ExtractError::Rejected(r) => Error::Rejected(r),
        ExtractError::Store(e) => e,
    }
}

/// Decompresses and extracts one layer; runs on a blocking thread.
fn extract_stream(
    reader: ChannelReader,
    compression: Compression,
    staging: &Path,
    layer: &Digest,
    budget: &ExtractBudget,
    used: &BudgetUse,
) -> std::result::Result<Vec<PendingHardLink>, ExtractError> {
    let malformed =
        |what: &str, e: io::Error| ExtractError::Rejected(budget_or_malformed(layer, what, e));
    let decoder: Box<dyn Read> = match compression {
        Compression::Zstd => Box::new(
            zstd::stream::read::Decoder::new(reader).map_err(|e| malformed("starting zstd", e))?,
        ),
        Compression::Gzip => Box::new(flate2::read::GzDecoder::new(io::BufReader::with_capacity(
            128 << 10,
            reader,
        ))),
    };
    let mut archive = tar::Archive::new(BudgetedReader::new(decoder, budget, used));
    let links = LayerExtractor::new(staging, layer, budget, used).extract(&mut archive)?;
    // Read to the end: trailing bytes must decompress cleanly and count against the budget.
    io::copy(&mut archive.into_inner(), &mut io::sink())
        .map_err(|e| malformed("reading past the end of the archive", e))?;
    Ok(links)
}

/// Reads the chunks a download task sends, as a blocking `Read`.
struct ChannelReader {
    receiver: mpsc::Receiver<Bytes>,
    current: Bytes,
}

impl ChannelReader {
    fn new(receiver: mpsc::Receiver<Bytes>) -> Self {
        Self {
            receiver,
            current: Bytes::new(),
        }
    }
}

impl Read for ChannelReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        while self.current.is_empty() {
            match self.receiver.blocking_recv() {
                Some(chunk) => self.current = chunk,
                None => return Ok(0),
            }
        }
        let n = buf.len().min(self.current.len());
        buf[..n].copy_from_slice(&self.current[..n]);
        self.current.advance(n);
        Ok(n)
    }
}
