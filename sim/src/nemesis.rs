//! The nemesis's bookkeeping: which faults are active, and what the network must look like
//! because of them.
//!
//! Faults overlap (two partitions, a partition during a link delay), and madsim's clogs are
//! plain switches: unclogging a link for one fault would silently heal another. So the network
//! is never edited fault by fault. Each time a fault starts or ends, [`network_state`]
//! recomputes the whole network from every active fault, and the world applies the difference.
//! This module is pure (no madsim), so the recomputation is unit-tested directly.
//!
//! **Invariant:** with no active fault, the network state is healthy (nothing blocked, no
//! rules, no loss, default latency).

use std::collections::{BTreeMap, BTreeSet};

use pessimist_core::seams::net::LinkRule;

use crate::fault::Fault;

/// The network as the active faults make it.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct NetworkState {
    /// Directed links (from, to) on which nothing passes.
    pub blocked: BTreeSet<(String, String)>,
    /// Rules for individual directed links.
    pub link_rules: BTreeMap<(String, String), LinkRule>,
    /// A rule for every link.
    pub every_link: Option<LinkRule>,
    /// madsim's global packet loss rate.
    pub packet_loss_rate: f64,
    /// madsim's global latency range, when a spike overrides the default.
    pub latency_ms: Option<(u64, u64)>,
}

fn block_between(blocked: &mut BTreeSet<(String, String)>, a: &[String], b: &[String]) {
    for x in a {
        for y in b {
            if x != y {
                blocked.insert((x.clone(), y.clone()));
                blocked.insert((y.clone(), x.clone()));
            }
        }
    }
}

/// The network state made by `active` faults over `all_nodes` (servers and clients).
pub fn network_state<'a>(
    active: impl IntoIterator<Item = &'a Fault>,
    all_nodes: &[String],
) -> NetworkState {
    let mut state = NetworkState::default();
    for fault in active {
        match fault {
            Fault::Isolate { node } => {
                let others: Vec<String> =
                    all_nodes.iter().filter(|n| *n != node).cloned().collect();
                block_between(&mut state.blocked, std::slice::from_ref(node), &others);
            }
            Fault::Partition { groups } => {
                let named: BTreeSet<&String> = groups.iter().flatten().collect();
                let rest: Vec<String> =
                    all_nodes.iter().filter(|n| !named.contains(n)).cloned().collect();
                let mut all_groups: Vec<Vec<String>> = groups.clone();
                if !rest.is_empty() {
                    all_groups.push(rest);
                }
                for (i, a) in all_groups.iter().enumerate() {
                    for b in &all_groups[i + 1..] {
                        block_between(&mut state.blocked, a, b);
                    }
                }
            }
            Fault::OneWay { from, to } => {
                state.blocked.insert((from.clone(), to.clone()));
            }
            Fault::Bridge { sides, .. } => block_between(&mut state.blocked, &sides[0], &sides[1]),
            Fault::PacketLoss { rate } => {
                state.packet_loss_rate = state.packet_loss_rate.max(*rate)
            }
            Fault::LatencySpike { min_ms, max_ms } => {
                state.latency_ms = Some(match state.latency_ms {
                    Some((low, high)) => (low.max(*min_ms), high.max(*max_ms)),
                    None => (*min_ms, *max_ms),
                });
            }
            Fault::LinkDelay { from, to, delay_ms, jitter_ms } => {
                let rule =
                    LinkRule { delay_ms: *delay_ms, jitter_ms: *jitter_ms, ..LinkRule::default() };
                let key = (from.clone(), to.clone());
                let merged = state.link_rules.get(&key).map_or(rule, |old| old.merge(rule));
                state.link_rules.insert(key, merged);
            }
            Fault::Duplicate { probability } => {
                let rule = LinkRule { duplicate_probability: *probability, ..LinkRule::default() };
                state.every_link = Some(state.every_link.map_or(rule, |old| old.merge(rule)));
            }
            Fault::Reorder { probability, window_ms } => {
                let rule = LinkRule {
                    reorder_probability: *probability,
                    reorder_window_ms: *window_ms,
                    ..LinkRule::default()
                };
                state.every_link = Some(state.every_link.map_or(rule, |old| old.merge(rule)));
            }
            Fault::FrameLoss { probability } => {
                let rule = LinkRule { drop_probability: *probability, ..LinkRule::default() };
                state.every_link = Some(state.every_link.map_or(rule, |old| old.merge(rule)));
            }
            _ => {}
        }
    }
    state
}

/// Whether a fault acts on the network (and so needs [`network_state`] recomputed).
pub fn is_network_fault(fault: &Fault) -> bool {
    matches!(
        fault,
        Fault::Isolate { .. }
            | Fault::Partition { .. }
            | Fault::OneWay { .. }
            | Fault::Bridge { .. }
            | Fault::PacketLoss { .. }
            | Fault::LatencySpike { .. }
            | Fault::LinkDelay { .. }
            | Fault::Duplicate { .. }
            | Fault::Reorder { .. }
            | Fault::FrameLoss { .. }
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| s.to_string()).collect()
    }

    fn link(a: &str, b: &str) -> (String, String) {
        (a.to_string(), b.to_string())
    }

    #[test]
    fn healthy_without_faults() {
        assert_eq!(network_state([], &names(&["a", "b"])), NetworkState::default());
    }

    #[test]
    fn partition_blocks_between_groups_only() {
        let all = names(&["a", "b", "c", "d", "client"]);
        let split = Fault::Partition { groups: vec![names(&["a", "b"])] };
        let state = network_state([&split], &all);
        assert!(state.blocked.contains(&link("a", "c")) && state.blocked.contains(&link("c", "a")));
        assert!(state.blocked.contains(&link("b", "client")));
        assert!(!state.blocked.contains(&link("a", "b")));
        assert!(!state.blocked.contains(&link("c", "d")));
        assert_eq!(state.blocked.len(), 2 * 2 * 3);
    }

    #[test]
    fn overlapping_faults_compose_and_one_way_is_one_way() {
        let all = names(&["a", "b", "c"]);
        let isolate = Fault::Isolate { node: "a".into() };
        let one_way = Fault::OneWay { from: "b".into(), to: "c".into() };
        let state = network_state([&isolate, &one_way], &all);
        assert!(state.blocked.contains(&link("b", "c")));
        assert!(!state.blocked.contains(&link("c", "b")));
        // Ending the isolation keeps the one-way block.
        let after = network_state([&one_way], &all);
        assert_eq!(after.blocked, [link("b", "c")].into_iter().collect());
    }

    #[test]
    fn bridge_reaches_both_sides() {
        let all = names(&["a", "b", "x", "c", "d"]);
        let bridge =
            Fault::Bridge { bridge: "x".into(), sides: [names(&["a", "b"]), names(&["c", "d"])] };
        let state = network_state([&bridge], &all);
        assert!(state.blocked.contains(&link("a", "c")));
        assert!(!state.blocked.iter().any(|(from, to)| from == "x" || to == "x"));
    }
}
