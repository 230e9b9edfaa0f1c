//! Verification: the rules a release must meet before anything of it is extracted, and the
//! trust material they are checked against (trusted root, SPIFFE bundles, log and TSA keys).
//! `pipeline` runs the stages in order and is the only place a [`Verified`] value is made.

pub mod discover;
pub mod follow;
pub mod freshness;
pub mod lifecycle;
pub mod merkle;
pub mod pipeline;
pub mod policy;
pub mod rollout;
pub mod signature;
pub mod spiffe_id;
pub mod structure;
pub mod svid;
pub mod tiles;
pub mod timestamp;
pub mod tlog;
pub mod trust;
pub mod watch;
pub mod witness;

#[cfg(test)]
pub(crate) mod test_support;

pub use pipeline::{VerificationReport, Verified, Verifier};
