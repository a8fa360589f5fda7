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
    /// How long one command may take in all, tries and backoff included: a client on a
    /// request path answers within it. `None`: bounded by the tries alone.
    pub budget: Option<Duration>,
}

impl Default for ClientOptions {
    fn default() -> Self {
        ClientOptions {
            attempt_timeout: Duration::from_millis(1000),
            attempts: 6,
            backoff_min: Duration::from_millis(20),
            backoff_max: Duration::from_millis(500),
            budget: None,
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
        let deadline = self.options.budget.map(|budget| self.clock.deadline_in(budget));
        let left = || deadline.map(|deadline| deadline.left());
        // One message for every try: the transport encodes it without taking it.
        let message = ReplicaMessage::Submit(command);
        for _ in 0..self.options.attempts {
            let target = match &self.leader {
                Some(leader) => leader.clone(),
                None => self.nodes[self.rng.random_range(0..self.nodes.len())].clone(),
            };
            let timeout = left().map_or(self.options.attempt_timeout, |left| {
                left.min(self.options.attempt_timeout)
            });
            let call = self.transport.call(&target, &message, timeout);
            // A try's timeout counts from its written request; the budget also covers the
            // connect before it.
            let outcome = match left() {
                None => call.await,
                Some(left) => tokio::time::timeout(left, call).await.unwrap_or_else(|_| {
                    let after_ms = left.as_millis() as u64;
                    Err(NetError::Timeout { peer: target.clone(), after_ms })
                }),
            };
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
            let left = left();
            if left.is_some_and(|left| left.is_zero()) {
                let budget_ms = self.options.budget.unwrap_or_default().as_millis();
                last_error = format!("{last_error}; its budget of {budget_ms} ms is spent");
                break;
            }
            self.backoff(failures, left).await;
        }
        if uncertain > 0 {
            Err(ClientError::Unknown { reason: last_error, uncertain_tries: uncertain })
        } else {
            Err(ClientError::Refused(last_error))
        }
    }

    /// Waits before the next try; never longer than `left` of the budget.
    async fn backoff(&mut self, failures: u32, left: Option<Duration>) {
        let (min, max) = (self.options.backoff_min, self.options.backoff_max);
        let ceiling = min.saturating_mul(1 << failures.min(16)).min(max).max(min);
        let wait = self.rng.random_range(min.as_micros() as u64..=ceiling.as_micros() as u64);
        let wait = left.map_or(wait, |left| wait.min(left.as_micros() as u64));
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

#[cfg(all(test, madsim))]
mod tests {
    use std::net::{IpAddr, Ipv4Addr, SocketAddr};

    use super::*;
    use crate::auth::machine::{AuthMachine, Command};
    use crate::seams::net::{AddressBook, LinkFaults, TransportOptions};
    use crate::seams::rng::rng_for;

    /// A client of a one-node group whose node takes requests and never answers, with tries
    /// of 1 s and `budget`; returns how long a command took and how it ended.
    async fn against_a_silent_node(budget: Option<Duration>) -> (Duration, ClientError) {
        let address = SocketAddr::new(IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1)), 7000);
        let book = AddressBook::new([("silent".to_string(), address)].into());
        let handle = madsim::runtime::Handle::current();
        let node = handle.create_node().name("silent").ip(address.ip()).build();
        let silent_book = book.clone();
        node.spawn(async move {
            let options = TransportOptions::default();
            let faults = LinkFaults::default();
            let bound = Transport::<ReplicaMessage<Command, <AuthMachine as StateMachine>::Response>>::bind(
                "silent",
                silent_book,
                options,
                faults,
                rng_for(1, "silent"),
            )
            .await;
            let (_transport, _inbox) = bound.expect("binds");
            // Holds the inbox without reading it: every request waits for its timeout.
            std::future::pending::<()>().await;
        });
        let client_node = handle.create_node().name("client").ip([10, 0, 0, 2].into()).build();
        client_node
            .spawn(async move {
                tokio::time::sleep(Duration::from_millis(10)).await;
                let (transport, _) = Transport::unbound(
                    "client",
                    book,
                    TransportOptions::default(),
                    LinkFaults::default(),
                    rng_for(1, "client"),
                );
                let options = ClientOptions {
                    attempt_timeout: Duration::from_millis(1000),
                    attempts: 3,
                    backoff_min: Duration::from_millis(10),
                    backoff_max: Duration::from_millis(100),
                    budget,
                };
                let (clock, _) = Clock::simulated();
                let mut client = Client::<AuthMachine>::new(
                    transport,
                    vec!["silent".to_string()],
                    clock,
                    rng_for(1, "client/rng"),
                    options,
                );
                let started = tokio::time::Instant::now();
                let command = Command::Lookup { secret_hash: "h".into() };
                let error = client.submit(command).await.expect_err("nobody answers");
                (started.elapsed(), error)
            })
            .await
            .expect("the client task ends")
    }

    #[madsim::test]
    async fn a_budget_bounds_a_command_tries_and_backoff_included() {
        let (took, error) = against_a_silent_node(Some(Duration::from_millis(1000))).await;
        // Within the budget, up to the simulated timer's resolution.
        assert!(took <= Duration::from_millis(1001), "took {took:?}");
        assert!(took >= Duration::from_millis(990), "the one try waited its timeout: {took:?}");
        let ClientError::Unknown { reason, uncertain_tries } = error else {
            panic!("a timed-out try may have arrived: {error:?}");
        };
        assert_eq!(uncertain_tries, 1, "{reason}");
        assert!(reason.contains("budget of 1000 ms is spent"), "{reason}");
    }

    #[madsim::test]
    async fn without_a_budget_every_try_waits_its_timeout() {
        let (took, error) = against_a_silent_node(None).await;
        assert!(took >= Duration::from_millis(3000), "took {took:?}");
        assert!(matches!(error, ClientError::Unknown { uncertain_tries: 3, .. }), "{error:?}");
    }
}
