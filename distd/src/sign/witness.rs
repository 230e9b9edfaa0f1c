//! Getting the log's checkpoints cosigned by witnesses (C2SP tlog-witness `add-checkpoint`),
//! after an entry is logged: the log here (rekor-tiles with its POSIX backend) asks no witness
//! itself. All witnesses are asked at once; each is sent a consistency proof from the tree size
//! it last cosigned (read from the log's tiles), and a witness that answers with another size
//! is asked again from that one. A witness already past the entry's checkpoint cannot sign it;
//! then the log's current checkpoint is cosigned instead, and the entry's inclusion proof in
//! it is carried along. Fewer cosignatures than the quorum fail the signing: nothing is
//! attached and no tag moves. Every cosignature is checked with the shared verification core
//! before it is kept.

use std::path::Path;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use base64::Engine as _;
use serde::Deserialize;
use sigstore_types::Checkpoint;
use tcdist_oci::attachments::WitnessedCheckpoint;
use tcdist_oci::bundle::TransparencyLogEntry;
use tcdist_verify::merkle::{leaf_hash, verify_inclusion};
use tcdist_verify::tiles::{TileError, TileReader};
use tcdist_verify::witness::{WitnessKey, cosigners};

/// How long one witness request may take.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// Requests to one witness for one checkpoint (each answer naming another size is one more),
/// and checkpoints tried when other signers move the witnesses on.
const ATTEMPTS: usize = 5;
/// A witness's answer is a few signature lines.
const MAX_ANSWER_BYTES: usize = 16 << 10;

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

struct Witness {
    key: WitnessKey,
    url: String,
}

pub struct Witnesses {
    quorum: usize,
    witnesses: Vec<Witness>,
    tiles_url: String,
    http: reqwest::Client,
}

/// Why one witness did not cosign.
enum Refusal {
    /// It already cosigned a larger tree.
    Ahead(u64),
    /// It answered no (a bad consistency proof, an unknown log or key, a request it refused),
    /// or with something that is not its cosignature.
    Refused(String),
    /// It could not be reached, or failed.
    Failed(String),
}

/// What asking the witnesses to cosign one checkpoint gave.
pub enum Cosigning {
    /// The checkpoint with the cosignatures of a quorum appended.
    Quorum(String),
    /// Too few cosigned, and a witness already cosigned a tree of this size, larger.
    Ahead(u64),
    /// Too few cosigned: `refused` names those that answered no, `detail` says what each did.
    Short {
        refused: Vec<String>,
        detail: String,
    },
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
        if file.quorum == 0 || file.quorum > witnesses.len() {
            bail!(
                "{}: a quorum of {} cannot be met by {} witnesses",
                path.display(),
                file.quorum,
                witnesses.len()
            );
        }
        Ok(Witnesses {
            quorum: file.quorum,
            witnesses,
            tiles_url: tiles_url.to_owned(),
            http: reqwest::Client::builder()
                .timeout(REQUEST_TIMEOUT)
                .build()
                .context("setting up the witness client")?,
        })
    }

    /// A checkpoint that includes `entry`, cosigned by a quorum, with the entry's inclusion
    /// proof in it.
    pub async fn witness(&self, entry: &TransparencyLogEntry) -> Result<WitnessedCheckpoint> {
        let proof = entry
            .inclusion_proof
            .as_ref()
            .context("the log's entry has no inclusion proof to witness")?;
        let index = u64::try_from(entry.log_index).context("a negative log index")?;
        let ahead = match self.cosign(&proof.checkpoint.envelope).await? {
            Cosigning::Quorum(note) => {
                let b64 = |h: &Vec<u8>| base64::engine::general_purpose::STANDARD.encode(h);
                return Ok(WitnessedCheckpoint {
                    checkpoint: note,
                    log_index: index,
                    hashes: proof.hashes.iter().map(b64).collect(),
                });
            }
            Cosigning::Ahead(ahead) => ahead,
            Cosigning::Short { detail, .. } => {
                return Err(short(&proof.checkpoint.envelope, self.quorum, detail));
            }
        };
        // Witnesses already signed a larger tree: the log's current one includes the entry.
        // Other signers may move them on meanwhile, so this is tried a few times.
        let mut ahead = ahead;
        let mut attempt = 1;
        let (note, size) = loop {
            let current = self
                .tiles(0)
                .checkpoint()
                .await
                .map_err(|e| anyhow::anyhow!("reading the log's current checkpoint: {e}"))?;
            let size = parse(&current)?.tree_size();
            if size < ahead {
                bail!(
                    "a witness cosigned a tree of {ahead} entries, the log's current one has \
                     {size}: the witnesses saw another log under this log's key"
                );
            }
            match self.cosign(&current).await? {
                Cosigning::Quorum(note) => break (note, size),
                Cosigning::Short { detail, .. } => {
                    return Err(short(&current, self.quorum, detail));
                }
                Cosigning::Ahead(moved) if attempt < ATTEMPTS => {
                    ahead = moved;
                    attempt += 1;
                }
                Cosigning::Ahead(moved) => bail!(
                    "the witnesses moved past the log's current checkpoint (to size {moved}) \
                     {ATTEMPTS} times while it was being cosigned"
                ),
            }
        };
        let hashes = self.tiles(size).inclusion_proof(index).await.map_err(|e| {
            anyhow::anyhow!("reading the entry's inclusion proof from the log: {e}")
        })?;
        let leaf = leaf_hash(&entry.canonicalized_body);
        if !verify_inclusion(
            &leaf,
            index,
            size,
            &hashes,
            parse(&note)?.root_hash().as_bytes(),
        ) {
            bail!(
                "entry {index} is not in the log's current checkpoint (size {size}) that the \
                 witnesses cosigned: the log it was recorded in is not the one they witness"
            );
        }
        Ok(WitnessedCheckpoint {
            checkpoint: note,
            log_index: index,
            hashes: hashes
                .iter()
                .map(|h| base64::engine::general_purpose::STANDARD.encode(h))
                .collect(),
        })
    }

    /// Asks every witness at once to cosign `checkpoint` (the log's signed note).
    pub async fn cosign(&self, checkpoint: &str) -> Result<Cosigning> {
        let started = std::time::Instant::now();
        let parsed = parse(checkpoint)?;
        let answers = futures::future::join_all(
            self.witnesses
                .iter()
                .map(|w| self.ask(w, checkpoint, &parsed)),
        )
        .await;
        let mut note = checkpoint.to_owned();
        let mut cosigned = Vec::new();
        let mut failures = Vec::new();
        let mut refused = Vec::new();
        let mut ahead = None;
        for (witness, answer) in self.witnesses.iter().zip(answers) {
            match answer {
                Ok(lines) => {
                    note.push_str(&lines);
                    cosigned.push(witness.key.name.clone());
                }
                Err(Refusal::Ahead(size)) => {
                    ahead = ahead.max(Some(size));
                    failures.push(format!(
                        "{} already cosigned a tree of {size} entries",
                        witness.key.name
                    ));
                }
                Err(Refusal::Refused(why)) => {
                    refused.push(witness.key.name.clone());
                    failures.push(format!("{}: {why}", witness.key.name));
                }
                Err(Refusal::Failed(why)) => failures.push(format!("{}: {why}", witness.key.name)),
            }
        }
        if cosigned.len() >= self.quorum {
            for failure in &failures {
                eprintln!("distd: warning: witness {failure}");
            }
            eprintln!(
                "distd: checkpoint of size {} cosigned by {} of {} witnesses ({}) in {} ms",
                parsed.tree_size(),
                cosigned.len(),
                self.witnesses.len(),
                cosigned.join(", "),
                started.elapsed().as_millis()
            );
            return Ok(Cosigning::Quorum(note));
        }
        if let Some(size) = ahead {
            return Ok(Cosigning::Ahead(size));
        }
        Ok(Cosigning::Short {
            refused,
            detail: format!(
                "{} cosigned ({}); {}",
                cosigned.len(),
                if cosigned.is_empty() {
                    "none".to_owned()
                } else {
                    cosigned.join(", ")
                },
                failures.join("; ")
            ),
        })
    }

    /// The log's tiles for a tree of `size`, read with the witnesses' client.
    fn tiles(&self, size: u64) -> TileReader {
        TileReader::with_client(self.http.clone(), &self.tiles_url, size)
    }

    /// One witness's cosignature lines for `checkpoint`.
    async fn ask(
        &self,
        witness: &Witness,
        checkpoint: &str,
        parsed: &Checkpoint,
    ) -> std::result::Result<String, Refusal> {
        let size = parsed.tree_size();
        let url = format!("{}/add-checkpoint", witness.url.trim_end_matches('/'));
        let failed = |why: String| Refusal::Failed(why);
        // Most witnesses are at the size distd saw last; the first answer says where they are.
        let mut old = 0;
        for _ in 0..ATTEMPTS {
            let proof = self.consistency_proof(old, size).await.map_err(failed)?;
            let mut body = format!("old {old}\n");
            for hash in &proof {
                body.push_str(&base64::engine::general_purpose::STANDARD.encode(hash));
                body.push('\n');
            }
            body.push('\n');
            body.push_str(checkpoint);
            let response = self
                .http
                .post(&url)
                .body(body)
                .send()
                .await
                .map_err(|e| failed(tcdist_oci::registry::error_chain(&e)))?;
            let status = response.status();
            let text = read_capped(response).await.map_err(failed)?;
            match status.as_u16() {
                200 => return self.check(witness, checkpoint, &text),
                409 => {
                    let known: u64 = text.trim().parse().map_err(|_| {
                        failed(format!(
                            "answered 409 without a tree size ({:?})",
                            text.trim()
                        ))
                    })?;
                    if known > size {
                        return Err(Refusal::Ahead(known));
                    }
                    old = known;
                }
                _ => {
                    let answer = format!(
                        "answered {status}: {}",
                        tcdist_core::text::sanitize(text.trim(), 200)
                    );
                    return Err(if status.is_client_error() {
                        Refusal::Refused(answer)
                    } else {
                        failed(answer)
                    });
                }
            }
        }
        Err(failed(format!(
            "its tree size kept changing over {ATTEMPTS} requests"
        )))
    }

    /// The witness's answer, checked: cosignature lines that verify for this witness's key.
    fn check(
        &self,
        witness: &Witness,
        checkpoint: &str,
        answer: &str,
    ) -> std::result::Result<String, Refusal> {
        let note = format!("{checkpoint}{answer}");
        let signed = parse(&note)
            .ok()
            .and_then(|parsed| cosigners(&parsed, std::slice::from_ref(&witness.key)).ok())
            .is_some_and(|names| names.contains(&witness.key.name));
        if signed && answer.lines().all(|l| l.starts_with("— ")) {
            Ok(answer.to_owned())
        } else {
            Err(Refusal::Refused(
                "answered with something that is not its valid cosignature".into(),
            ))
        }
    }

    async fn consistency_proof(
        &self,
        old: u64,
        size: u64,
    ) -> std::result::Result<Vec<[u8; 32]>, String> {
        if old == 0 || old == size {
            return Ok(Vec::new());
        }
        self.tiles(size)
            .consistency_proof(old)
            .await
            .map_err(|e| match e {
                TileError::Unavailable(why) | TileError::Invalid(why) => {
                    format!(
                        "no consistency proof from size {old} could be read from the log: {why}"
                    )
                }
            })
    }
}

/// The error of a signing whose checkpoint too few witnesses cosigned.
fn short(checkpoint: &str, quorum: usize, detail: String) -> anyhow::Error {
    let size = parse(checkpoint).map_or(0, |c| c.tree_size());
    tcdist_core::Error::Unavailable {
        operation: format!(
            "getting the log's checkpoint of size {size} cosigned by {quorum} witnesses"
        ),
        attempts: 1,
        detail,
    }
    .into()
}

fn parse(checkpoint: &str) -> Result<Checkpoint> {
    Checkpoint::from_text(checkpoint)
        .map_err(|e| anyhow::anyhow!("the log's checkpoint does not parse: {e}"))
}

async fn read_capped(mut response: reqwest::Response) -> std::result::Result<String, String> {
    let mut bytes = Vec::new();
    while let Some(chunk) = response
        .chunk()
        .await
        .map_err(|e| tcdist_oci::registry::error_chain(&e))?
    {
        if bytes.len() + chunk.len() > MAX_ANSWER_BYTES {
            return Err(format!("answered more than {MAX_ANSWER_BYTES} bytes"));
        }
        bytes.extend_from_slice(&chunk);
    }
    String::from_utf8(bytes).map_err(|_| "answered with text that is not UTF-8".to_owned())
}
