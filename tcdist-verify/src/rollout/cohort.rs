//! Which hosts are in a rollout's candidate arm, decided on each host from the plan's salt and
//! its own host ID: a host is in iff `SHA-256(salt ‖ host_id)`, read as a big-endian integer
//! from its first 8 bytes, mod 10000 is below the stage's share in basis points. Deterministic
//! (the same host is in or out on every run), nested (a host in at 5% is in at 25%: its bucket
//! is below both), and independent between rollouts (each plan has a new salt).

use sha2::{Digest as _, Sha256};

use tcdist_oci::attachments::rollout::{Share, WHOLE_CHANNEL};

/// The host's bucket for this salt, from 0 to 9999.
pub fn bucket(salt: &[u8], host_id: &str) -> u32 {
    let hash = Sha256::new()
        .chain_update(salt)
        .chain_update(host_id.as_bytes())
        .finalize();
    let head = u64::from_be_bytes(hash[..8].try_into().expect("a SHA-256 has 8 bytes"));
    u32::try_from(head % u64::from(WHOLE_CHANNEL)).expect("below 10000")
}

pub fn in_candidate_arm(salt: &[u8], host_id: &str, share: Share) -> bool {
    bucket(salt, host_id) < share.basis_points()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn share(text: &str) -> Share {
        text.parse().unwrap()
    }

    fn hosts(n: usize) -> impl Iterator<Item = String> {
        (0..n).map(|i| format!("spiffe://tcdist.test/host/build-{i:05}"))
    }

    #[test]
    fn cohort_is_deterministic_for_a_salt_and_host() {
        let salt = [7u8; 32];
        assert_eq!(bucket(&salt, "h1"), bucket(&salt, "h1"));
        // A fixed vector (computed independently: Python hashlib), so the rule cannot change
        // without this test saying so.
        assert_eq!(bucket(&[0u8; 32], "spiffe://tcdist.test/host/a"), 6044);
    }

    #[test]
    fn cohort_is_nested_as_the_share_grows() {
        let salt = [1u8; 32];
        for host in hosts(2000) {
            if in_candidate_arm(&salt, &host, share("5%")) {
                assert!(in_candidate_arm(&salt, &host, share("25%")), "{host}");
            }
        }
    }

    #[test]
    fn cohort_share_is_within_binomial_bounds() {
        // 20,000 hosts at 5%: the expected count is 1000 with a standard deviation of about
        // 30.8; 5 standard deviations either side fail about once in 1.7 million runs.
        let salt = [9u8; 32];
        let n = 20_000;
        let inside = hosts(n)
            .filter(|host| in_candidate_arm(&salt, host, share("5%")))
            .count();
        assert!(
            (846..=1154).contains(&inside),
            "{inside} of {n} hosts at 5%"
        );
    }

    #[test]
    fn cohorts_of_two_salts_are_independent() {
        // At 50% each, a host is in both arms with probability 1/4 if the salts are
        // independent: 10,000 hosts give 2500 ± 5σ (σ ≈ 43.3).
        let (a, b) = ([2u8; 32], [3u8; 32]);
        let both = hosts(10_000)
            .filter(|host| {
                in_candidate_arm(&a, host, share("50%")) && in_candidate_arm(&b, host, share("50%"))
            })
            .count();
        assert!((2283..=2717).contains(&both), "{both} of 10000 in both");
    }

    #[test]
    fn whole_channel_takes_every_host_and_a_hundredth_few() {
        let salt = [4u8; 32];
        assert!(hosts(500).all(|h| in_candidate_arm(&salt, &h, share("100%"))));
        assert!(
            hosts(500)
                .filter(|h| in_candidate_arm(&salt, h, share("0.01%")))
                .count()
                < 5
        );
    }
}
