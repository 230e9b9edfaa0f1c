//! Getting the log's checkpoints cosigned by witnesses after an entry is logged: the log here
//! (rekor-tiles with its POSIX backend) asks no witness itself. The entry's own checkpoint is
//! sent first; a witness already past it cannot sign it, and then the log's current
//! checkpoint is cosigned instead, with the entry's inclusion proof in it. Fewer
//! cosignatures than the quorum fail the signing: nothing is attached and no tag moves. The
//! protocol client is the verification core's, so every cosignature is checked before it is
//! kept.

use std::path::Path;

use anyhow::{Context, Result, bail};
use base64::Engine as _;
use serde::Deserialize;
use tcdist_oci::attachments::WitnessedCheckpoint;
use tcdist_oci::bundle::TransparencyLogEntry;
use tcdist_verify::witness::WitnessKey;
use tcdist_verify::witness::client::{CosignError, Cosigning, Witness, WitnessClient};

/// The witnesses file (`--witnesses`, `TCDIST_WITNESSES`).
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct WitnessesFile {
    quorum: usize,
    witness: Vec<WitnessEntry>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct WitnessEntry {
    name: String,
    /// Its C2SP verifier key (`NAME+HASH+BASE64`).
    key: String,
    /// Where it serves `add-checkpoint`.
    url: String,
}

/// The witnesses of the log distd records in.
pub struct Witnesses {
    client: WitnessClient,
}

impl Witnesses {
    /// The witnesses of `path`, for the log whose tiles are at `tiles_url`.
    pub fn load(path: &Path, tiles_url: &str) -> Result<Self> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("reading the witnesses file {}", path.display()))?;
        let file: WitnessesFile = toml::from_str(&text)
            .with_context(|| format!("{} is not a witnesses file", path.display()))?;
        let witnesses = file
            .witness
            .into_iter()
            .map(|w| {
                let key = WitnessKey::parse(&w.key).map_err(|e| {
                    anyhow::anyhow!("witness {:?} in {}: {e}", w.name, path.display())
                })?;
                if key.name != w.name {
                    bail!(
                        "witness {:?} in {}: its key is named {:?}",
                        w.name,
                        path.display(),
                        key.name
                    );
                }
                Ok(Witness { key, url: w.url })
            })
            .collect::<Result<Vec<_>>>()?;
        let client = WitnessClient::new(witnesses, file.quorum, tiles_url)
            .map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
        Ok(Witnesses { client })
    }

    /// The protocol client, for those (the monitor) that cosign checkpoints of their own.
    pub fn into_client(self) -> WitnessClient {
        self.client
    }

    /// A checkpoint that includes `entry`, cosigned by a quorum, with the entry's inclusion
    /// proof in it: the one the log `answered` with, when the log's own witnessing got the
    /// quorum's cosignatures on it; else the witnesses are asked.
    pub async fn witness(
        &self,
        entry: &TransparencyLogEntry,
        answered: Option<&str>,
    ) -> Result<WitnessedCheckpoint> {
        let started = std::time::Instant::now();
        let proof = entry
            .inclusion_proof
            .as_ref()
            .context("the log's entry has no inclusion proof to witness")?;
        let index = u64::try_from(entry.log_index).context("a negative log index")?;
        let checkpoint = &proof.checkpoint.envelope;
        let size = sigstore_types::Checkpoint::from_text(checkpoint)
            .map_err(|e| anyhow::anyhow!("the log's checkpoint does not parse: {e}"))?
            .tree_size();
        let b64 = |h: &Vec<u8>| base64::engine::general_purpose::STANDARD.encode(h);
        if let Some((note, cosigners)) =
            answered.and_then(|note| Some((note, self.client.cosigned_by_quorum(note)?)))
        {
            // The log stops asking at the quorum: the others are not missing.
            eprintln!(
                "distd: checkpoint of size {size} cosigned by {} of {} witnesses ({}) through \
                 the log",
                cosigners.len(),
                self.client.witness_count(),
                cosigners.join(", ")
            );
            return Ok(WitnessedCheckpoint {
                checkpoint: note.to_owned(),
                log_index: index,
                hashes: proof.hashes.iter().map(b64).collect(),
            });
        }
        let witnessed = match self
            .client
            .cosign(checkpoint)
            .await
            .map_err(anyhow::Error::msg)?
        {
            Cosigning::Quorum {
                note,
                cosigners,
                failures,
            } => {
                for failure in &failures {
                    eprintln!("distd: warning: witness {failure}");
                }
                eprintln!(
                    "distd: checkpoint of size {} cosigned by {} of {} witnesses ({}) in {} ms",
                    size,
                    cosigners.len(),
                    cosigners.len() + failures.len(),
                    cosigners.join(", "),
                    started.elapsed().as_millis()
                );
                WitnessedCheckpoint {
                    checkpoint: note,
                    log_index: index,
                    hashes: proof.hashes.iter().map(b64).collect(),
                }
            }
            // Witnesses already signed a larger tree: the log's current one includes the entry.
            Cosigning::Ahead(_) => {
                let included = self
                    .client
                    .include(&entry.canonicalized_body, index)
                    .await
                    .map_err(|e| match e {
                        CosignError::Short { size, detail } => {
                            short(size, self.client.quorum(), detail)
                        }
                        CosignError::Failed(why) | CosignError::NotIncluded(why) => {
                            anyhow::anyhow!(why)
                        }
                    })?;
                eprintln!(
                    "distd: the witnesses were past the entry's checkpoint; the log's current \
                     one of size {}, which includes entry {index}, was cosigned in {} ms",
                    included.tree_size,
                    started.elapsed().as_millis()
                );
                WitnessedCheckpoint {
                    checkpoint: included.note,
                    log_index: index,
                    hashes: included
                        .hashes
                        .iter()
                        .map(|h| base64::engine::general_purpose::STANDARD.encode(h))
                        .collect(),
                }
            }
            Cosigning::Short { detail, .. } => {
                return Err(short(size, self.client.quorum(), detail));
            }
        };
        Ok(witnessed)
    }
}

/// The error of a signing whose checkpoint too few witnesses cosigned.
fn short(size: u64, quorum: usize, detail: String) -> anyhow::Error {
    tcdist_core::Error::Unavailable {
        operation: format!(
            "getting the log's checkpoint of size {size} cosigned by {quorum} witnesses"
        ),
        attempts: 1,
        detail,
    }
    .into()
}
