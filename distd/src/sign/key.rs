//! The SVID's private key, held only as long as one signing takes. The PKCS#8 bytes are
//! zeroed when dropped and never printed (`Debug` shows the algorithm only).

use anyhow::{Result, anyhow};
use ring::rand::SystemRandom;
use ring::signature::{self, EcdsaKeyPair, KeyPair as _, RsaKeyPair};
use zeroize::Zeroizing;

pub enum SigningKey {
    Ecdsa(EcdsaKeyPair, &'static str),
    Rsa(RsaKeyPair),
}

impl std::fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SigningKey({})", self.algorithm())
    }
}

impl SigningKey {
    /// Parses a PKCS#8 private key (what the Workload API hands out, and `openssl pkcs8`
    /// writes): ECDSA P-256 or P-384, or RSA.
    pub fn from_pkcs8(pkcs8: Zeroizing<Vec<u8>>) -> Result<Self> {
        let rng = SystemRandom::new();
        for (algorithm, name) in [
            (
                &signature::ECDSA_P256_SHA256_ASN1_SIGNING,
                "ECDSA P-256 SHA-256",
            ),
            (
                &signature::ECDSA_P384_SHA384_ASN1_SIGNING,
                "ECDSA P-384 SHA-384",
            ),
        ] {
            if let Ok(pair) = EcdsaKeyPair::from_pkcs8(algorithm, &pkcs8, &rng) {
                return Ok(SigningKey::Ecdsa(pair, name));
            }
        }
        RsaKeyPair::from_pkcs8(&pkcs8)
            .map(SigningKey::Rsa)
            .map_err(|_| {
                anyhow!(
                    "the SVID private key is not a PKCS#8 ECDSA P-256/P-384 or RSA key \
                     (convert a SEC1 key with `openssl pkcs8 -topk8 -nocrypt`)"
                )
            })
    }

    pub fn algorithm(&self) -> &'static str {
        match self {
            SigningKey::Ecdsa(_, name) => name,
            SigningKey::Rsa(_) => "RSA PKCS#1 v1.5 SHA-256",
        }
    }

    /// The key's name in Sigstore's `PublicKeyDetails` (what a transparency log checks).
    pub fn key_details(&self) -> &'static str {
        match self {
            SigningKey::Ecdsa(_, "ECDSA P-384 SHA-384") => "PKIX_ECDSA_P384_SHA_384",
            SigningKey::Ecdsa(..) => "PKIX_ECDSA_P256_SHA_256",
            SigningKey::Rsa(pair) if pair.public().modulus_len() >= 512 => {
                "PKIX_RSA_PKCS1V15_4096_SHA256"
            }
            SigningKey::Rsa(pair) if pair.public().modulus_len() >= 384 => {
                "PKIX_RSA_PKCS1V15_3072_SHA256"
            }
            SigningKey::Rsa(_) => "PKIX_RSA_PKCS1V15_2048_SHA256",
        }
    }

    /// The public key as it appears in a certificate's subjectPublicKey.
    pub fn public_key(&self) -> &[u8] {
        match self {
            SigningKey::Ecdsa(pair, _) => pair.public_key().as_ref(),
            SigningKey::Rsa(pair) => pair.public_key().as_ref(),
        }
    }

    pub fn sign(&self, message: &[u8]) -> Result<Vec<u8>> {
        let rng = SystemRandom::new();
        match self {
            SigningKey::Ecdsa(pair, _) => pair
                .sign(&rng, message)
                .map(|s| s.as_ref().to_vec())
                .map_err(|_| anyhow!("ECDSA signing failed")),
            SigningKey::Rsa(pair) => {
                let mut signature = vec![0; pair.public().modulus_len()];
                pair.sign(&signature::RSA_PKCS1_SHA256, &rng, message, &mut signature)
                    .map_err(|_| anyhow!("RSA signing failed"))?;
                Ok(signature)
            }
        }
    }
}
