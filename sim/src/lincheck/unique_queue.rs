//! A fast decision procedure for `fifo-queue` histories whose enqueued values are distinct, as
//! job ids are: O(n log n) instead of the general search's exponential worst case.
//!
//! Role: answer [`Decision::Linearizable`] or [`Decision::Violation`] when it can prove either,
//! and [`Decision::Undecided`] otherwise, so the caller falls back to the general search. Both
//! answers are proofs, never guesses, so the procedure always agrees with the general search;
//! how often it decides is a matter of speed only.
//!
//! Which histories qualify: every enqueue's value is distinct, the queue starts empty, and no
//! dequeue has an unknown outcome (one could have removed any value). `info` and
//! never-completed enqueues are allowed: one whose value some dequeue returned certainly took
//! effect (its interval is open to the end of the history); one whose value nobody returned
//! is dropped, since an element that never arrives only makes empty dequeues easier.
//!
//! How it proves `linearizable`: it builds a linearization greedily, one legal step at a time
//! (a call may come next when it was invoked before every remaining call returned):
//! - the dequeue of the queue's head, when it may come next, is taken at once: whatever order
//!   completes the history, moving it to the front keeps that order legal (only enqueues can
//!   stand before it, and they commute with it);
//! - likewise an empty dequeue when the queue is empty;
//! - otherwise the next call is an enqueue, and the one taken is the one whose value's dequeue
//!   was invoked first (a value never dequeued goes last), the order FIFO needs its dequeues
//!   in. That choice is a heuristic: if it leads to a dead end the procedure does not conclude
//!   anything from it.
//!
//! How it proves `not linearizable`: by finding one of the violations of Henzinger, Sezgin and
//! Vafeiadis ("Aspect-oriented linearizability proofs", CONCUR 2013), each of which no order
//! can explain:
//! - *fresh*: a dequeue returned a value never enqueued, or returned before its enqueue began;
//! - *repeated*: two dequeues returned the same value;
//! - *order*: enqueue(a) returned before enqueue(b) began, b was dequeued, and a was dequeued
//!   only by a dequeue that began after b's dequeue returned, or never;
//! - *empty*: a dequeue returned empty although some a was surely in the queue throughout:
//!   enqueue(a) returned before it began, and a was dequeued only after it returned, or never.
//!
//! The last two are found in O(n log n) by one sweep: values sorted by the return of their
//! enqueue, with a running maximum of when their dequeue began.
//!
//! Invariants: every step of the greedy linearization is checked legal as it is taken, so a
//! completed one is a linearization; every violation reported names calls of the history that
//! form it; positions only, no clock.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, VecDeque};

use super::model::{QueueInput, QueueOutput};
use super::search::SearchCall;

/// What the procedure proved.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Decision {
    /// It built a linearization.
    Linearizable,
    /// It found a violation no order explains.
    Violation(Violation),
    /// The history does not qualify, or the greedy order reached a dead end and no violation
    /// it knows explains why: ask the general search.
    Undecided,
}

/// A violation, its calls named by their index in the partition's calls.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Violation {
    /// `fresh`, `repeated`, `order` or `empty`.
    pub kind: &'static str,
    /// What happened, with the calls in the order the sentence names them as `{0}`, `{1}`...
    pub description: String,
    /// The calls that form the violation.
    pub calls: Vec<usize>,
    /// The largest history position among the calls' invokes and returns that the violation
    /// needs: the history cut just after it is already not linearizable.
    pub end_position: usize,
}

/// Returned by an `info` call: the end of the history.
const OPEN: usize = usize::MAX;

/// One call per value: the enqueue of each value, or the dequeue that returned it. Values are
/// the model's interned ids, dense from 0, so a vector indexed by value stands in for a map
/// (and is walked in value order, as a `BTreeMap` would be).
struct CallByValue {
    /// The call's index plus one; 0 for none.
    slots: Vec<u32>,
}

impl CallByValue {
    /// Room for values `0..value_end`.
    fn new(value_end: usize) -> Self {
        CallByValue { slots: vec![0; value_end] }
    }

    fn get(&self, value: u32) -> Option<usize> {
        let slot = self.slots[value as usize];
        (slot != 0).then(|| slot as usize - 1)
    }

    fn contains(&self, value: u32) -> bool {
        self.slots[value as usize] != 0
    }

    /// Records `call` for `value`; the call it already had, if any, is kept and returned.
    fn insert(&mut self, value: u32, call: usize) -> Option<usize> {
        let previous = self.get(value);
        if previous.is_none() {
            self.slots[value as usize] =
                u32::try_from(call + 1).expect("fewer than 2^32 - 1 calls in one partition");
        }
        previous
    }

    /// (value, call) in value order.
    fn iter(&self) -> impl Iterator<Item = (u32, usize)> + '_ {
        self.slots.iter().enumerate().filter(|(_, &slot)| slot != 0).map(|(value, &slot)| {
            (u32::try_from(value).expect("values are u32 ids"), slot as usize - 1)
        })
    }
}

/// Decides `calls` (one partition of a `fifo-queue` history) from the empty queue.
pub(crate) fn decide(calls: &[SearchCall<QueueInput, QueueOutput>]) -> Decision {
    let returned =
        |call: &SearchCall<QueueInput, QueueOutput>| call.return_position.unwrap_or(OPEN);
    let value_end = calls
        .iter()
        .filter_map(|call| match (call.input, call.output) {
            (QueueInput::Enqueue(value), _) | (_, Some(QueueOutput::Dequeued(Some(value)))) => {
                Some(value as usize + 1)
            }
            _ => None,
        })
        .max()
        .unwrap_or(0);
    // Qualify, and index the calls by value.
    let mut enqueue_of = CallByValue::new(value_end);
    let mut dequeue_of = CallByValue::new(value_end);
    let mut empties: Vec<usize> = Vec::new();
    // Qualify first: a violation found among calls that do not qualify would prove nothing.
    for (index, call) in calls.iter().enumerate() {
        match (call.input, call.output) {
            (QueueInput::Enqueue(value), _) => {
                if enqueue_of.insert(value, index).is_some() {
                    return Decision::Undecided;
                }
            }
            (QueueInput::Dequeue, None) => return Decision::Undecided,
            (QueueInput::Dequeue, Some(_)) => {}
        }
    }
    for (index, call) in calls.iter().enumerate() {
        match (call.input, call.output) {
            (QueueInput::Enqueue(_), _) | (QueueInput::Dequeue, None) => {}
            (QueueInput::Dequeue, Some(QueueOutput::Dequeued(None))) => empties.push(index),
            (QueueInput::Dequeue, Some(QueueOutput::Dequeued(Some(value)))) => {
                if let Some(first) = dequeue_of.insert(value, index) {
                    return Decision::Violation(Violation {
                        kind: "repeated",
                        description: "{0} and {1} both dequeued the same value".to_string(),
                        calls: vec![first, index],
                        end_position: returned(&calls[first]).max(returned(&calls[index])),
                    });
                }
            }
            (QueueInput::Dequeue, Some(QueueOutput::Enqueued)) => {
                unreachable!("decode_output gives a dequeue a Dequeued output")
            }
        }
    }
    for (value, dequeue) in dequeue_of.iter() {
        let dequeue_return = returned(&calls[dequeue]);
        match enqueue_of.get(value) {
            None => {
                return Decision::Violation(Violation {
                    kind: "fresh",
                    description: "{0} dequeued a value no call enqueued".to_string(),
                    calls: vec![dequeue],
                    end_position: dequeue_return,
                })
            }
            Some(enqueue) if dequeue_return < calls[enqueue].invoke_position => {
                return Decision::Violation(Violation {
                    kind: "fresh",
                    description: "{0} returned its value before {1}, its enqueue, began"
                        .to_string(),
                    calls: vec![dequeue, enqueue],
                    end_position: calls[enqueue].invoke_position,
                })
            }
            Some(_) => {}
        }
    }
    if greedy_linearization(calls, &enqueue_of, &dequeue_of) {
        return Decision::Linearizable;
    }
    match order_or_empty_violation(calls, &enqueue_of, &dequeue_of, &empties) {
        Some(violation) => Decision::Violation(violation),
        None => Decision::Undecided,
    }
}

/// Tries to build a linearization as the module comment says; true if it did.
fn greedy_linearization(
    calls: &[SearchCall<QueueInput, QueueOutput>],
    enqueue_of: &CallByValue,
    dequeue_of: &CallByValue,
) -> bool {
    let returned = |index: usize| calls[index].return_position.unwrap_or(OPEN);
    // The calls to place, in invoke order: enqueues that must have taken effect or certainly
    // did (an `info` enqueue nobody dequeued is left out), every dequeue.
    let mut to_place: Vec<usize> = (0..calls.len())
        .filter(|&index| match (calls[index].input, calls[index].output) {
            (QueueInput::Enqueue(value), output) => output.is_some() || dequeue_of.contains(value),
            (QueueInput::Dequeue, _) => true,
        })
        .collect();
    // Calls come in invoke order from the history; sorting keeps this true for any caller (and
    // costs one pass when it already is).
    to_place.sort_by_key(|&index| calls[index].invoke_position);
    // A call becomes available once it was invoked before every remaining call's return, and
    // the earliest remaining return only grows: the returns in order, with a cursor past those
    // of calls already placed.
    let mut returns: Vec<(usize, usize)> =
        to_place.iter().map(|&index| (returned(index), index)).collect();
    returns.sort_unstable();
    let mut returns_placed = 0;
    let mut placed = vec![false; calls.len()];
    let mut next_available = 0;
    // Available enqueues by (when their value's dequeue began, value), earliest first; never
    // dequeued: OPEN.
    let mut enqueues_ready: BinaryHeap<Reverse<(usize, u32)>> = BinaryHeap::new();
    let mut dequeue_ready = vec![false; dequeue_of.slots.len()];
    let mut empties_ready: Vec<usize> = Vec::new();
    let mut queue: VecDeque<u32> = VecDeque::new();
    let mut placed_count = 0;
    while placed_count < to_place.len() {
        // The earliest return among the calls still to place.
        while returns_placed < returns.len() && placed[returns[returns_placed].1] {
            returns_placed += 1;
        }
        let earliest_return = returns.get(returns_placed).map_or(OPEN, |&(position, _)| position);
        while next_available < to_place.len()
            && calls[to_place[next_available]].invoke_position < earliest_return
        {
            let index = to_place[next_available];
            match (calls[index].input, calls[index].output) {
                (QueueInput::Enqueue(value), _) => {
                    let dequeue_began =
                        dequeue_of.get(value).map_or(OPEN, |d| calls[d].invoke_position);
                    enqueues_ready.push(Reverse((dequeue_began, value)));
                }
                (QueueInput::Dequeue, Some(QueueOutput::Dequeued(Some(value)))) => {
                    dequeue_ready[value as usize] = true;
                }
                _ => empties_ready.push(index),
            }
            next_available += 1;
        }
        let take = if let Some(&head) = queue.front().filter(|&&head| dequeue_ready[head as usize])
        {
            queue.pop_front();
            dequeue_ready[head as usize] = false;
            dequeue_of.get(head).expect("a ready dequeue is indexed")
        } else if queue.is_empty() && !empties_ready.is_empty() {
            empties_ready.pop().expect("not empty")
        } else if let Some(Reverse((_, value))) = enqueues_ready.pop() {
            queue.push_back(value);
            enqueue_of.get(value).expect("a ready enqueue is indexed")
        } else {
            // Nothing may come next: a dead end of this order, not a proof.
            return false;
        };
        debug_assert!(calls[take].invoke_position < earliest_return, "a legal next call");
        placed[take] = true;
        placed_count += 1;
    }
    true
}

/// Finds an *order* or *empty* violation (see the module comment), if there is one.
fn order_or_empty_violation(
    calls: &[SearchCall<QueueInput, QueueOutput>],
    enqueue_of: &CallByValue,
    dequeue_of: &CallByValue,
    empties: &[usize],
) -> Option<Violation> {
    // Values whose enqueue returned `ok`, by that return; with each, when its dequeue began
    // (OPEN: never), and the running maximum of that over the values before it.
    let mut by_return: Vec<(usize, usize, u32)> = enqueue_of
        .iter()
        .filter_map(|(value, enqueue)| {
            let enqueue_return = calls[enqueue].return_position?;
            let dequeue_began =
                dequeue_of.get(value).map_or(OPEN, |dequeue| calls[dequeue].invoke_position);
            Some((enqueue_return, dequeue_began, value))
        })
        .collect();
    by_return.sort_unstable();
    let mut latest_before: Vec<(usize, u32)> = Vec::with_capacity(by_return.len());
    for &(_, dequeue_began, value) in &by_return {
        let latest = latest_before.last().copied();
        latest_before.push(match latest {
            Some(latest) if latest.0 >= dequeue_began => latest,
            _ => (dequeue_began, value),
        });
    }
    // The value enqueued (returned) before `position` whose dequeue began last.
    let latest_enqueued_before = |position: usize| -> Option<(usize, u32)> {
        let count = by_return.partition_point(|&(enqueue_return, _, _)| enqueue_return < position);
        count.checked_sub(1).map(|last| latest_before[last])
    };
    let mut found: Option<Violation> = None;
    let mut keep = |violation: Violation| {
        // Deterministic and short: the violation that needs the shortest prefix.
        if found.as_ref().is_none_or(|best| violation.end_position < best.end_position) {
            found = Some(violation);
        }
    };
    for (value, dequeue) in dequeue_of.iter() {
        let enqueue = enqueue_of.get(value).expect("a fresh dequeue was reported before");
        let Some((dequeue_began, earlier)) = latest_enqueued_before(calls[enqueue].invoke_position)
        else {
            continue;
        };
        let dequeue_return = calls[dequeue].return_position.expect("qualifying dequeues are ok");
        if dequeue_began > dequeue_return {
            let earlier_enqueue = enqueue_of.get(earlier).expect("an enqueued value");
            let (description, mut violation_calls) = match dequeue_of.get(earlier) {
                Some(earlier_dequeue) => (
                    "{0} returned before {1} began, yet {2} dequeued the later value before \
                     {3} began to dequeue the earlier one",
                    vec![earlier_enqueue, enqueue, dequeue, earlier_dequeue],
                ),
                None => (
                    "{0} returned before {1} began, {2} dequeued the later value, and the \
                     earlier one was never dequeued",
                    vec![earlier_enqueue, enqueue, dequeue],
                ),
            };
            violation_calls.truncate(4);
            keep(Violation {
                kind: "order",
                description: description.to_string(),
                calls: violation_calls,
                end_position: dequeue_return.max(calls[enqueue].invoke_position),
            });
        }
    }
    for &empty in empties {
        let empty_return = calls[empty].return_position.expect("qualifying dequeues are ok");
        let Some((dequeue_began, present)) = latest_enqueued_before(calls[empty].invoke_position)
        else {
            continue;
        };
        if dequeue_began > empty_return {
            let present_enqueue = enqueue_of.get(present).expect("an enqueued value");
            let mut violation_calls = vec![present_enqueue, empty];
            let description = match dequeue_of.get(present) {
                Some(dequeue) => {
                    violation_calls.push(dequeue);
                    "{0} returned before {1} began, and {1} returned empty before {2} began \
                     to dequeue that value"
                }
                None => {
                    "{0} returned before {1} began, {1} returned empty, and that value \
                         was never dequeued"
                }
            };
            keep(Violation {
                kind: "empty",
                description: description.to_string(),
                calls: violation_calls,
                end_position: empty_return,
            });
        }
    }
    found
}
