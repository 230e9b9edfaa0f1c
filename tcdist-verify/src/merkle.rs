//! RFC 6962 Merkle tree hashing, and the compact range: the few subtree roots that sum up a
//! tree's first `n` leaves, so a log can be followed leaf by leaf and its root recomputed at
//! any size without keeping the leaves.

use sha2::{Digest as _, Sha256};

pub type Hash = [u8; 32];

/// RFC 6962's hash of a leaf: SHA-256 over 0x00 and the entry.
pub fn leaf_hash(entry: &[u8]) -> Hash {
    let mut hash = Sha256::new();
    hash.update([0u8]);
    hash.update(entry);
    hash.finalize().into()
}

/// RFC 6962's hash of an interior node.
pub fn hash_children(left: &Hash, right: &Hash) -> Hash {
    let mut hash = Sha256::new();
    hash.update([1u8]);
    hash.update(left);
    hash.update(right);
    hash.finalize().into()
}

/// The largest power of two strictly below `n`, for n >= 2 (callers guarantee it: an empty
/// tree and a one-leaf tree are never split).
pub fn largest_power_of_two_below(n: u64) -> u64 {
    debug_assert!(n > 1);
    1 << (63 - (n - 1).leading_zeros())
}

/// Whether `proof` (RFC 6962, innermost sibling first) leads from the leaf `leaf` at `index`
/// to `root` in a tree of `size` leaves.
pub fn verify_inclusion(leaf: &Hash, index: u64, size: u64, proof: &[Hash], root: &Hash) -> bool {
    let proof: Vec<_> = proof
        .iter()
        .map(|h| sigstore_types::Sha256Hash::new(*h))
        .collect();
    sigstore_merkle::verify_inclusion_proof(
        &sigstore_types::Sha256Hash::new(*leaf),
        index,
        size,
        &proof,
        &sigstore_types::Sha256Hash::new(*root),
    )
    .is_ok()
}

/// The roots of the perfect subtrees that make up the first `size` leaves, largest (leftmost)
/// first: one per bit set in `size`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CompactRange {
    size: u64,
    roots: Vec<Hash>,
}

impl CompactRange {
    /// A range known to be `roots` for `size` leaves; `None` when the count does not fit.
    pub fn from_parts(size: u64, roots: Vec<Hash>) -> Option<Self> {
        (roots.len() == size.count_ones() as usize).then_some(CompactRange { size, roots })
    }

    pub fn size(&self) -> u64 {
        self.size
    }

    pub fn roots(&self) -> &[Hash] {
        &self.roots
    }

    /// Adds the next leaf (by its leaf hash).
    pub fn push(&mut self, leaf: Hash) {
        let mut node = leaf;
        // Each trailing one bit of the old size is a subtree of the new leaf's height to merge.
        let mut merges = self.size.trailing_ones();
        while merges > 0 {
            let left = self.roots.pop().expect("a root per bit set");
            node = hash_children(&left, &node);
            merges -= 1;
        }
        self.roots.push(node);
        self.size += 1;
    }

    /// The tree's root hash (RFC 6962 MTH); the empty tree's is SHA-256 of nothing.
    pub fn root(&self) -> Hash {
        let mut roots = self.roots.iter().rev();
        match roots.next() {
            None => Sha256::digest([]).into(),
            Some(last) => roots.fold(*last, |right, left| hash_children(left, &right)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// MTH straight from RFC 6962's definition.
    fn mth(leaves: &[Hash]) -> Hash {
        match leaves.len() {
            0 => Sha256::digest([]).into(),
            1 => leaves[0],
            n => {
                let k = largest_power_of_two_below(n as u64) as usize;
                hash_children(&mth(&leaves[..k]), &mth(&leaves[k..]))
            }
        }
    }

    #[test]
    fn compact_range_root_is_the_tree_hash_at_every_size() {
        let leaves: Vec<Hash> = (0..70u32).map(|i| leaf_hash(&i.to_be_bytes())).collect();
        let mut range = CompactRange::default();
        assert_eq!(range.root(), mth(&[]));
        for (n, leaf) in leaves.iter().enumerate() {
            range.push(*leaf);
            assert_eq!(range.root(), mth(&leaves[..=n]), "size {}", n + 1);
        }
        let again = CompactRange::from_parts(range.size(), range.roots().to_vec()).unwrap();
        assert_eq!(again, range);
        assert!(CompactRange::from_parts(3, vec![[0; 32]]).is_none());
    }

    #[test]
    fn largest_power_of_two_below_is_strict() {
        assert_eq!(largest_power_of_two_below(2), 1);
        assert_eq!(largest_power_of_two_below(5), 4);
        assert_eq!(largest_power_of_two_below(8), 4);
        assert_eq!(largest_power_of_two_below(9), 8);
    }
}
