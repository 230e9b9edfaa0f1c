//! Asking witnesses to cosign a log's checkpoint (C2SP tlog-witness `add-checkpoint`), for
//! distd after it logs an entry, for the monitor on every checkpoint it follows, and for a
//! verifier that meets an entry with no cosigned checkpoint beside it. All witnesses are asked
//! at once; each is sent a consistency proof from the tree size it last cosigned (read from
//! the log's tiles), and a witness that answers with another size is asked again from that
//! one. Every answer is checked with this crate's cosignature verification before it is kept.

use std::time::Duration;

use base64::Engine as _;
use sigstore_types::Checkpoint;

use super::{WitnessKey, cosigners};
use crate::merkle::{Hash, leaf_hash, verify_inclusion};
use crate::tiles::{TileError, TileReader};

/// How long one witness request may take.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// Requests to one witness for one checkpoint (each answer naming another size is one more),
/// and checkpoints tried when other signers move the witnesses on.
const ATTEMPTS: usize = 5;
/// A witness's answer is a few signature lines.
const MAX_ANSWER_BYTES: usize = 16 << 10;

/// A witness and where it serves `add-checkpoint`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Witness {
    pub key: WitnessKey,
    pub url: String,
}

/// The witnesses of one log, and that log's tiles (for the consistency proofs they need).
pub struct WitnessClient {
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
    /// The checkpoint with the cosignatures of a quorum appended; `failures` says what the
    /// others did.
    Quorum {
        note: String,
        cosigners: Vec<String>,
        failures: Vec<String>,
    },
    /// Too few cosigned, and a witness already cosigned a tree of this size, larger.
    Ahead(u64),
    /// Too few cosigned: `refused` names those that answered no, `detail` says what each did.
    Short {
        refused: Vec<String>,
        detail: String,
    },
}

/// Why no cosigned checkpoint could be had.
#[derive(Debug)]
pub enum CosignError {
    /// Fewer than the quorum cosigned the checkpoint of this size (down, or refusing).
    Short { size: u64, detail: String },
    /// The log or the witnesses could not be read, or they showed two histories.
    Failed(String),
    /// The entry is not in the checkpoint the witnesses cosigned: it was recorded in a log
    /// they never saw (a fork under the log's key).
    NotIncluded(String),
}

impl std::fmt::Display for CosignError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CosignError::Short { size, detail } => {
                write!(
                    f,
                    "too few witnesses cosigned the checkpoint of size {size}: {detail}"
                )
            }
            CosignError::Failed(why) | CosignError::NotIncluded(why) => f.write_str(why),
        }
    }
}

/// A checkpoint a quorum cosigned that includes an entry, and the entry's inclusion proof.
pub struct Included {
    pub note: String,
    pub tree_size: u64,
    pub hashes: Vec<Hash>,
}

impl WitnessClient {
    /// `quorum` of `witnesses` must cosign; the log's tiles are at `tiles_url`.
    pub fn new(witnesses: Vec<Witness>, quorum: usize, tiles_url: &str) -> Result<Self, String> {
        if quorum == 0 || quorum > witnesses.len() {
            return Err(format!(
                "a quorum of {quorum} cannot be met by {} witnesses",
                witnesses.len()
            ));
        }
        Ok(WitnessClient {
            quorum,
            witnesses,
            tiles_url: tiles_url.trim_end_matches('/').to_owned(),
            http: reqwest::Client::builder()
                .timeout(REQUEST_TIMEOUT)
                .build()
                .map_err(|e| format!("setting up the witness client: {e}"))?,
        })
    }

    pub fn quorum(&self) -> usize {
        self.quorum
    }

    /// Asks every witness at once to cosign `checkpoint` (the log's signed note).
    pub async fn cosign(&self, checkpoint: &str) -> Result<Cosigning, String> {
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
            let name = &witness.key.name;
            match answer {
                Ok(lines) => {
                    note.push_str(&lines);
                    cosigned.push(name.clone());
                }
                Err(Refusal::Ahead(size)) => {
                    ahead = ahead.max(Some(size));
                    failures.push(format!("{name} already cosigned a tree of {size} entries"));
                }
                Err(Refusal::Refused(why)) => {
                    refused.push(name.clone());
                    failures.push(format!("{name}: {why}"));
                }
                Err(Refusal::Failed(why)) => failures.push(format!("{name}: {why}")),
            }
        }
        if cosigned.len() >= self.quorum {
            return Ok(Cosigning::Quorum {
                note,
                cosigners: cosigned,
                failures,
            });
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

    /// The log's current checkpoint, cosigned by a quorum, with `index`'s inclusion proof in
    /// it; `leaf` is the entry's canonical body. A log that serves its checkpoint cosigned
    /// already is taken at its word (the cosignatures are checked); otherwise the witnesses are
    /// asked, again with the log's newer checkpoint while they are past the one read, since
    /// other signers move them on.
    pub async fn include(&self, leaf: &[u8], index: u64) -> Result<Included, CosignError> {
        let mut past = None;
        for _ in 0..ATTEMPTS {
            let current =
                self.tiles(0).checkpoint().await.map_err(|e| {
                    CosignError::Failed(format!("reading the log's checkpoint: {e}"))
                })?;
            let size = parse(&current).map_err(CosignError::Failed)?.tree_size();
            if let Some(past) = past.filter(|past| size < *past) {
                return Err(CosignError::Failed(format!(
                    "a witness cosigned a tree of {past} entries, the log's current one has \
                     {size}: the witnesses saw another log under this log's key"
                )));
            }
            let note = match self.cosigned_by_quorum(&current) {
                Some(_) => current,
                None => match self.cosign(&current).await.map_err(CosignError::Failed)? {
                    Cosigning::Quorum { note, .. } => note,
                    Cosigning::Short { detail, .. } => {
                        return Err(CosignError::Short { size, detail });
                    }
                    Cosigning::Ahead(moved) => {
                        past = Some(moved);
                        continue;
                    }
                },
            };
            let hashes = self.prove(&note, size, leaf, index).await?;
            return Ok(Included {
                note,
                tree_size: size,
                hashes,
            });
        }
        Err(CosignError::Failed(format!(
            "the witnesses moved past the log's current checkpoint {ATTEMPTS} times while it \
             was being cosigned"
        )))
    }

    /// The witnesses whose valid cosignatures `checkpoint` carries (a log that does its own
    /// witnessing serves them), when they are a quorum.
    pub fn cosigned_by_quorum(&self, checkpoint: &str) -> Option<Vec<String>> {
        let parsed = Checkpoint::from_text(checkpoint).ok()?;
        let cosigned = cosigners(&parsed, &self.keys()).ok()?;
        (cosigned.len() >= self.quorum).then(|| cosigned.into_iter().collect())
    }

    /// How many witnesses there are to ask.
    pub fn witness_count(&self) -> usize {
        self.witnesses.len()
    }

    fn keys(&self) -> Vec<WitnessKey> {
        self.witnesses.iter().map(|w| w.key.clone()).collect()
    }

    /// `index`'s inclusion proof in the tree of `size` whose cosigned note is `note`, read from
    /// the tiles and checked against the note's root.
    async fn prove(
        &self,
        note: &str,
        size: u64,
        leaf: &[u8],
        index: u64,
    ) -> Result<Vec<Hash>, CosignError> {
        if index >= size {
            return Err(CosignError::NotIncluded(format!(
                "entry {index} is not in the log's current checkpoint (size {size}): the log \
                 it was recorded in is not the one the witnesses cosign"
            )));
        }
        let hashes = self.tiles(size).inclusion_proof(index).await.map_err(|e| {
            CosignError::Failed(format!("reading entry {index}'s inclusion proof: {e}"))
        })?;
        let root = *parse(note)
            .map_err(CosignError::Failed)?
            .root_hash()
            .as_bytes();
        if !verify_inclusion(&leaf_hash(leaf), index, size, &hashes, &root) {
            return Err(CosignError::NotIncluded(format!(
                "entry {index} is not in the log's current checkpoint (size {size}) that the \
                 witnesses cosigned: the log it was recorded in is not the one they witness"
            )));
        }
        Ok(hashes)
    }

    /// The log's tiles for a tree of `size`, read with the witnesses' client.
    pub fn tiles(&self, size: u64) -> TileReader {
        TileReader::with_client(self.http.clone(), &self.tiles_url, size)
    }

    /// One witness's cosignature lines for `checkpoint`.
    async fn ask(
        &self,
        witness: &Witness,
        checkpoint: &str,
        parsed: &Checkpoint,
    ) -> Result<String, Refusal> {
        let size = parsed.tree_size();
        let url = format!("{}/add-checkpoint", witness.url.trim_end_matches('/'));
        // Most witnesses are at the size last seen; the first answer says where they are.
        let mut old = 0;
        for _ in 0..ATTEMPTS {
            let proof = self
                .consistency_proof(old, size)
                .await
                .map_err(Refusal::Failed)?;
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
                .map_err(|e| Refusal::Failed(tcdist_oci::registry::error_chain(&e)))?;
            let status = response.status();
            let text = read_capped(response).await.map_err(Refusal::Failed)?;
            match status.as_u16() {
                200 => return check_answer(witness, checkpoint, &text),
                409 => {
                    let known: u64 = text.trim().parse().map_err(|_| {
                        Refusal::Failed(format!(
                            "answered 409 without a tree size ({:?})",
                            tcdist_core::text::sanitize(text.trim(), 200)
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
                        Refusal::Failed(answer)
                    });
                }
            }
        }
        Err(Refusal::Failed(format!(
            "its tree size kept changing over {ATTEMPTS} requests"
        )))
    }

    async fn consistency_proof(&self, old: u64, size: u64) -> Result<Vec<Hash>, String> {
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

/// The witness's answer, checked: cosignature lines that verify for this witness's key.
fn check_answer(witness: &Witness, checkpoint: &str, answer: &str) -> Result<String, Refusal> {
    let note = format!("{checkpoint}{answer}");
    let signed = Checkpoint::from_text(&note)
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

fn parse(checkpoint: &str) -> Result<Checkpoint, String> {
    Checkpoint::from_text(checkpoint)
        .map_err(|e| format!("the log's checkpoint does not parse: {e}"))
}

async fn read_capped(mut response: reqwest::Response) -> Result<String, String> {
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
