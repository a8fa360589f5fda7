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
use std::collections::{BTreeMap, BTreeSet, BinaryHeap, VecDeque};

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

/// Decides `calls` (one partition of a `fifo-queue` history) from the empty queue.
pub(crate) fn decide(calls: &[SearchCall<QueueInput, QueueOutput>]) -> Decision {
    let returned =
        |call: &SearchCall<QueueInput, QueueOutput>| call.return_position.unwrap_or(OPEN);
    // Qualify, and index the calls by value.
    let mut enqueue_of: BTreeMap<u32, usize> = BTreeMap::new();
    let mut dequeue_of: BTreeMap<u32, usize> = BTreeMap::new();
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
                    let (first, second) = (first.min(index), first.max(index));
                    return Decision::Violation(Violation {
                        kind: "repeated",
                        description: "{0} and {1} both dequeued the same value".to_string(),
                        calls: vec![first, second],
                        end_position: returned(&calls[first]).max(returned(&calls[second])),
                    });
                }
            }
            (QueueInput::Dequeue, Some(QueueOutput::Enqueued)) => {
                unreachable!("decode_output gives a dequeue a Dequeued output")
            }
        }
    }
    for (&value, &dequeue) in &dequeue_of {
        let dequeue_return = returned(&calls[dequeue]);
        match enqueue_of.get(&value) {
            None => {
                return Decision::Violation(Violation {
                    kind: "fresh",
                    description: "{0} dequeued a value no call enqueued".to_string(),
                    calls: vec![dequeue],
                    end_position: dequeue_return,
                })
            }
            Some(&enqueue) if dequeue_return < calls[enqueue].invoke_position => {
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
    if greedy_linearization(calls, &enqueue_of, &dequeue_of, &empties) {
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
    enqueue_of: &BTreeMap<u32, usize>,
    dequeue_of: &BTreeMap<u32, usize>,
    empties: &[usize],
) -> bool {
    let returned = |index: usize| calls[index].return_position.unwrap_or(OPEN);
    // The calls to place: enqueues that must have taken effect or certainly did (an `info`
    // enqueue nobody dequeued is left out), every dequeue.
    let mut to_place: Vec<usize> = Vec::with_capacity(calls.len());
    for (&value, &enqueue) in enqueue_of {
        if calls[enqueue].output.is_some() || dequeue_of.contains_key(&value) {
            to_place.push(enqueue);
        }
    }
    to_place.extend(dequeue_of.values().copied());
    to_place.extend(empties.iter().copied());
    // Invoke order: a call becomes available once it was invoked before every remaining
    // call's return, and the earliest remaining return only grows.
    to_place.sort_by_key(|&index| calls[index].invoke_position);
    let mut remaining_returns: BinaryHeap<Reverse<(usize, usize)>> =
        to_place.iter().map(|&index| Reverse((returned(index), index))).collect();
    let mut placed = vec![false; calls.len()];
    let mut next_available = 0;
    // Available enqueues by (when their value's dequeue began, value); never dequeued: OPEN.
    let mut enqueues_ready: BTreeSet<(usize, u32)> = BTreeSet::new();
    let mut dequeue_ready: BTreeSet<u32> = BTreeSet::new();
    let mut empties_ready: Vec<usize> = Vec::new();
    let mut queue: VecDeque<u32> = VecDeque::new();
    let mut placed_count = 0;
    while placed_count < to_place.len() {
        // The earliest return among the calls still to place.
        while let Some(&Reverse((_, index))) = remaining_returns.peek() {
            if placed[index] {
                remaining_returns.pop();
            } else {
                break;
            }
        }
        let earliest_return =
            remaining_returns.peek().map(|Reverse((position, _))| *position).unwrap_or(OPEN);
        while next_available < to_place.len()
            && calls[to_place[next_available]].invoke_position < earliest_return
        {
            let index = to_place[next_available];
            match (calls[index].input, calls[index].output) {
                (QueueInput::Enqueue(value), _) => {
                    let dequeue_began =
                        dequeue_of.get(&value).map_or(OPEN, |&d| calls[d].invoke_position);
                    enqueues_ready.insert((dequeue_began, value));
                }
                (QueueInput::Dequeue, Some(QueueOutput::Dequeued(Some(value)))) => {
                    dequeue_ready.insert(value);
                }
                _ => empties_ready.push(index),
            }
            next_available += 1;
        }
        let take = if let Some(&head) = queue.front().filter(|head| dequeue_ready.contains(head)) {
            queue.pop_front();
            dequeue_ready.remove(&head);
            dequeue_of[&head]
        } else if queue.is_empty() && !empties_ready.is_empty() {
            empties_ready.pop().expect("not empty")
        } else if let Some((_, value)) = enqueues_ready.pop_first() {
            queue.push_back(value);
            enqueue_of[&value]
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
    enqueue_of: &BTreeMap<u32, usize>,
    dequeue_of: &BTreeMap<u32, usize>,
    empties: &[usize],
) -> Option<Violation> {
    // Values whose enqueue returned `ok`, by that return; with each, when its dequeue began
    // (OPEN: never), and the running maximum of that over the values before it.
    let mut by_return: Vec<(usize, usize, u32)> = enqueue_of
        .iter()
        .filter_map(|(&value, &enqueue)| {
            let enqueue_return = calls[enqueue].return_position?;
            let dequeue_began =
                dequeue_of.get(&value).map_or(OPEN, |&dequeue| calls[dequeue].invoke_position);
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
    for (&value, &dequeue) in dequeue_of {
        let enqueue = enqueue_of[&value];
        let Some((dequeue_began, earlier)) = latest_enqueued_before(calls[enqueue].invoke_position)
        else {
            continue;
        };
        let dequeue_return = calls[dequeue].return_position.expect("qualifying dequeues are ok");
        if dequeue_began > dequeue_return {
            let earlier_enqueue = enqueue_of[&earlier];
            let (description, mut violation_calls) = match dequeue_of.get(&earlier) {
                Some(&earlier_dequeue) => (
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
            let mut violation_calls = vec![enqueue_of[&present], empty];
            let description = match dequeue_of.get(&present) {
                Some(&dequeue) => {
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
