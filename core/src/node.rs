//! What a node of the service is given when it starts: its name and role, the cluster's
//! address book, and its four seams. The simulator builds one per incarnation of a simulated
//! node; the real build builds one per OS process.
//!
//! **Invariant:** a node's service code reaches the world only through the fields here.

use std::collections::BTreeMap;

use serde::de::DeserializeOwned;

use crate::history::Recorder;
use crate::seams::clock::Clock;
use crate::seams::disk::{Disk, DiskError};
use crate::seams::net::{AddressBook, Inbox, LinkFaults, Message, Transport, TransportOptions};
use crate::seams::rng::{rng_for, SeededRng};

/// Everything a node's program needs to run.
#[derive(Clone, Debug)]
pub struct NodeContext {
    /// The node's name, unique in the cluster (`queue-1`).
    pub name: String,
    /// What the node does (`queue`, `api`, `worker`, `probe`...).
    pub role: String,
    pub book: AddressBook,
    /// Every server node of the cluster as configured, name to role (`queue-2` → `queue`):
    /// how a node finds its peers.
    pub cluster: BTreeMap<String, String>,
    pub disk: Disk,
    pub clock: Clock,
    /// The link fault table the node's transport consults (empty in the real build).
    pub link_faults: LinkFaults,
    pub recorder: Recorder,
    /// The run's seed (a configured value in the real build).
    pub run_seed: u64,
    /// How many times this node has started before: 0 on first boot.
    pub incarnation: u64,
    /// The scenario's design knobs, for the service to read its settings from.
    pub knobs: serde_json::Value,
}

impl NodeContext {
    /// The names of the cluster's nodes with `role`, in name order.
    pub fn peers(&self, role: &str) -> Vec<String> {
        self.cluster.iter().filter(|(_, r)| r.as_str() == role).map(|(n, _)| n.clone()).collect()
    }

    /// The node's transport, listening at its address, with the default options, the node's
    /// link faults and its `transport` RNG: how every server role opens its inbox.
    pub async fn bind<M: Message>(&self) -> Result<(Transport<M>, Inbox<M>), String> {
        Transport::bind(
            &self.name,
            self.book.clone(),
            TransportOptions::default(),
            self.link_faults.clone(),
            self.rng("transport"),
        )
        .await
        .map_err(|error| format!("bind: {error}"))
    }

    /// An RNG for one component of this incarnation of the node. A restarted node draws fresh
    /// numbers, as a rebooted machine would, and replays exactly under the same seed.
    pub fn rng(&self, component: &str) -> SeededRng {
        rng_for(self.run_seed, &format!("node/{}/{}/{component}", self.name, self.incarnation))
    }
}

/// A service's settings, read from one design knob of the scenario (`knobs.<KNOB>`): absent,
/// the defaults; present, every field named is checked.
pub trait KnobSettings: DeserializeOwned + Default {
    /// The knob's name (`queue`, `auth`, `api`, `worker`).
    const KNOB: &'static str;

    /// Checks the settings; the error names the field and what is wrong with it.
    fn validate(&self) -> Result<(), (String, String)>;

    /// The settings under `knobs.<KNOB>`, or the defaults when absent; the error names the
    /// field.
    fn from_knobs(knobs: &serde_json::Value) -> Result<Self, (String, String)> {
        let settings: Self = match knobs.get(Self::KNOB) {
            None => Self::default(),
            Some(value) => serde_json::from_value(value.clone())
                .map_err(|error| (String::new(), error.to_string()))?,
        };
        settings.validate()?;
        Ok(settings)
    }

    /// [`KnobSettings::from_knobs`] with the error as one line: `field: message`.
    fn from_knobs_line(knobs: &serde_json::Value) -> Result<Self, String> {
        Self::from_knobs(knobs).map_err(|(field, message)| match field.is_empty() {
            true => message,
            false => format!("{field}: {message}"),
        })
    }
}

/// How the message of a process exit modelled as a panic starts, so a runner can keep such
/// expected panics out of its output.
pub const EXIT_PANIC_PREFIX: &str = "process exited";

/// Ends the node's process now, as a crash would: in the simulation a panic, which kills the
/// node (all its tasks and sockets) and restarts it after a while, as a supervisor would; in
/// the real build an abort, after which the cluster's supervisor restarts the process.
pub fn exit_process(why: &str) -> ! {
    #[cfg(madsim)]
    panic!("{EXIT_PANIC_PREFIX}: {why}");
    #[cfg(not(madsim))]
    {
        eprintln!("{EXIT_PANIC_PREFIX}: {why}");
        std::process::abort()
    }
}

/// What every durable component does when a write or an fsync of its log fails: it records
/// `disk_write_failed` and exits, so that it restarts and recovers from what the disk really
/// holds. After a failed fsync the page cache may have dropped the writes it covered while a
/// retry reports success (Linux's "fsyncgate"); carrying on would acknowledge what is not
/// durable. Any other error (a corrupt record, a bad name) is returned to the caller.
pub fn exit_on_write_failure(recorder: &Recorder, error: &DiskError) {
    if error.is_write_failure() {
        recorder.record("disk_write_failed", serde_json::json!({ "error": error.to_string() }));
        exit_process(&format!("disk: {error}"));
    }
}
