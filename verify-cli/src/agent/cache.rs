//! Verifications the agent reuses: keyed by what decides the outcome (the reference as asked
//! for, the index digest its tag resolved to, the platform, the policy's and the trusted
//! root's digests), kept for the configured time, which the config caps at an hour so a yank
//! or a new trust decision reaches the agent soon. A verification that a channel's rollout
//! decided is kept no longer than the rollout statement is valid: a halt reaches the agent
//! within the cache time, and a lapsed statement never keeps a host in the candidate arm.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use jiff::Timestamp;

use tcdist_core::digest::Digest;
use tcdist_oci::resolve::ResolvedRelease;
use tcdist_verify::Verified;
use tcdist_verify::rollout::Arm;

/// Entries kept at most; the ones closest to expiry go first. A build host uses a handful of
/// releases.
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
    /// Each entry with the instant it expires.
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

    /// The verification stored under `key`, if it has not expired.
    pub fn get(&self, key: &CacheKey) -> Option<Verified<ResolvedRelease>> {
        let mut entries = self.entries.lock().expect("cache lock");
        match entries.get(key) {
            Some((expires, verified)) if Instant::now() < *expires => Some(verified.clone()),
            Some(_) => {
                entries.remove(key);
                None
            }
            None => None,
        }
    }

    pub fn insert(&self, key: CacheKey, verified: Verified<ResolvedRelease>) {
        let rollout = verified
            .report()
            .rollout
            .as_ref()
            .map(|r| (r.arm, r.expires));
        let lifetime = entry_lifetime(self.ttl, rollout, Timestamp::now());
        if lifetime.is_zero() {
            return;
        }
        let now = Instant::now();
        let mut entries = self.entries.lock().expect("cache lock");
        entries.retain(|_, (expires, _)| now < *expires);
        if entries.len() >= MAX_ENTRIES
            && let Some(first) = entries
                .iter()
                .min_by_key(|(_, (expires, _))| *expires)
                .map(|(key, _)| key.clone())
        {
            entries.remove(&first);
        }
        entries.insert(key, (now + lifetime, verified));
    }
}

/// How long a verification may be reused from `now`: the cache's time, and when a channel's
/// rollout gave this host its arm (`rollout`: the arm and the statement's expiry), no longer
/// than the statement is valid. Past its expiry every host is in the current arm, so a
/// candidate arm is never reused then, while the current arm's release stays right.
pub fn entry_lifetime(
    ttl: Duration,
    rollout: Option<(Arm, Timestamp)>,
    now: Timestamp,
) -> Duration {
    match rollout {
        None => ttl,
        Some((_, expires)) if expires > now => {
            let left = Duration::try_from(expires.duration_since(now)).unwrap_or_default();
            ttl.min(left)
        }
        Some((Arm::Candidate, _)) => Duration::ZERO,
        Some((Arm::Current, _)) => ttl,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TTL: Duration = Duration::from_secs(300);

    fn at(seconds: i64) -> Timestamp {
        Timestamp::from_second(1_800_000_000 + seconds).unwrap()
    }

    #[test]
    fn cache_entry_lives_the_cache_time_without_a_rollout() {
        assert_eq!(entry_lifetime(TTL, None, at(0)), TTL);
    }

    #[test]
    fn cache_entry_bounded_by_the_rollout_statement_expiry() {
        for arm in [Arm::Candidate, Arm::Current] {
            assert_eq!(
                entry_lifetime(TTL, Some((arm, at(90))), at(0)),
                Duration::from_secs(90)
            );
            // A statement valid for longer than the cache time leaves the cache time.
            assert_eq!(entry_lifetime(TTL, Some((arm, at(3600))), at(0)), TTL);
        }
    }

    #[test]
    fn cache_entry_of_a_candidate_arm_not_kept_once_the_statement_expired() {
        // Decided just before the expiry, stored just after it.
        assert_eq!(
            entry_lifetime(TTL, Some((Arm::Candidate, at(0))), at(0)),
            Duration::ZERO
        );
        assert_eq!(
            entry_lifetime(TTL, Some((Arm::Candidate, at(-1))), at(0)),
            Duration::ZERO
        );
    }

    #[test]
    fn cache_entry_of_the_current_arm_kept_after_the_statement_expired() {
        // Past the expiry the head alone counts: the current arm's release, until a new
        // statement, which the cache time bounds as it bounds any other change.
        assert_eq!(
            entry_lifetime(TTL, Some((Arm::Current, at(-60))), at(0)),
            TTL
        );
    }

    #[test]
    fn cache_entry_lifetime_of_a_disabled_cache_is_zero() {
        assert_eq!(
            entry_lifetime(Duration::ZERO, Some((Arm::Candidate, at(90))), at(0)),
            Duration::ZERO
        );
        assert_eq!(entry_lifetime(Duration::ZERO, None, at(0)), Duration::ZERO);
    }
}
