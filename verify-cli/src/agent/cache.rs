//! Verifications the agent reuses: keyed by what decides the outcome (the reference as asked
//! for, the index digest its tag resolved to, the platform, the policy's and the trusted
//! root's digests), kept for the configured time, which the config caps at an hour so a yank
//! or a new trust decision reaches the agent soon.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use tcdist_core::digest::Digest;
use tcdist_oci::resolve::ResolvedRelease;
use tcdist_verify::Verified;

/// Entries kept at most; the oldest go first. A build host uses a handful of releases.
const MAX_ENTRIES: usize = 256;

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct CacheKey {
    pub reference: String,
    pub index: Digest,
    pub platform: String,
    pub policy: Digest,
    pub trusted_root: Option<Digest>,
}

pub struct VerificationCache {
    ttl: Duration,
    entries: Mutex<HashMap<CacheKey, (Instant, Verified<ResolvedRelease>)>>,
}

impl VerificationCache {
    pub fn new(ttl: Duration) -> Self {
        Self {
            ttl,
            entries: Mutex::new(HashMap::new()),
        }
    }

    pub fn ttl(&self) -> Duration {
        self.ttl
    }

    pub fn enabled(&self) -> bool {
        !self.ttl.is_zero()
    }

    /// The verification stored under `key`, if it is younger than the cache's time.
    pub fn get(&self, key: &CacheKey) -> Option<Verified<ResolvedRelease>> {
        let mut entries = self.entries.lock().expect("cache lock");
        match entries.get(key) {
            Some((at, verified)) if at.elapsed() < self.ttl => Some(verified.clone()),
            Some(_) => {
                entries.remove(key);
                None
            }
            None => None,
        }
    }

    pub fn insert(&self, key: CacheKey, verified: Verified<ResolvedRelease>) {
        let mut entries = self.entries.lock().expect("cache lock");
        entries.retain(|_, (at, _)| at.elapsed() < self.ttl);
        if entries.len() >= MAX_ENTRIES
            && let Some(oldest) = entries
                .iter()
                .min_by_key(|(_, (at, _))| *at)
                .map(|(key, _)| key.clone())
        {
            entries.remove(&oldest);
        }
        entries.insert(key, (Instant::now(), verified));
    }
}
