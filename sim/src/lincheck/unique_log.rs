//! A decision procedure for `kv` histories that use a key as an append-only log of distinct
//! tokens, as the probe's nodes do: O(n log n) instead of the general search's exponential
//! worst case, which crash-heavy histories (many appends of unknown outcome) reach.
//!
//! Role: answer [`Decision::Linearizable`] or [`Decision::Violation`], both proofs, for one
//! key's calls; [`Decision::Undecided`] when they do not qualify, so the caller falls back to
//! the general search. It agrees with the search on every history that qualifies.
//!
//! Which calls qualify: the key starts empty, nobody `put`s, every append's piece is one
//! *token* (non-empty, ending with the [`DELIMITER`], which occurs nowhere else in it), and no
//! two appends append the same token. Then a `get` reads a sequence of tokens, each naming
//! the one append that wrote it.
//!
//! Why it is exact: in any legal order the log only grows, so every `get` reads a prefix of
//! the longest sequence read, `L`, and the order is forced up to calls that commute:
//! gets that read nothing, the append of `L[0]`, gets that read one token, the append of
//! `L[1]`, ..., gets that read all of `L`, then the appends nobody read that surely happened
//! (`ok`), in any order. Appends of unknown outcome that nobody read are left out: they may
//! never have taken effect. Inside a group calls commute, and ordered by their returns they
//! respect real time; so a linearization exists if and only if no call of a later group
//! returned before a call of an earlier group began. The violations:
//! - *fresh*: a get read a token no call appended, or one no earlier append could have
//!   written yet (caught as an order violation);
//! - *diverge*: two gets read sequences neither of which is a prefix of the other (or a get
//!   read a token twice);
//! - *order*: a call of a later group returned before a call of an earlier group began: a
//!   get missed an append that had returned before it began, or saw one that began after it
//!   returned, or two appends landed in the log against their real-time order.
//!
//! Invariants: every violation names calls of the history that form it; positions only, no
//! clock.

use std::collections::{BTreeMap, BTreeSet};

use super::model::{KvInput, KvOutput};
use super::search::SearchCall;
use super::unique_queue::{Decision, Violation};

/// The byte that ends every token of a qualifying log.
pub(crate) const DELIMITER: u8 = b',';

/// Returned by an `info` call: the end of the history.
const OPEN: usize = usize::MAX;

/// Splits a log's text into its tokens; `None` if it does not end with the delimiter.
fn tokens(text: &[u8]) -> Option<Vec<&[u8]>> {
    if text.is_empty() {
        return Some(Vec::new());
    }
    if *text.last()? != DELIMITER {
        return None;
    }
    Some(text.split_inclusive(|&byte| byte == DELIMITER).collect())
}

/// Decides one key's `calls` from the empty string; `text` gives an interned string's bytes.
pub(crate) fn decide(
    calls: &[SearchCall<KvInput, KvOutput>],
    text: impl Fn(u32) -> Vec<u8>,
) -> Decision {
    let returned = |index: usize| calls[index].return_position.unwrap_or(OPEN);
    // Qualify first: a violation found among calls that do not qualify would prove nothing.
    let mut append_of: BTreeMap<Vec<u8>, usize> = BTreeMap::new();
    let mut gets: Vec<(usize, Vec<u8>)> = Vec::new();
    for (index, call) in calls.iter().enumerate() {
        match (call.input, call.output) {
            (KvInput::Put(_), _) => return Decision::Undecided,
            (KvInput::Append(piece), _) => {
                let piece = text(piece);
                let one_token = tokens(&piece).is_some_and(|found| found.len() == 1);
                if !one_token || append_of.insert(piece, index).is_some() {
                    return Decision::Undecided;
                }
            }
            (KvInput::Get, Some(KvOutput::Got(read))) => {
                let read = text(read);
                if tokens(&read).is_none() {
                    return Decision::Undecided;
                }
                gets.push((index, read));
            }
            // An unfinished get was dropped by the caller; a get never answers Done.
            (KvInput::Get, _) => return Decision::Undecided,
        }
    }
    // Every get reads a prefix of the longest read, each token appended once.
    gets.sort_by_key(|(index, read)| (read.len(), *index));
    let longest: Vec<&[u8]> = gets.last().and_then(|(_, read)| tokens(read)).unwrap_or_default();
    // The get that read the longest log (any index when there is none: it is never named).
    let reader = gets.last().map_or(0, |(index, _)| *index);
    let mut seen: BTreeMap<&[u8], usize> = BTreeMap::new();
    for (position, token) in longest.iter().enumerate() {
        if !append_of.contains_key(*token) {
            return Decision::Violation(Violation {
                kind: "fresh",
                description: format!(
                    "{{0}} read {:?}, which no call appended",
                    String::from_utf8_lossy(token)
                ),
                calls: vec![reader],
                end_position: returned(reader),
            });
        }
        if let Some(first) = seen.insert(token, position) {
            return Decision::Violation(Violation {
                kind: "diverge",
                description: format!(
                    "{{0}} read {:?} twice, at tokens {first} and {position}",
                    String::from_utf8_lossy(token)
                ),
                calls: vec![reader],
                end_position: returned(reader),
            });
        }
    }
    let longest_text = gets.last().map(|(_, read)| read.as_slice()).unwrap_or_default();
    for (index, read) in &gets {
        if !longest_text.starts_with(read) {
            return Decision::Violation(Violation {
                kind: "diverge",
                description: "{0} and {1} read logs neither of which extends the other".to_string(),
                calls: vec![*index, reader],
                end_position: returned(*index).max(returned(reader)),
            });
        }
    }
    // The forced order, as groups of calls that commute.
    let mut groups: Vec<Vec<usize>> = vec![Vec::new(); 2 * longest.len() + 2];
    for (index, read) in &gets {
        let count = tokens(read).map_or(0, |found| found.len());
        groups[2 * count].push(*index);
    }
    for (position, token) in longest.iter().enumerate() {
        groups[2 * position + 1].push(append_of[*token]);
    }
    let read_tokens: BTreeSet<&[u8]> = longest.iter().copied().collect();
    let last = groups.len() - 1;
    for (token, &index) in &append_of {
        // Unread appends that surely happened come last; unread unknown ones may never have.
        if !read_tokens.contains(token.as_slice()) && calls[index].return_position.is_some() {
            groups[last].push(index);
        }
    }
    // The prefix an order violation needs: each call's completion (a get's read places it, an
    // append's `ok` says it happened), and the longest read, which orders the appends.
    let settled = |index: usize| match calls[index].return_position {
        Some(position) => position,
        None => calls[index].invoke_position,
    };
    let longest_read_return = if gets.is_empty() { 0 } else { returned(reader) };
    // One sweep: no call of a later group returned before a call of an earlier group began.
    let mut began_latest: Option<usize> = None;
    for group in &groups {
        if let Some(earlier) = began_latest {
            let earlier_invoke = calls[earlier].invoke_position;
            if let Some(&later) = group.iter().find(|&&index| returned(index) < earlier_invoke) {
                return Decision::Violation(Violation {
                    kind: "order",
                    description: "{0} must come after {1} in the log's order, but returned \
                                  before {1} began"
                        .to_string(),
                    calls: vec![later, earlier],
                    end_position: [returned(later), settled(earlier), longest_read_return]
                        .into_iter()
                        .max()
                        .unwrap_or(earlier_invoke),
                });
            }
        }
        for &index in group {
            if began_latest
                .is_none_or(|latest| calls[index].invoke_position > calls[latest].invoke_position)
            {
                began_latest = Some(index);
            }
        }
    }
    Decision::Linearizable
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Calls on one key from (f, token or read, invoke position, return position): `a` appends,
    /// `g` gets; a return of `None` is an unknown outcome.
    fn calls(
        spec: &[(&str, &str, usize, Option<usize>)],
    ) -> (Vec<SearchCall<KvInput, KvOutput>>, Vec<String>) {
        let mut strings = vec![String::new()];
        let mut id = |text: &str| {
            let position = strings.iter().position(|known| known == text);
            position.unwrap_or_else(|| {
                strings.push(text.to_string());
                strings.len() - 1
            }) as u32
        };
        let calls = spec
            .iter()
            .map(|&(f, value, invoke_position, return_position)| {
                let (input, output) = match f {
                    "a" => (KvInput::Append(id(value)), return_position.map(|_| KvOutput::Done)),
                    "p" => (KvInput::Put(id(value)), return_position.map(|_| KvOutput::Done)),
                    _ => (KvInput::Get, Some(KvOutput::Got(id(value)))),
                };
                SearchCall { invoke_position, return_position, input, output }
            })
            .collect();
        (calls, strings)
    }

    fn decide_spec(spec: &[(&str, &str, usize, Option<usize>)]) -> Decision {
        let (calls, strings) = calls(spec);
        decide(&calls, |id| strings[id as usize].clone().into_bytes())
    }

    fn kind(decision: &Decision) -> &str {
        match decision {
            Decision::Linearizable => "linearizable",
            Decision::Undecided => "undecided",
            Decision::Violation(violation) => violation.kind,
        }
    }

    #[test]
    fn a_growing_log_with_unknown_appends_is_linearizable() {
        let decision = decide_spec(&[
            ("a", "1,", 0, Some(1)),
            ("g", "1,", 2, Some(3)),
            // Unknown outcome, read later: it took effect.
            ("a", "2,", 4, None),
            // Unknown outcome, never read: it may never have.
            ("a", "3,", 5, None),
            ("g", "1,", 6, Some(7)),
            ("g", "1,2,", 8, Some(9)),
            // Concurrent with the read that does not see it: fine.
            ("a", "4,", 10, Some(13)),
            ("g", "1,2,", 11, Some(12)),
        ]);
        assert_eq!(kind(&decision), "linearizable", "{decision:?}");
    }

    #[test]
    fn a_get_that_misses_a_returned_append_is_an_order_violation() {
        let decision = decide_spec(&[
            ("a", "1,", 0, Some(1)),
            ("a", "2,", 2, Some(3)),
            ("g", "1,", 4, Some(5)),
        ]);
        assert_eq!(kind(&decision), "order", "{decision:?}");
        let decision = decide_spec(&[("a", "1,", 0, Some(1)), ("g", "", 2, Some(3))]);
        assert_eq!(kind(&decision), "order", "{decision:?}");
    }

    #[test]
    fn a_get_that_sees_the_future_or_a_log_out_of_order_fails() {
        // Read before the append began.
        let decision = decide_spec(&[("g", "1,", 0, Some(1)), ("a", "1,", 2, Some(3))]);
        assert_eq!(kind(&decision), "order", "{decision:?}");
        // Appended 1 then 2 in real time, read 2 before 1.
        let decision = decide_spec(&[
            ("a", "1,", 0, Some(1)),
            ("a", "2,", 2, Some(3)),
            ("g", "2,1,", 4, Some(5)),
        ]);
        assert_eq!(kind(&decision), "order", "{decision:?}");
    }

    #[test]
    fn diverging_reads_fresh_tokens_and_repeats_fail() {
        let decision = decide_spec(&[
            ("a", "1,", 0, None),
            ("a", "2,", 0, None),
            ("g", "1,", 1, Some(2)),
            ("g", "2,", 3, Some(4)),
        ]);
        assert_eq!(kind(&decision), "diverge", "{decision:?}");
        let decision = decide_spec(&[("g", "9,", 0, Some(1))]);
        assert_eq!(kind(&decision), "fresh", "{decision:?}");
        let decision = decide_spec(&[("a", "1,", 0, Some(1)), ("g", "1,1,", 2, Some(3))]);
        assert_eq!(kind(&decision), "diverge", "{decision:?}");
    }

    #[test]
    fn puts_repeated_tokens_and_free_text_go_to_the_search() {
        assert_eq!(kind(&decide_spec(&[("p", "1,", 0, Some(1))])), "undecided");
        let repeated = [("a", "1,", 0, Some(1)), ("a", "1,", 2, Some(3))];
        assert_eq!(kind(&decide_spec(&repeated)), "undecided");
        assert_eq!(kind(&decide_spec(&[("a", "x", 0, Some(1))])), "undecided");
        assert_eq!(kind(&decide_spec(&[("a", "1,2,", 0, Some(1))])), "undecided");
    }
}
