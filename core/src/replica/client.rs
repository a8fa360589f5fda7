//! The client of a replicated group (the queue for API servers and workers, the auth plane for
//! API servers): finds the leader, follows redirects, retries with backoff, and says honestly
//! whether a failed command may have happened.
//!
//! A command sent to a node that is not the leader comes back as a redirect (tried at once on
//! the named leader) or a refusal (tried again on another node after a backoff). A command
//! whose request timed out, whose connection broke, or whose leader lost its leadership
//! before applying it *may* have happened: the client retries it, and if it runs out of tries
//! it reports [`ClientError::Unknown`], never [`ClientError::Refused`]. Commands are retried,
//! so a group's commands must be safe to apply twice: the queue's enqueues carry an
//! idempotency key and its leases a worker's request number, so the retry finds the first
//! try's job or lease instead of making a second one.

use std::marker::PhantomData;
use std::time::Duration;

use rand::Rng;

use super::{Answer, ReplicaMessage, StateMachine};
use crate::seams::clock::Clock;
use crate::seams::net::{NetError, Transport};
use crate::seams::rng::SeededRng;

/// How hard a client tries.
#[derive(Clone, Debug, PartialEq)]
pub struct ClientOptions {
    /// How long one request waits for its answer.
    pub attempt_timeout: Duration,
    /// Requests per command, redirects included.
    pub attempts: u32,
    pub backoff_min: Duration,
    pub backoff_max: Duration,
}

impl Default for ClientOptions {
    fn default() -> Self {
        ClientOptions {
            attempt_timeout: Duration::from_millis(1000),
            attempts: 6,
            backoff_min: Duration::from_millis(20),
            backoff_max: Duration::from_millis(500),
        }
    }
}

/// Why a command has no answer.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ClientError {
    /// No try reached a point where the command could have taken effect.
    #[error("refused: {0}")]
    Refused(String),
    /// Some try may have taken effect; nobody knows. `uncertain_tries` counts the tries that
    /// may have (with a lease, each may have leased a job whose lease then ran out).
    #[error("unknown after {uncertain_tries} uncertain tries: {reason}")]
    Unknown { reason: String, uncertain_tries: u32 },
}

/// A command's answer, and how many earlier tries may also have taken effect (then a
/// rejection, such as an ack refused as `AlreadyDone`, may be the echo of an earlier try).
#[derive(Clone, Debug, PartialEq)]
pub struct Reply<R> {
    pub response: R,
    pub uncertain_tries: u32,
}

/// A client of a group replicating `M`. Not shared: one per task.
pub struct Client<M: StateMachine> {
    transport: Transport<ReplicaMessage<M::Command, M::Response>>,
    nodes: Vec<String>,
    leader: Option<String>,
    clock: Clock,
    rng: SeededRng,
    options: ClientOptions,
    _machine: PhantomData<fn() -> M>,
}

impl<M: StateMachine> Client<M> {
    /// A client of the group's `nodes` over `transport`.
    pub fn new(
        transport: Transport<ReplicaMessage<M::Command, M::Response>>,
        nodes: Vec<String>,
        clock: Clock,
        rng: SeededRng,
        options: ClientOptions,
    ) -> Client<M> {
        assert!(!nodes.is_empty(), "a client needs the group's nodes");
        Client { transport, nodes, leader: None, clock, rng, options, _machine: PhantomData }
    }

    /// The leader this client believes in.
    pub fn leader(&self) -> Option<&str> {
        self.leader.as_deref()
    }

    /// Submits `command` until a node applies it or the tries run out.
    pub async fn submit(&mut self, command: M::Command) -> Result<Reply<M::Response>, ClientError> {
        let mut uncertain = 0u32;
        let mut last_error = String::from("no try made");
        let mut failures = 0u32;
        for _ in 0..self.options.attempts {
            let target = match &self.leader {
                Some(leader) => leader.clone(),
                None => self.nodes[self.rng.random_range(0..self.nodes.len())].clone(),
            };
            let message = ReplicaMessage::Submit(command.clone());
            let outcome = self.transport.call(&target, message, self.options.attempt_timeout).await;
            match outcome {
                Ok(ReplicaMessage::Answer(Answer::Done(response))) => {
                    self.leader = Some(target);
                    return Ok(Reply { response, uncertain_tries: uncertain });
                }
                Ok(ReplicaMessage::Answer(Answer::NotLeader { leader: Some(leader) }))
                    if leader != target =>
                {
                    last_error = format!("{target} redirected to {leader}");
                    self.leader = Some(leader);
                    continue; // A redirect costs no backoff.
                }
                Ok(ReplicaMessage::Answer(Answer::NotLeader { .. })) => {
                    last_error = format!("{target} knows no leader");
                    self.leader = None;
                }
                Ok(ReplicaMessage::Answer(Answer::Busy { reason })) => {
                    last_error = format!("{target} refused: {reason}");
                }
                Ok(ReplicaMessage::Answer(Answer::Uncertain { reason })) => {
                    uncertain += 1;
                    last_error = format!("{target}: {reason}");
                    self.leader = None;
                }
                Ok(other) => {
                    uncertain += 1;
                    last_error = format!("{target} answered {other:?}");
                    self.leader = None;
                }
                Err(error) => {
                    uncertain += u32::from(may_have_arrived(&error));
                    last_error = error.to_string();
                    self.leader = None;
                }
            }
            failures += 1;
            self.backoff(failures).await;
        }
        if uncertain > 0 {
            Err(ClientError::Unknown { reason: last_error, uncertain_tries: uncertain })
        } else {
            Err(ClientError::Refused(last_error))
        }
    }

    async fn backoff(&mut self, failures: u32) {
        let (min, max) = (self.options.backoff_min, self.options.backoff_max);
        let ceiling = min.saturating_mul(1 << failures.min(16)).min(max).max(min);
        let wait = self.rng.random_range(min.as_micros() as u64..=ceiling.as_micros() as u64);
        self.clock.sleep(Duration::from_micros(wait)).await;
    }
}

/// Whether a request that failed with `error` may have reached its node.
fn may_have_arrived(error: &NetError) -> bool {
    match error {
        NetError::Timeout { .. } | NetError::ConnectionLost { .. } => true,
        NetError::UnknownPeer(_) | NetError::Unreachable { .. } | NetError::Encode(_) => false,
    }
}
