//! Verification: the rules a release must meet before anything of it is extracted.
//! `pipeline` runs the stages in order and is the only place a [`Verified`] value is made.

pub mod pipeline;
pub mod structure;

pub use pipeline::{VerificationReport, Verified, Verifier};
