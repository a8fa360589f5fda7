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
pub mod billing;
pub mod history;
pub mod http;
pub mod node;
pub mod queue;
pub mod replica;
pub mod resize;
pub mod seams;
pub mod store;
pub mod usage;
pub mod worker;

use std::future::Future;
use std::pin::Pin;

/// A node's program: what runs on it for as long as it lives.
pub type Program = Pin<Box<dyn Future<Output = ()> + Send>>;

/// The roles [`serve_role`] knows.
pub const ROLES: [&str; 7] = [
    queue::ROLE,
    auth::ROLE,
    api::ROLE,
    worker::ROLE,
    store::ROLE,
    billing::ROLE,
    billing::archive::ROLE,
];

/// The program of a service role (`queue`, `auth`, `api`, `worker`, `store`,
/// `billing`, `archive`), or `None` for a role
/// the service does not have. The simulator and a real node both start nodes through here.
pub fn serve_role(context: node::NodeContext) -> Option<Program> {
    Some(match context.role.as_str() {
        queue::ROLE => Box::pin(queue::serve(context)),
        auth::ROLE => Box::pin(auth::serve(context)),
        api::ROLE => Box::pin(api::serve(context)),
        worker::ROLE => Box::pin(worker::serve(context)),
        store::ROLE => Box::pin(store::serve(context)),
        billing::ROLE => Box::pin(billing::serve(context)),
        billing::archive::ROLE => Box::pin(billing::archive::serve(context)),
        _ => return None,
    })
}
