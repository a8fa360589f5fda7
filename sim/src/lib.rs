//! pessimist-sim: the simulated world, its faults, the history's checkers.
//!
//! - [`fault`]: faults and fault plans as data, and swarm generation from a seed;
//! - [`nemesis`]: the network state that a set of active faults makes (pure);
//! - [`fault_effect`]: what a fault did, from the seams' counters (pure);
//! - [`coverage`]: whether the faults bit (`faults_bite`) and which situations the scenario
//!   must reach were reached (`must_happen`);
//! - [`world`]: the cluster on madsim and the injection of faults (simulation build only);
//! - [`run`]: one seed of a scenario, from world to verdicts (simulation build only);
//! - [`scenario`]: the scenario description and its validation;
//! - [`check`]: verdicts and their statuses, the operations of a history, phase names;
//! - [`raft_check`]: Raft safety, for every replicated group (the queue's, the auth plane's);
//! - one folder per service under test, each with its `workload` (the clients that drive it
//!   and record the history) and its `check` (the checkers, pure functions from a history to
//!   a verdict): [`queue`] (the replicated job queue), [`service`] (the whole request path
//!   over HTTP, with the thumbnails oracle), [`store`] (the usage store), [`usage`] (usage
//!   counting and billing), [`probe`] (the seam probe, a small durable-log service used as a
//!   test instrument);
//! - [`variant`]: design variants of a scenario's knobs, for side-by-side comparison;
//! - [`lincheck`]: the linearizability checker (Wing-Gong/Lowe search, P-compositional, and a
//!   decision procedure for queues of distinct values);
//! - [`summary`]: what a seed and a run report.
//!
//! **Invariant:** the simulator reaches the service only through `pessimist_core`'s node
//! context and seams; checkers see only the history.

pub mod check;
pub mod coverage;
pub mod fault;
pub mod fault_effect;
pub mod lincheck;
pub mod nemesis;
pub mod probe;
pub mod queue;
pub mod raft_check;
#[cfg(madsim)]
pub mod run;
pub mod scenario;
pub mod service;
pub mod store;
pub mod summary;
pub mod usage;
pub mod variant;
#[cfg(madsim)]
pub mod world;
