//! The verification pipeline: stages run in a fixed order on a resolved release, and only when
//! all pass is a [`Verified`] value made. Extraction takes only `Verified` releases.
//!
//! Stages today: (1) digest binding — every document was fetched by the digest that names it
//! (enforced by `source`/`resolve` and recorded here); (2) structure — the parts agree.
//! Layer bytes are checked against their digests while streaming, before the store accepts
//! them. Signature, identity, transparency-log and rollback stages slot in after (2).

use serde::Serialize;

use crate::digest::Digest;
use crate::error::Result;
use crate::platform::Platform;
use crate::resolve::ResolvedRelease;
use crate::store::extract::ExtractBudget;
use crate::verify::structure;

/// A value that passed every verification stage. Its field is private and it is made only by
/// [`Verifier::verify`], so holding one is proof that the checks ran.
#[derive(Debug)]
pub struct Verified<T> {
    value: T,
    report: VerificationReport,
}

impl<T> Verified<T> {
    pub fn get(&self) -> &T {
        &self.value
    }

    pub fn report(&self) -> &VerificationReport {
        &self.report
    }
}

/// What was verified, for `--json` and logs.
#[derive(Clone, Debug, Serialize)]
pub struct VerificationReport {
    pub index_digest: Digest,
    pub manifest_digest: Digest,
    pub platform: Platform,
    /// The stages that passed, in order.
    pub checks: Vec<&'static str>,
}

pub struct Verifier {
    budget: ExtractBudget,
}

impl Verifier {
    pub fn new(budget: ExtractBudget) -> Self {
        Self { budget }
    }

    pub fn budget(&self) -> &ExtractBudget {
        &self.budget
    }

    pub fn verify(&self, release: ResolvedRelease) -> Result<Verified<ResolvedRelease>> {
        let mut checks = vec!["digest-binding"];
        structure::check(&release, &self.budget)?;
        checks.push("structure");
        let report = VerificationReport {
            index_digest: release.index_digest.clone(),
            manifest_digest: release.manifest_descriptor.digest.clone(),
            platform: release.platform.clone(),
            checks,
        };
        Ok(Verified {
            value: release,
            report,
        })
    }
}
