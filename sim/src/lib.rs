//! pessimist-sim: the simulated world, its faults, the history's checkers.
//!
//! - [`fault`]: faults and fault plans as data, and swarm generation from a seed;
//! - [`nemesis`]: the network state that a set of active faults makes (pure);
//! - [`world`]: the cluster on madsim and the injection of faults (simulation build only);
//! - [`run`]: one seed of a scenario, from world to verdicts (simulation build only);
//! - [`scenario`]: the scenario description and its validation;
//! - [`probe`]: the seam probe, a small durable-log service used as a test instrument;
//! - [`queue_workload`]: producers, workers and the drain of the replicated job queue;
//! - [`check`]: checkers, pure functions from a history to a verdict;
//! - [`queue_check`]: the job queue's checkers (Raft safety, durability, FIFO order, ...);
//! - [`thumbnail_oracle`]: the thumbnails oracle's reference (`image`'s decode and resize)
//!   and the thumbnail signature the service's pollers record;
//! - [`store_workload`]: usage shippers, readers and the convergence monitor of the usage store;
//! - [`store_check`]: the usage store's checkers (no double count, no acknowledged loss,
//!   convergence, read-your-writes, staleness, availability);
//! - [`variant`]: design variants of a scenario's knobs, for side-by-side comparison;
//! - [`lincheck`]: the linearizability checker (Wing-Gong/Lowe search, P-compositional).
//!
//! **Invariant:** the simulator reaches the service only through `pessimist_core`'s node
//! context and seams; checkers see only the history.

pub mod check;
pub mod fault;
pub mod lincheck;
pub mod nemesis;
pub mod probe;
pub mod queue_check;
pub mod queue_workload;
#[cfg(madsim)]
pub mod run;
pub mod scenario;
pub mod service_check;
pub mod service_workload;
pub mod store_check;
pub mod store_workload;
pub mod summary;
pub mod thumbnail_oracle;
pub mod usage_check;
pub mod usage_workload;
pub mod variant;
#[cfg(madsim)]
pub mod world;
