//! The replicated job queue under test: its workload (producers, workers, the drain) and its
//! checkers (durability, fencing, FIFO order, linearizability, liveness, ...). Raft safety,
//! which the queue shares with the auth plane, is in [`crate::raft_check`].

pub mod check;
#[cfg(test)]
pub(crate) mod test_history;
pub mod workload;
