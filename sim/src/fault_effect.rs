//! What a fault did: its effect, measured by the seams that applied it.
//!
//! A fault is injected at a time, not at a moment the system is doing something, so it may
//! hit nothing: a partition between nodes that were not talking, a duplication rule no frame
//! met, a slow disk nobody wrote to, a crash of a node already down, a clock offset on a node
//! that never read its clock. Such a fault is *vacuous*: the run tested nothing by it. The
//! world reads the seams' counters ([`Reading`]) when a fault starts and when it ends (an
//! instant fault: when the fault phase ends) and [`effect`] says, from the difference, what the
//! fault did and whether it bit. The world records it as a `fault_effect` event of the node
//! `nemesis`; the `faults_bite` check counts them.
//!
//! What each kind's effect counts (all within the fault's window):
//! - partitions, isolations, one-way links, bridges: frames the transports sent on the links
//!   the fault cut (madsim holds them until the link heals, or the connection breaks);
//! - packet loss and latency spikes (madsim's, on every packet): frames sent anywhere;
//! - link delays: frames the rule delayed on its link; duplication, reordering and frame loss
//!   (every link): frames duplicated, held back for reordering, dropped;
//! - crash and pause: whether the node was running when the fault struck, and the bytes its
//!   crash lost (written, not fsynced); a power loss: how many of its nodes were running, and
//!   the bytes lost on all of them; a crash in an fsync: whether the node made one in the
//!   window (and was killed in it), and the bytes then pending;
//! - slow disk, disk stall: operations slowed or stalled; torn writes: crashes that kept a torn
//!   tail; disk corruption: whether a bit was flipped in durable data; I/O errors: writes and
//!   fsyncs failed (and the bytes failed fsyncs dropped); a full disk: writes refused;
//! - clock offset, drift and jump: wall-clock readings that were off true time, and sleeps
//!   drift stretched.
//!
//! Blind spot: the HTTP requests of client processes do not pass the transport, so a cut that
//! severs only clients from API servers counts no frames and reads as vacuous.
//!
//! **Invariant:** the effect is a pure function of the fault and the two readings.

use std::collections::BTreeMap;

use pessimist_core::seams::clock::ClockStats;
use pessimist_core::seams::disk::DiskStats;
use pessimist_core::seams::net::LinkTally;
use serde_json::{json, Value};

use crate::fault::Fault;
use crate::nemesis::network_state;

/// The seams' counters at one moment, as far as one fault's effect needs them.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Reading {
    /// Every link's tally, by (sender, receiver).
    pub links: BTreeMap<(String, String), LinkTally>,
    /// The target node's disk, for disk and crash faults.
    pub disk: Option<DiskStats>,
    /// The target node's clock, for clock faults.
    pub clock: Option<ClockStats>,
}

/// What the world saw as the fault struck.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Struck {
    /// For a crash or a pause: the node was running (not crashed, not paused) before it.
    pub was_running: bool,
    /// For a crash: the bytes written but not fsynced, which the crash loses (unless torn
    /// writes keep a prefix).
    pub pending_bytes: u64,
    /// For a disk corruption: the file and offset flipped, if any durable byte existed.
    pub corrupted: Option<(String, usize)>,
    /// For a power loss: how many of its nodes were running.
    pub nodes_running: usize,
}

/// What a fault did.
#[derive(Clone, Debug, PartialEq)]
pub struct Effect {
    /// Whether it did anything at all; a fault that did not is vacuous.
    pub bit: bool,
    /// The counts behind the answer, for the history.
    pub detail: Value,
}

/// The effect of `fault`, from the readings before and after its window. `all_nodes` is the
/// universe partitions split (servers and clients).
pub fn effect(
    fault: &Fault,
    struck: &Struck,
    before: &Reading,
    after: &Reading,
    all_nodes: &[String],
) -> Effect {
    let link = |from: &str, to: &str| -> LinkTally {
        let key = (from.to_string(), to.to_string());
        let now = after.links.get(&key).copied().unwrap_or_default();
        now.since(&before.links.get(&key).copied().unwrap_or_default())
    };
    let everywhere = || -> LinkTally {
        after.links.keys().fold(LinkTally::default(), |sum, (from, to)| sum.plus(&link(from, to)))
    };
    let disk = after.disk.unwrap_or_default();
    let disk_before = before.disk.unwrap_or_default();
    let clock = after.clock.unwrap_or_default();
    let clock_before = before.clock.unwrap_or_default();
    let counted =
        |name: &str, count: u64| Effect { bit: count > 0, detail: json!({ name: count }) };
    match fault {
        Fault::Isolate { .. }
        | Fault::Partition { .. }
        | Fault::OneWay { .. }
        | Fault::Bridge { .. } => {
            let cut = network_state([fault], all_nodes).blocked;
            let used: Vec<(&String, &String, u64)> = cut
                .iter()
                .map(|(from, to)| (from, to, link(from, to).sent))
                .filter(|(_, _, sent)| *sent > 0)
                .collect();
            let frames: u64 = used.iter().map(|(_, _, sent)| sent).sum();
            Effect {
                bit: frames > 0,
                detail: json!({
                    "links_cut": cut.len(),
                    "links_cut_in_use": used.len(),
                    "frames_into_cut": frames,
                }),
            }
        }
        Fault::PacketLoss { .. } | Fault::LatencySpike { .. } => {
            counted("frames_sent", everywhere().sent)
        }
        Fault::LinkDelay { from, to, .. } => counted("frames_delayed", link(from, to).delayed),
        Fault::Duplicate { .. } => counted("frames_duplicated", everywhere().duplicated),
        Fault::Reorder { .. } => counted("frames_reordered", everywhere().reordered),
        Fault::FrameLoss { .. } => counted("frames_dropped", everywhere().dropped),
        Fault::Crash { .. } => Effect {
            bit: struck.was_running,
            detail: json!({
                "was_running": struck.was_running,
                "pending_bytes_lost": struck.pending_bytes,
            }),
        },
        Fault::Pause { .. } => {
            Effect { bit: struck.was_running, detail: json!({ "was_running": struck.was_running }) }
        }
        Fault::CrashInFsync { .. } => Effect {
            bit: disk.fsyncs_trapped > disk_before.fsyncs_trapped,
            detail: json!({
                "crashed_in_fsync": disk.fsyncs_trapped > disk_before.fsyncs_trapped,
                "pending_bytes_lost":
                    disk.pending_bytes_at_trap - disk_before.pending_bytes_at_trap,
            }),
        },
        Fault::PowerLoss { .. } => Effect {
            bit: struck.nodes_running > 0,
            detail: json!({
                "nodes_running": struck.nodes_running,
                "pending_bytes_lost": struck.pending_bytes,
            }),
        },
        Fault::SlowDisk { .. } => Effect {
            bit: disk.ops_slowed > disk_before.ops_slowed,
            detail: json!({
                "ops_slowed": disk.ops_slowed - disk_before.ops_slowed,
                "latency_added_ms": (disk.slowed_extra_us - disk_before.slowed_extra_us) / 1000,
            }),
        },
        Fault::DiskStall { .. } => {
            counted("ops_stalled", disk.ops_stalled - disk_before.ops_stalled)
        }
        Fault::TornWrites { .. } => {
            counted("torn_crashes", disk.torn_crashes - disk_before.torn_crashes)
        }
        Fault::DiskErrors { .. } => Effect {
            bit: disk.io_errors > disk_before.io_errors,
            detail: json!({
                "io_errors": disk.io_errors - disk_before.io_errors,
                "bytes_dropped_by_fsync_errors":
                    disk.bytes_dropped_by_fsync_errors - disk_before.bytes_dropped_by_fsync_errors,
            }),
        },
        Fault::DiskFull { .. } => {
            counted("writes_refused", disk.full_refusals - disk_before.full_refusals)
        }
        Fault::CorruptDisk { .. } => Effect {
            bit: struck.corrupted.is_some(),
            detail: match &struck.corrupted {
                Some((file, offset)) => json!({ "file": file, "offset": offset }),
                None => json!({ "file": null, "reason": "no durable data to corrupt" }),
            },
        },
        Fault::ClockOffset { .. } | Fault::ClockDrift { .. } | Fault::ClockJump { .. } => {
            let reads = clock.skewed_reads - clock_before.skewed_reads;
            let sleeps = clock.drifted_sleeps - clock_before.drifted_sleeps;
            Effect {
                bit: reads + sleeps > 0,
                detail: json!({
                    "skewed_reads": reads,
                    "drifted_sleeps": sleeps,
                    "error_ms_max_abs": clock.error_ms_max_abs,
                }),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(list: &[&str]) -> Vec<String> {
        list.iter().map(|name| name.to_string()).collect()
    }

    fn links(entries: &[(&str, &str, LinkTally)]) -> Reading {
        let links = entries.iter().map(|(f, t, tally)| ((f.to_string(), t.to_string()), *tally));
        Reading { links: links.collect(), ..Reading::default() }
    }

    fn sent(sent: u64) -> LinkTally {
        LinkTally { sent, ..LinkTally::default() }
    }

    #[test]
    fn a_partition_bites_only_where_frames_crossed_the_cut() {
        let all = names(&["a", "b", "c"]);
        let fault = Fault::Partition { groups: vec![names(&["a"]), names(&["b", "c"])] };
        let before = links(&[("a", "b", sent(5)), ("b", "c", sent(5))]);
        // Only b and c talked during the window: the cut between a and the rest held nothing.
        let quiet = links(&[("a", "b", sent(5)), ("b", "c", sent(9))]);
        let effect = effect(&fault, &Struck::default(), &before, &quiet, &all);
        assert!(!effect.bit, "{effect:?}");
        assert_eq!(effect.detail["links_cut"], 4);
        // a sent twice to b into the cut.
        let crossed = links(&[("a", "b", sent(7)), ("b", "c", sent(9))]);
        let hit = super::effect(&fault, &Struck::default(), &before, &crossed, &all);
        assert!(hit.bit);
        assert_eq!(hit.detail["frames_into_cut"], 2);
        assert_eq!(hit.detail["links_cut_in_use"], 1);
    }

    #[test]
    fn link_rules_bite_by_what_they_did_to_frames() {
        let all = names(&["a", "b"]);
        let duplicated = LinkTally { sent: 10, duplicated: 1, ..LinkTally::default() };
        let after = links(&[("a", "b", duplicated)]);
        let none = Reading::default();
        let duplicate = Fault::Duplicate { probability: 0.1 };
        assert!(effect(&duplicate, &Struck::default(), &none, &after, &all).bit);
        // Ten frames passed the reordering rule, none was held back: vacuous.
        let reorder = Fault::Reorder { probability: 0.01, window_ms: 50 };
        assert!(!effect(&reorder, &Struck::default(), &none, &after, &all).bit);
        let delay =
            Fault::LinkDelay { from: "b".into(), to: "a".into(), delay_ms: 5, jitter_ms: 0 };
        assert!(!effect(&delay, &Struck::default(), &none, &after, &all).bit);
    }

    #[test]
    fn a_crash_of_a_node_already_down_is_vacuous() {
        let crash = Fault::Crash { node: "a".into() };
        let none = Reading::default();
        let down = Struck { was_running: false, ..Struck::default() };
        assert!(!effect(&crash, &down, &none, &none, &[]).bit);
        let up = Struck { was_running: true, pending_bytes: 40, ..Struck::default() };
        let hit = effect(&crash, &up, &none, &none, &[]);
        assert!(hit.bit);
        assert_eq!(hit.detail["pending_bytes_lost"], 40);
    }

    #[test]
    fn disk_and_clock_faults_bite_only_when_used() {
        let slow = Fault::SlowDisk { node: "a".into(), factor: 10 };
        let idle = Reading { disk: Some(DiskStats::default()), ..Reading::default() };
        assert!(!effect(&slow, &Struck::default(), &idle, &idle, &[]).bit);
        let used = Reading {
            disk: Some(DiskStats { ops_slowed: 3, slowed_extra_us: 9_000, ..DiskStats::default() }),
            ..Reading::default()
        };
        let hit = effect(&slow, &Struck::default(), &idle, &used, &[]);
        assert_eq!((hit.bit, hit.detail["latency_added_ms"].as_u64()), (true, Some(9)));
        let offset = Fault::ClockOffset { node: "a".into(), offset_ms: 500 };
        let unread = Reading { clock: Some(ClockStats::default()), ..Reading::default() };
        assert!(!effect(&offset, &Struck::default(), &unread, &unread, &[]).bit);
        let read = Reading {
            clock: Some(ClockStats { skewed_reads: 2, error_ms_max_abs: 500, drifted_sleeps: 0 }),
            ..Reading::default()
        };
        assert!(effect(&offset, &Struck::default(), &unread, &read, &[]).bit);
        let corrupt = Fault::CorruptDisk { node: "a".into(), file: None };
        assert!(!effect(&corrupt, &Struck::default(), &idle, &idle, &[]).bit);
    }

    #[test]
    fn disk_errors_and_a_full_disk_bite_only_when_a_write_failed() {
        let idle = Reading { disk: Some(DiskStats::default()), ..Reading::default() };
        let errors = Fault::DiskErrors { node: "a".into(), probability: 0.1 };
        let full = Fault::DiskFull { node: "a".into() };
        assert!(!effect(&errors, &Struck::default(), &idle, &idle, &[]).bit);
        assert!(!effect(&full, &Struck::default(), &idle, &idle, &[]).bit);
        let failed = Reading {
            disk: Some(DiskStats {
                io_errors: 1,
                bytes_dropped_by_fsync_errors: 64,
                full_refusals: 2,
                ..DiskStats::default()
            }),
            ..Reading::default()
        };
        let hit = effect(&errors, &Struck::default(), &idle, &failed, &[]);
        assert_eq!(
            (hit.bit, hit.detail["bytes_dropped_by_fsync_errors"].as_u64()),
            (true, Some(64))
        );
        let refused = effect(&full, &Struck::default(), &idle, &failed, &[]);
        assert_eq!((refused.bit, refused.detail["writes_refused"].as_u64()), (true, Some(2)));
    }

    #[test]
    fn a_power_loss_bites_when_one_of_its_nodes_ran() {
        let loss = Fault::PowerLoss { nodes: names(&["a", "b"]) };
        let none = Reading::default();
        assert!(!effect(&loss, &Struck::default(), &none, &none, &[]).bit);
        let one = Struck { nodes_running: 1, pending_bytes: 7, ..Struck::default() };
        let hit = effect(&loss, &one, &none, &none, &[]);
        assert_eq!((hit.bit, hit.detail["pending_bytes_lost"].as_u64()), (true, Some(7)));
    }
}
