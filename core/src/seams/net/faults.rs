//! Link faults: the per-link rules (delay, jitter, duplication, reordering, frame loss) the
//! nemesis writes into a [`LinkFaults`] table shared by every transport of a cluster.
//!
//! madsim can only clog nodes and links and set one global loss rate and latency range; these
//! rules add what it lacks. The sending transport judges each frame it sends on a link by the
//! rule in force then ([`LinkFaults::judge`]): a rule never touches frames already sent.
//!
//! The table also keeps a [`LinkTally`] per directed link: every frame the transports sent on
//! it and what the rules did to them. The nemesis reads it to say what a fault did (a
//! partition that cut links nobody sent on, or a duplication rule no frame met, did nothing).
//! Healing the rules keeps the tallies.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rand::Rng;
use serde::{Deserialize, Serialize};

/// Faults applied to every frame sent on a link. All zero means a healthy link.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LinkRule {
    /// Extra one-way delay, in milliseconds.
    pub delay_ms: u64,
    /// Extra delay drawn uniformly from `0..=jitter_ms` per frame.
    pub jitter_ms: u64,
    /// Chance that a frame is sent twice.
    pub duplicate_probability: f64,
    /// Chance that a frame is held back up to `reorder_window_ms`, so later frames overtake it.
    pub reorder_probability: f64,
    pub reorder_window_ms: u64,
    /// Chance that a frame is lost (as frames in flight are when a connection resets).
    pub drop_probability: f64,
}

impl LinkRule {
    /// Combines two rules on the same link: delays add up, each chance is the larger one.
    pub fn merge(self, other: LinkRule) -> LinkRule {
        LinkRule {
            delay_ms: self.delay_ms + other.delay_ms,
            jitter_ms: self.jitter_ms + other.jitter_ms,
            duplicate_probability: self.duplicate_probability.max(other.duplicate_probability),
            reorder_probability: self.reorder_probability.max(other.reorder_probability),
            reorder_window_ms: self.reorder_window_ms.max(other.reorder_window_ms),
            drop_probability: self.drop_probability.max(other.drop_probability),
        }
    }

    /// What happens to one frame under this rule. The draws are made in a fixed order, so
    /// one seeded RNG gives one sequence of verdicts.
    pub fn judge(&self, rng: &mut impl Rng) -> Verdict {
        self.judge_noting(rng).0
    }

    fn judge_noting(&self, rng: &mut impl Rng) -> (Verdict, Judged) {
        if self.drop_probability > 0.0 && rng.random_bool(self.drop_probability.min(1.0)) {
            return (Verdict::Drop, Judged::default());
        }
        let mut after_ms = self.delay_ms;
        if self.jitter_ms > 0 {
            after_ms += rng.random_range(0..=self.jitter_ms);
        }
        let delayed = after_ms > 0;
        let reordered =
            self.reorder_probability > 0.0 && rng.random_bool(self.reorder_probability.min(1.0));
        if reordered {
            after_ms += rng.random_range(1..=self.reorder_window_ms.max(1));
        }
        let duplicated = self.duplicate_probability > 0.0
            && rng.random_bool(self.duplicate_probability.min(1.0));
        let copies = if duplicated { 2 } else { 1 };
        let verdict = if after_ms == 0 && copies == 1 {
            Verdict::Pass
        } else {
            Verdict::Deliver { after: Duration::from_millis(after_ms), copies }
        };
        (verdict, Judged { delayed, reordered })
    }
}

/// What the rules did to one frame, kept with the verdict for the tallies.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct Judged {
    delayed: bool,
    reordered: bool,
}

/// Frames sent on one directed link, and what the link rules did to them. Counts only grow.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LinkTally {
    /// Every frame a transport sent on the link, with or without a rule.
    pub sent: u64,
    pub dropped: u64,
    /// Held back by the link's delay or jitter.
    pub delayed: u64,
    /// Held back by the reordering chance, so later frames could overtake them.
    pub reordered: u64,
    pub duplicated: u64,
}

impl LinkTally {
    /// What happened between an `earlier` reading of this tally and this one.
    pub fn since(&self, earlier: &LinkTally) -> LinkTally {
        LinkTally {
            sent: self.sent - earlier.sent,
            dropped: self.dropped - earlier.dropped,
            delayed: self.delayed - earlier.delayed,
            reordered: self.reordered - earlier.reordered,
            duplicated: self.duplicated - earlier.duplicated,
        }
    }

    /// The sum of two tallies.
    pub fn plus(&self, other: &LinkTally) -> LinkTally {
        LinkTally {
            sent: self.sent + other.sent,
            dropped: self.dropped + other.dropped,
            delayed: self.delayed + other.delayed,
            reordered: self.reordered + other.reordered,
            duplicated: self.duplicated + other.duplicated,
        }
    }
}

/// The fate of one frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    Pass,
    Deliver { after: Duration, copies: u8 },
    Drop,
}

/// The table of link rules, shared by every transport of a cluster and written by the nemesis.
#[derive(Clone, Debug, Default)]
pub struct LinkFaults {
    table: Arc<Mutex<LinkFaultTable>>,
}

#[derive(Debug, Default)]
struct LinkFaultTable {
    every_link: Option<LinkRule>,
    /// By sender, then receiver, so a lookup by `&str` builds no key.
    links: BTreeMap<String, BTreeMap<String, LinkRule>>,
    /// By sender, then receiver. Kept across heals.
    tallies: BTreeMap<String, BTreeMap<String, LinkTally>>,
}

/// The node a transport name belongs to: the part before the first `/`.
fn node_of(transport: &str) -> &str {
    transport.split_once('/').map_or(transport, |(node, _)| node)
}

impl LinkFaultTable {
    fn rule(&self, from: &str, to: &str) -> Option<LinkRule> {
        let link = self.links.get(from).and_then(|receivers| receivers.get(to)).copied();
        match (self.every_link, link) {
            (Some(every), Some(link)) => Some(every.merge(link)),
            (every, link) => every.or(link),
        }
    }
}

impl LinkFaults {
    /// Sets the rule for frames from `from` to `to` (one direction).
    pub fn set_link(&self, from: &str, to: &str, rule: LinkRule) {
        let mut table = self.lock();
        table.links.entry(from.to_string()).or_default().insert(to.to_string(), rule);
    }

    /// Sets a rule for every link.
    pub fn set_every_link(&self, rule: LinkRule) {
        self.lock().every_link = Some(rule);
    }

    /// Removes the rule of one link.
    pub fn clear_link(&self, from: &str, to: &str) {
        let mut table = self.lock();
        if let Some(receivers) = table.links.get_mut(from) {
            receivers.remove(to);
            if receivers.is_empty() {
                table.links.remove(from);
            }
        }
    }

    /// Removes the every-link rule.
    pub fn clear_every_link(&self) {
        self.lock().every_link = None;
    }

    /// Removes every rule. The tallies stay.
    pub fn heal(&self) {
        let mut table = self.lock();
        table.every_link = None;
        table.links.clear();
    }

    /// The rule in force from `from` to `to`, if any: the every-link rule merged with the
    /// link's own.
    pub fn rule(&self, from: &str, to: &str) -> Option<LinkRule> {
        self.lock().rule(from, to)
    }

    /// The fate of one frame `from` sends to `to`, under the rule in force (`Pass` without
    /// one, drawing nothing from `rng`), counted in the link's tally. A transport's name on
    /// the wire may extend its node's (`api-1/queue`, the API server's queue clients): rules
    /// and tallies are by node.
    /// The RNG is locked only when a rule applies.
    pub fn judge<R: Rng>(&self, from: &str, to: &str, rng: &Mutex<R>) -> Verdict {
        let (from, to) = (node_of(from), node_of(to));
        let mut table = self.lock();
        let (verdict, judged) = match table.rule(from, to) {
            Some(rule) => {
                let mut rng = rng.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
                rule.judge_noting(&mut *rng)
            }
            None => (Verdict::Pass, Judged::default()),
        };
        let tally = match table.tallies.get_mut(from).and_then(|to_tally| to_tally.get_mut(to)) {
            Some(tally) => tally,
            None => table.tallies.entry(from.into()).or_default().entry(to.into()).or_default(),
        };
        tally.sent += 1;
        tally.dropped += u64::from(verdict == Verdict::Drop);
        tally.delayed += u64::from(judged.delayed);
        tally.reordered += u64::from(judged.reordered);
        tally.duplicated += u64::from(matches!(verdict, Verdict::Deliver { copies: 2.., .. }));
        verdict
    }

    /// Every link's tally so far, by (sender, receiver); links nothing was sent on are absent.
    pub fn tallies(&self) -> BTreeMap<(String, String), LinkTally> {
        let table = self.lock();
        let links = table.tallies.iter().flat_map(|(from, to_tally)| {
            to_tally.iter().map(move |(to, tally)| ((from.clone(), to.clone()), *tally))
        });
        links.collect()
    }

    /// Whether no rule is left anywhere.
    pub fn is_healed(&self) -> bool {
        let table = self.lock();
        table.every_link.is_none() && table.links.is_empty()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, LinkFaultTable> {
        // A panic elsewhere while the table was held leaves it whole: every change is one
        // assignment.
        self.table.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}
