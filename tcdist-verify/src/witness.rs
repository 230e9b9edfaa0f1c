//! Witness cosignatures on checkpoints (C2SP tlog-cosignature, `cosignature/v1` with Ed25519):
//! a witness signs a checkpoint only after checking that it extends every checkpoint of that
//! log it signed before, so a quorum of independent witnesses on a checkpoint means the log
//! showed that tree to all of them, not a fork to one verifier. Keys are C2SP signed-note
//! verifier keys (`NAME+HASH+BASE64(0x04 || key)`). Unknown keys are ignored; a known key
//! whose cosignature does not verify refuses the checkpoint; a key counts once.

pub mod client;

use std::collections::BTreeSet;

use base64::Engine as _;
use sha2::{Digest as _, Sha256};
use sigstore_types::Checkpoint;

/// The signature type byte of `cosignature/v1`.
const COSIGNATURE_V1: u8 = 0x04;

/// One witness the policy trusts.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WitnessKey {
    pub name: String,
    key_hint: [u8; 4],
    public_key: [u8; 32],
}

impl WitnessKey {
    /// Parses a verifier key; its hash must be the one its name and key give.
    pub fn parse(vkey: &str) -> Result<Self, String> {
        // Base64 has '+' too: the key is everything after the second.
        let mut parts = vkey.splitn(3, '+');
        let (Some(name), Some(hint), Some(key)) = (parts.next(), parts.next(), parts.next()) else {
            return Err(format!("{vkey:?} is not NAME+HASH+KEY"));
        };
        if name.is_empty() || name.chars().any(char::is_whitespace) {
            return Err(format!("{name:?} is not a witness name"));
        }
        let key = base64::engine::general_purpose::STANDARD
            .decode(key)
            .map_err(|_| format!("the key of witness {name} is not base64"))?;
        let [COSIGNATURE_V1, raw @ ..] = key.as_slice() else {
            return Err(format!(
                "the key of witness {name} is not a cosignature/v1 key (type 0x04)"
            ));
        };
        let public_key: [u8; 32] = raw
            .try_into()
            .map_err(|_| format!("the key of witness {name} is not 32 bytes of Ed25519"))?;
        let expected = key_hint(name, &key);
        if hex::decode(hint).ok().as_deref() != Some(&expected[..]) {
            return Err(format!(
                "the key hash of witness {name} is {hint}, its name and key give {}",
                hex::encode(expected)
            ));
        }
        Ok(WitnessKey {
            name: name.to_owned(),
            key_hint: expected,
            public_key,
        })
    }
}

fn key_hint(name: &str, typed_key: &[u8]) -> [u8; 4] {
    let mut hash = Sha256::new();
    hash.update(name.as_bytes());
    hash.update(b"\n");
    hash.update(typed_key);
    hash.finalize()[..4].try_into().expect("4 bytes")
}

/// The witnesses that validly cosigned `checkpoint`, by name, each once. `Err` names a known
/// witness whose cosignature does not verify.
pub fn cosigners(
    checkpoint: &Checkpoint,
    witnesses: &[WitnessKey],
) -> Result<BTreeSet<String>, String> {
    let mut cosigned = BTreeSet::new();
    for signature in checkpoint.signatures() {
        let Some(witness) = witnesses
            .iter()
            .find(|w| w.name == signature.name && w.key_hint == *signature.key_id.as_bytes())
        else {
            continue;
        };
        let bytes = signature.signature.as_bytes();
        let valid = bytes.len() == 8 + 64 && {
            let time = u64::from_be_bytes(bytes[..8].try_into().expect("8 bytes"));
            let mut message = format!("cosignature/v1\ntime {time}\n").into_bytes();
            message.extend_from_slice(checkpoint.signed_data());
            ring::signature::UnparsedPublicKey::new(&ring::signature::ED25519, witness.public_key)
                .verify(&message, &bytes[8..])
                .is_ok()
        };
        if !valid {
            return Err(format!(
                "the cosignature of witness {} does not verify",
                witness.name
            ));
        }
        cosigned.insert(witness.name.clone());
    }
    Ok(cosigned)
}

/// The signed note `note` with only the signature lines named `origin` (the log's own): what
/// a Sigstore bundle may carry, since Sigstore clients refuse a checkpoint with a line of a key
/// they do not know, and a log that does its own witnessing answers with its witnesses' lines.
pub fn log_signatures_only(note: &str, origin: &str) -> String {
    let Some((body, signatures)) = note.split_once("\n\n") else {
        return note.to_owned();
    };
    let own = signatures
        .lines()
        .filter(|line| {
            line.strip_prefix("— ")
                .and_then(|rest| rest.split_once(' '))
                .is_some_and(|(name, _)| name == origin)
        })
        .map(|line| format!("{line}\n"))
        .collect::<String>();
    format!("{body}\n\n{own}")
}

/// `Ok` when at least `quorum` of `witnesses` validly cosigned `checkpoint`.
pub fn check_quorum(
    checkpoint: &Checkpoint,
    witnesses: &[WitnessKey],
    quorum: usize,
) -> Result<BTreeSet<String>, String> {
    let cosigned = cosigners(checkpoint, witnesses)?;
    if cosigned.len() < quorum {
        return Err(format!(
            "{} of the required {quorum} witnesses cosigned the checkpoint of size {}{}",
            cosigned.len(),
            checkpoint.tree_size(),
            if cosigned.is_empty() {
                String::new()
            } else {
                format!(
                    " ({})",
                    cosigned.iter().cloned().collect::<Vec<_>>().join(", ")
                )
            }
        ));
    }
    Ok(cosigned)
}

#[cfg(test)]
mod tests;
