//! pessimist-core: the service under test and the I/O seams where faults enter.
//!
//! The service code is ordinary async Rust over `madsim-tokio` (renamed `tokio`). Built with
//! `--cfg madsim` it runs inside the simulator; built without, the same code runs on real
//! tokio, real sockets and real files.
//!
//! **Invariant:** service code touches the outside world only through [`seams`]: the network
//! ([`seams::net`]), the disk ([`seams::disk`]), the clock ([`seams::clock`]) and randomness
//! ([`seams::rng`]). Faults are injected there and nowhere else; there is no `if sim` branch in
//! service logic. `core` never depends on `sim`, `scenarios` or `reports`.

pub mod api;
pub mod auth;
pub mod history;
pub mod http;
pub mod node;
pub mod queue;
pub mod replica;
pub mod resize;
pub mod seams;
pub mod store;
pub mod worker;
