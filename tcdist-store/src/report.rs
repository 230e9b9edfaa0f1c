//! Progress callbacks. The library never prints; binaries implement [`Reporter`].

use tcdist_core::digest::Digest;

pub trait Reporter: Send + Sync {
    /// A step of the pull began (resolve, verify, fetch, install).
    fn step(&self, _message: &str) {}
    /// A layer download started; returns an id for the calls below.
    fn layer_started(&self, _digest: &Digest, _size: u64) -> usize {
        0
    }
    fn layer_progress(&self, _id: usize, _bytes: u64) {}
    fn layer_finished(&self, _id: usize) {}
}

/// Reports nothing.
pub struct Silent;

impl Reporter for Silent {}
