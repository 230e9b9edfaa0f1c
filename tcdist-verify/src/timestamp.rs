//! Proven signing time: an RFC 3161 timestamp over the signature bytes, signed by one of the
//! timestamp authorities the policy trusts for the repository. A time the artifact merely
//! claims (certificate validity, an unsigned field) proves nothing.

use jiff::Timestamp;
use sigstore_types::{SignatureBytes, TimestampToken, TsaAuthority};

/// A signing time and the authority that vouches for it.
#[derive(Clone, Debug)]
pub struct ProvenTime {
    pub time: Timestamp,
    pub authority: String,
}

/// The earliest time any trusted authority proves for `signature`. Errors are reasons for
/// [`tcdist_core::rules::Rule::SigningTime`], one per token and authority tried.
pub fn prove(
    tokens: &[Vec<u8>],
    signature: &[u8],
    authorities: &[(&str, &TsaAuthority)],
) -> Result<ProvenTime, String> {
    if tokens.is_empty() {
        return Err("no RFC 3161 timestamp comes with the signature".into());
    }
    if authorities.is_empty() {
        return Err("the policy trusts no timestamp authority for this repository".into());
    }
    let signature = SignatureBytes::from_bytes(signature);
    let mut proven: Option<ProvenTime> = None;
    let mut reasons = Vec::new();
    for (n, token) in tokens.iter().enumerate() {
        let token = TimestampToken::from_bytes(token);
        for (name, authority) in authorities {
            match sigstore_tsa::verify_timestamp_for_authority(&token, &signature, authority) {
                Ok(time) if proven.as_ref().is_none_or(|p| time < p.time) => {
                    proven = Some(ProvenTime {
                        time,
                        authority: (*name).to_owned(),
                    });
                }
                Ok(_) => {}
                Err(e) => reasons.push(format!("timestamp {n} with TSA {name:?}: {e}")),
            }
        }
    }
    proven.ok_or_else(|| {
        format!(
            "no timestamp is valid from a trusted TSA: {}",
            reasons.join("; ")
        )
    })
}

#[cfg(test)]
mod tests;
