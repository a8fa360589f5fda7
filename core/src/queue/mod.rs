//! The replicated job queue: its state machine, applied identically on every Raft replica.

pub mod machine;
