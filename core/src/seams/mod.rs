//! The seams: the only doors between the service and the outside world.
//!
//! Each seam has a real implementation (tokio TCP, files with `fsync`, the system clock, an
//! OS-seeded RNG is never used: even the real build seeds from a configured value) and a
//! simulated one whose faults the simulator's nemesis drives through a control handle.

pub mod clock;
pub mod disk;
pub mod net;
pub mod rng;
