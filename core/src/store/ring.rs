//! The consistent-hash ring: where a key lives.
//!
//! Every store node owns `vnodes` tokens on a ring of `u64` positions (token `i` of node `x`
//! sits at `hash64("x#i")`). A key sits at `hash64(key)`; the *partition* of a key is the arc
//! that ends at the first token at or after it (wrapping around), so the ring has one
//! partition per token. Walking clockwise from a partition's token and keeping each node the
//! first time it appears gives the partition's *walk*, every node once: its first `n` nodes
//! are the partition's *home* replicas (Dynamo's preference list), the rest its *fallbacks*,
//! in the order a sloppy quorum borrows them.
//!
//! Virtual nodes spread each node's share over many small arcs, so the keys of a node that
//! leaves are taken over by many others rather than by its one neighbour, and shares stay
//! close to even.
//!
//! **Invariant:** the ring is a pure function of the sorted node names, `vnodes` and `n`:
//! every node and every client that builds it agrees on every key's home replicas.

use std::collections::BTreeSet;

/// Largest number of virtual nodes per node.
pub const VNODES_MAX: usize = 256;
/// Largest number of nodes on a ring (walks are stored as `u16` positions).
pub const RING_NODES_MAX: usize = 1024;

/// A stable 64-bit hash (the first eight bytes of BLAKE3): the same on every platform and in
/// every release, because positions on the ring must never move under a stored key.
pub fn hash64(bytes: &[u8]) -> u64 {
    let digest = blake3::hash(bytes);
    u64::from_le_bytes(digest.as_bytes()[..8].try_into().expect("eight bytes"))
}

/// The ring of one store cluster.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Ring {
    /// Node names, sorted and distinct.
    nodes: Vec<String>,
    /// Tokens in ring order: (position, node index).
    tokens: Vec<(u64, u16)>,
    /// Per partition (same index as its token): every node once, in clockwise order.
    walks: Vec<Vec<u16>>,
    /// Home replicas per partition.
    n: usize,
}

impl Ring {
    /// The ring of `nodes` (any order, no duplicates) with `vnodes` tokens each and `n` home
    /// replicas per key.
    pub fn new(nodes: &[String], vnodes: usize, n: usize) -> Ring {
        let mut sorted: Vec<String> = nodes.to_vec();
        sorted.sort();
        sorted.dedup();
        assert_eq!(sorted.len(), nodes.len(), "ring node names must be distinct");
        assert!(
            !sorted.is_empty() && sorted.len() <= RING_NODES_MAX,
            "ring node count out of range"
        );
        assert!((1..=VNODES_MAX).contains(&vnodes), "vnodes out of range");
        assert!((1..=sorted.len()).contains(&n), "n must be between 1 and the node count");
        let mut tokens: Vec<(u64, u16)> = Vec::with_capacity(sorted.len() * vnodes);
        for (index, name) in sorted.iter().enumerate() {
            for vnode in 0..vnodes {
                tokens.push((hash64(format!("{name}#{vnode}").as_bytes()), index as u16));
            }
        }
        // Ties (never seen in practice) are broken by node, so every builder agrees.
        tokens.sort_unstable();
        let walks = (0..tokens.len())
            .map(|start| {
                let mut seen = vec![false; sorted.len()];
                let mut walk = Vec::with_capacity(sorted.len());
                for step in 0..tokens.len() {
                    let node = tokens[(start + step) % tokens.len()].1;
                    if !seen[node as usize] {
                        seen[node as usize] = true;
                        walk.push(node);
                        if walk.len() == sorted.len() {
                            break;
                        }
                    }
                }
                walk
            })
            .collect();
        let ring = Ring { nodes: sorted, tokens, walks, n };
        debug_assert!(ring.walks.iter().all(|walk| walk.len() == ring.nodes.len()));
        ring
    }

    /// Home replicas per key.
    pub fn n(&self) -> usize {
        self.n
    }

    /// The nodes, sorted.
    pub fn nodes(&self) -> &[String] {
        &self.nodes
    }

    /// How many partitions (tokens) the ring has.
    pub fn partitions(&self) -> u32 {
        self.tokens.len() as u32
    }

    /// The partition holding `key`.
    pub fn partition_of(&self, key: &str) -> u32 {
        self.partition_of_hash(hash64(key.as_bytes()))
    }

    /// The partition holding ring position `position`: the first token at or after it,
    /// wrapping past the last token to the first.
    pub fn partition_of_hash(&self, position: u64) -> u32 {
        let index = self.tokens.partition_point(|&(token, _)| token < position);
        (index % self.tokens.len()) as u32
    }

    /// Every node once, home replicas first, for `partition`.
    pub fn walk(&self, partition: u32) -> impl Iterator<Item = &str> + '_ {
        self.walks[partition as usize].iter().map(|&node| self.nodes[node as usize].as_str())
    }

    /// The home replicas of `key` (its preference list), in ring order.
    pub fn home(&self, key: &str) -> Vec<String> {
        self.walk(self.partition_of(key)).take(self.n).map(str::to_string).collect()
    }

    /// The nodes after the home replicas of `key`, in the order a sloppy quorum borrows them.
    pub fn fallbacks(&self, key: &str) -> Vec<String> {
        self.walk(self.partition_of(key)).skip(self.n).map(str::to_string).collect()
    }

    /// Whether `node` is a home replica of `partition`.
    pub fn is_home_of_partition(&self, node: &str, partition: u32) -> bool {
        self.walk(partition).take(self.n).any(|home| home == node)
    }

    /// Whether `node` is a home replica of `key`.
    pub fn is_home(&self, node: &str, key: &str) -> bool {
        self.is_home_of_partition(node, self.partition_of(key))
    }

    /// The partitions both `a` and `b` are home replicas of: the ranges they compare in
    /// anti-entropy.
    pub fn shared_partitions(&self, a: &str, b: &str) -> Vec<u32> {
        (0..self.partitions())
            .filter(|&p| self.is_home_of_partition(a, p) && self.is_home_of_partition(b, p))
            .collect()
    }

    /// The nodes that share at least one partition with `node`, sorted.
    pub fn replica_peers(&self, node: &str) -> Vec<String> {
        let mut peers = BTreeSet::new();
        for partition in 0..self.partitions() {
            let homes: Vec<&str> = self.walk(partition).take(self.n).collect();
            if homes.contains(&node) {
                peers.extend(homes.into_iter().filter(|home| *home != node).map(str::to_string));
            }
        }
        peers.into_iter().collect()
    }

    /// The distinct home sets of the ring: a read over a key range has heard from enough
    /// replicas when, in every one of them, enough nodes answered.
    pub fn home_sets(&self) -> BTreeSet<Vec<String>> {
        (0..self.partitions())
            .map(|p| {
                let mut homes: Vec<String> =
                    self.walk(p).take(self.n).map(str::to_string).collect();
                homes.sort();
                homes
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn names(count: usize) -> Vec<String> {
        (1..=count).map(|i| format!("store-{i}")).collect()
    }

    #[test]
    fn hash64_is_pinned() {
        // Keys on disk stay where they are only if the hash never changes.
        assert_eq!(hash64(b"usage/acct-1/000001"), 11_312_382_568_000_213_741);
    }

    #[test]
    fn a_key_has_n_distinct_homes_and_the_others_as_fallbacks() {
        let ring = Ring::new(&names(5), 16, 3);
        for account in 0..50 {
            let key = format!("usage/acct-{account}/000003");
            let home = ring.home(&key);
            let fallbacks = ring.fallbacks(&key);
            assert_eq!(home.len(), 3);
            assert_eq!(fallbacks.len(), 2);
            let all: BTreeSet<&String> = home.iter().chain(&fallbacks).collect();
            assert_eq!(all.len(), 5, "{key}: every node once");
            assert!(home.iter().all(|node| ring.is_home(node, &key)));
            assert!(fallbacks.iter().all(|node| !ring.is_home(node, &key)));
        }
    }

    #[test]
    fn shares_are_roughly_even_with_virtual_nodes() {
        let ring = Ring::new(&names(5), 64, 1);
        let mut owned = std::collections::BTreeMap::new();
        for key in 0..5000 {
            *owned.entry(ring.home(&format!("k{key}"))[0].clone()).or_insert(0u32) += 1;
        }
        for (node, count) in owned {
            assert!((600..1400).contains(&count), "{node} owns {count} of 5000 keys");
        }
    }

    #[test]
    fn every_node_shares_partitions_with_its_replica_peers() {
        let ring = Ring::new(&names(5), 8, 3);
        for node in ring.nodes() {
            for peer in ring.replica_peers(node) {
                assert!(!ring.shared_partitions(node, &peer).is_empty());
            }
        }
        // With n equal to the node count every node holds every key.
        let full = Ring::new(&names(3), 4, 3);
        assert_eq!(full.shared_partitions("store-1", "store-3").len(), 12);
        assert_eq!(full.home_sets().len(), 1);
    }

    proptest! {
        /// The ring depends only on the set of names: any order builds the same ring, and a
        /// key's partition contains its position.
        #[test]
        fn the_ring_ignores_name_order(
            count in 1usize..8,
            vnodes in 1usize..12,
            seed in any::<u64>(),
            keys in proptest::collection::vec("[a-z/0-9]{0,12}", 1..20),
        ) {
            let mut shuffled = names(count);
            shuffled.rotate_left((seed % count as u64) as usize);
            shuffled.reverse();
            let n = 1 + (seed as usize % count);
            let ring = Ring::new(&names(count), vnodes, n);
            let again = Ring::new(&shuffled, vnodes, n);
            prop_assert_eq!(&ring, &again);
            for key in &keys {
                let partition = ring.partition_of(key) as usize;
                let position = hash64(key.as_bytes());
                let token = ring.tokens[partition].0;
                let previous = ring.tokens[(partition + ring.tokens.len() - 1) % ring.tokens.len()].0;
                if partition == 0 {
                    prop_assert!(position <= token || position > previous);
                } else {
                    prop_assert!(previous < position && position <= token);
                }
                prop_assert_eq!(ring.home(key).len(), n);
            }
        }
    }
}
