//! The usage store (leaderless, Dynamo-style): its workload (usage shippers, readers, the
//! convergence monitor) and its checkers (no double count, no acknowledged loss, convergence,
//! read-your-writes, staleness, availability).

pub mod check;
pub mod workload;
