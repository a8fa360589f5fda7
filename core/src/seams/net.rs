//! Network seam: framed, typed messages between named nodes over TCP.
//!
//! Each message is encoded with postcard (a maintained serde codec) and framed with a length
//! prefix by `tokio_util`'s `LengthDelimitedCodec`, over `tokio::net::TcpStream`. Under
//! `--cfg madsim` that stream is madsim's simulated TCP, so partitions, packet loss and
//! latency set on madsim's `NetSim` apply; built without it, the same code runs on real
//! sockets.
//!
//! madsim can only clog nodes and links and set one global loss rate and latency range. What
//! it lacks, per-link delay, duplication, reordering and dropped frames, is injected here, on
//! the sending side, by the rules of a shared [`LinkFaults`] table the nemesis writes.
//!
//! Delivery: [`Transport::send`] is one-way and best effort; [`Transport::call`] sends a request
//! and waits for the reply with a timeout. Connections are opened on first use, kept, and
//! reopened after a failure with exponential backoff. Every failure is a typed [`NetError`]:
//! a dead or unreachable peer is an error to handle, never a panic.
//!
//! **Invariant:** a frame is written and flushed whole under the connection's writer lock, so
//! frames never interleave on a stream (an unflushed write would also stall the simulation).

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use futures::stream::{self, BoxStream, SelectAll};
use futures::{SinkExt, StreamExt};
use rand::Rng;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use tokio::io::{ReadHalf, WriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, oneshot};
use tokio_util::codec::{FramedRead, FramedWrite, LengthDelimitedCodec};

use super::rng::SeededRng;

/// Largest frame a transport sends or accepts: an image upload plus headroom. A longer frame
/// is a protocol error and closes the connection.
pub const FRAME_BYTES_MAX: usize = 64 << 20;

/// What sending or calling can fail with.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NetError {
    #[error("unknown peer {0:?}: not in the address book")]
    UnknownPeer(String),
    #[error("peer {peer} unreachable: {reason}")]
    Unreachable { peer: String, reason: String },
    #[error("connection to {peer} lost")]
    ConnectionLost { peer: String },
    #[error("no reply from {peer} within {after_ms} ms")]
    Timeout { peer: String, after_ms: u64 },
    #[error("cannot encode message: {0}")]
    Encode(String),
}

/// Where each node listens. Shared by every node of a cluster.
#[derive(Clone, Debug, Default)]
pub struct AddressBook {
    addresses: Arc<BTreeMap<String, SocketAddr>>,
}

impl AddressBook {
    pub fn new(addresses: BTreeMap<String, SocketAddr>) -> AddressBook {
        AddressBook { addresses: Arc::new(addresses) }
    }

    pub fn get(&self, node: &str) -> Option<SocketAddr> {
        self.addresses.get(node).copied()
    }

    /// Node names, sorted.
    pub fn nodes(&self) -> impl Iterator<Item = &str> {
        self.addresses.keys().map(String::as_str)
    }
}

/// Timeouts, backoff and bounds of a transport.
#[derive(Clone, Copy, Debug)]
pub struct TransportOptions {
    pub connect_timeout: Duration,
    pub backoff_min: Duration,
    pub backoff_max: Duration,
}

impl Default for TransportOptions {
    fn default() -> Self {
        TransportOptions {
            connect_timeout: Duration::from_millis(500),
            backoff_min: Duration::from_millis(10),
            backoff_max: Duration::from_secs(1),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Link faults.

/// Faults applied to every frame sent on a link. All zero means a healthy link.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LinkRule {
    /// Extra one-way delay, in milliseconds.
    pub delay_ms: u64,
    /// Extra delay drawn uniformly from `0..=jitter_ms` per frame.
    pub jitter_ms: u64,
    /// Chance that a frame is sent twice.
    pub duplicate_probability: f64,
    /// Chance that a frame is held back up to `reorder_window_ms`, so later frames overtake it.
    pub reorder_probability: f64,
    pub reorder_window_ms: u64,
    /// Chance that a frame is lost (as frames in flight are when a connection resets).
    pub drop_probability: f64,
}

impl LinkRule {
    /// Combines two rules on the same link: delays add up, each chance is the larger one.
    pub fn merge(self, other: LinkRule) -> LinkRule {
        LinkRule {
            delay_ms: self.delay_ms + other.delay_ms,
            jitter_ms: self.jitter_ms + other.jitter_ms,
            duplicate_probability: self.duplicate_probability.max(other.duplicate_probability),
            reorder_probability: self.reorder_probability.max(other.reorder_probability),
            reorder_window_ms: self.reorder_window_ms.max(other.reorder_window_ms),
            drop_probability: self.drop_probability.max(other.drop_probability),
        }
    }

    /// What happens to one frame under this rule.
    pub fn judge(&self, rng: &mut impl Rng) -> Verdict {
        if self.drop_probability > 0.0 && rng.random_bool(self.drop_probability.min(1.0)) {
            return Verdict::Drop;
        }
        let mut after_ms = self.delay_ms;
        if self.jitter_ms > 0 {
            after_ms += rng.random_range(0..=self.jitter_ms);
        }
        if self.reorder_probability > 0.0 && rng.random_bool(self.reorder_probability.min(1.0)) {
            after_ms += rng.random_range(1..=self.reorder_window_ms.max(1));
        }
        let copies = if self.duplicate_probability > 0.0
            && rng.random_bool(self.duplicate_probability.min(1.0))
        {
            2
        } else {
            1
        };
        if after_ms == 0 && copies == 1 {
            Verdict::Pass
        } else {
            Verdict::Deliver { after: Duration::from_millis(after_ms), copies }
        }
    }
}

/// The fate of one frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    Pass,
    Deliver { after: Duration, copies: u8 },
    Drop,
}

/// The table of link rules, shared by every transport of a cluster and written by the nemesis.
#[derive(Clone, Debug, Default)]
pub struct LinkFaults {
    table: Arc<Mutex<LinkFaultTable>>,
    /// Set while any rule exists, so a healthy network costs one atomic load per frame.
    active: Arc<AtomicBool>,
}

#[derive(Debug, Default)]
struct LinkFaultTable {
    every_link: Option<LinkRule>,
    links: BTreeMap<(String, String), LinkRule>,
}

impl LinkFaults {
    /// Sets the rule for frames from `from` to `to` (one direction).
    pub fn set_link(&self, from: &str, to: &str, rule: LinkRule) {
        let mut table = self.table.lock().expect("link faults lock poisoned");
        table.links.insert((from.to_string(), to.to_string()), rule);
        self.active.store(true, Ordering::Release);
    }

    /// Sets a rule for every link.
    pub fn set_every_link(&self, rule: LinkRule) {
        let mut table = self.table.lock().expect("link faults lock poisoned");
        table.every_link = Some(rule);
        self.active.store(true, Ordering::Release);
    }

    /// Removes the rule of one link.
    pub fn clear_link(&self, from: &str, to: &str) {
        let mut table = self.table.lock().expect("link faults lock poisoned");
        table.links.remove(&(from.to_string(), to.to_string()));
        self.active.store(table.every_link.is_some() || !table.links.is_empty(), Ordering::Release);
    }

    /// Removes the every-link rule.
    pub fn clear_every_link(&self) {
        let mut table = self.table.lock().expect("link faults lock poisoned");
        table.every_link = None;
        self.active.store(!table.links.is_empty(), Ordering::Release);
    }

    /// Removes every rule.
    pub fn heal(&self) {
        let mut table = self.table.lock().expect("link faults lock poisoned");
        *table = LinkFaultTable::default();
        self.active.store(false, Ordering::Release);
    }

    /// The rule in force from `from` to `to`, if any.
    pub fn rule(&self, from: &str, to: &str) -> Option<LinkRule> {
        if !self.active.load(Ordering::Acquire) {
            return None;
        }
        let table = self.table.lock().expect("link faults lock poisoned");
        let link = table.links.get(&(from.to_string(), to.to_string())).copied();
        match (table.every_link, link) {
            (Some(every), Some(link)) => Some(every.merge(link)),
            (every, link) => every.or(link),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Frames and connections.

/// What travels in one frame. `Hello` opens every connection and names the sender.
#[derive(Serialize, Deserialize)]
enum Wire<M> {
    Hello { from: String },
    OneWay(M),
    Request { id: u64, body: M },
    Reply { id: u64, body: M },
}

type Writer = FramedWrite<WriteHalf<TcpStream>, LengthDelimitedCodec>;
type Reader = FramedRead<ReadHalf<TcpStream>, LengthDelimitedCodec>;

fn codec() -> LengthDelimitedCodec {
    LengthDelimitedCodec::builder().max_frame_length(FRAME_BYTES_MAX).new_codec()
}

fn encode<M: Serialize>(wire: &Wire<M>) -> Result<Bytes, NetError> {
    postcard::to_stdvec(wire).map(Bytes::from).map_err(|e| NetError::Encode(e.to_string()))
}

/// One TCP connection, either opened by this node or accepted from a peer.
struct Connection {
    /// Unique within the transport: calls remember which connection their reply comes on.
    id: u64,
    peer: String,
    writer: tokio::sync::Mutex<Writer>,
    alive: AtomicBool,
}

impl Connection {
    async fn write(&self, frame: Bytes) -> Result<(), NetError> {
        if !self.alive.load(Ordering::Acquire) {
            return Err(NetError::ConnectionLost { peer: self.peer.clone() });
        }
        let mut writer = self.writer.lock().await;
        if writer.send(frame).await.is_err() {
            self.alive.store(false, Ordering::Release);
            return Err(NetError::ConnectionLost { peer: self.peer.clone() });
        }
        Ok(())
    }
}

/// Per-peer connection state. The open connection sits behind a plain lock so the common
/// case (connected) costs no await; dialing and its backoff sit behind an async lock so one
/// task dials at a time.
#[derive(Default)]
struct PeerSlot {
    open: Mutex<Option<Arc<Connection>>>,
    dialing: tokio::sync::Mutex<Backoff>,
}

#[derive(Default)]
struct Backoff {
    delay: Duration,
    retry_at: Option<tokio::time::Instant>,
}

impl PeerSlot {
    fn open_connection(&self) -> Option<Arc<Connection>> {
        let open = self.open.lock().expect("peer lock poisoned");
        open.as_ref().filter(|connection| connection.alive.load(Ordering::Acquire)).cloned()
    }
}

/// A message received, with the means to answer it when it was a request.
pub struct Incoming<M> {
    pub from: String,
    pub body: M,
    reply_to: Option<(Arc<Connection>, u64)>,
}

impl<M> Incoming<M> {
    /// Whether the sender waits for a reply.
    pub fn wants_reply(&self) -> bool {
        self.reply_to.is_some()
    }
}

impl<M> std::fmt::Debug for Incoming<M> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Incoming").field("from", &self.from).finish_non_exhaustive()
    }
}

/// A frame read from an accepted connection, or `None` when the connection ended.
type ConnectionItem = (Arc<Connection>, Option<BytesMut>);

fn connection_stream(connection: Arc<Connection>, reader: Reader) -> BoxStream<'static, ConnectionItem> {
    stream::unfold(Some((connection, reader)), |state| async move {
        let (connection, mut reader) = state?;
        match reader.next().await {
            Some(Ok(frame)) => Some(((connection.clone(), Some(frame)), Some((connection, reader)))),
            // The end, or a frame the codec refuses: either way the stream is over.
            _ => Some(((connection, None), None)),
        }
    })
    .boxed()
}

/// The receiving end: every message sent to this node.
///
/// The inbox reads the connections peers opened to this node itself, in the task that calls
/// [`Inbox::recv`], rather than through a reader task per connection and a channel: a message
/// then wakes one task, not two, which keeps the transport close to raw TCP's speed.
pub struct Inbox<M> {
    shared: Arc<Shared<M>>,
    accepted: mpsc::UnboundedReceiver<(Arc<Connection>, Reader)>,
    forwarded: mpsc::UnboundedReceiver<Incoming<M>>,
    connections: SelectAll<BoxStream<'static, ConnectionItem>>,
}

impl<M: Message> Inbox<M> {
    /// The next message; `None` once the transport is gone.
    pub async fn recv(&mut self) -> Option<Incoming<M>> {
        loop {
            let (connection, frame) = tokio::select! {
                biased;
                Some((connection, reader)) = self.accepted.recv() => {
                    self.connections.push(connection_stream(connection, reader));
                    continue;
                }
                Some(incoming) = self.forwarded.recv() => return Some(incoming),
                Some(item) = self.connections.next(), if !self.connections.is_empty() => item,
                else => return None,
            };
            let Some(frame) = frame else {
                self.shared.connection_ended(&connection);
                continue;
            };
            if !connection.alive.load(Ordering::Acquire) {
                continue;
            }
            match postcard::from_bytes::<Wire<M>>(&frame) {
                Ok(wire) => {
                    if let Some(incoming) = self.shared.dispatch(&connection, wire) {
                        return Some(incoming);
                    }
                }
                // A frame that does not decode: the stream cannot be trusted further.
                Err(_) => self.shared.connection_ended(&connection),
            }
        }
    }
}

struct Shared<M> {
    me: String,
    book: AddressBook,
    options: TransportOptions,
    faults: LinkFaults,
    rng: Mutex<SeededRng>,
    peers: Mutex<BTreeMap<String, Arc<PeerSlot>>>,
    /// Calls waiting for a reply: call id to the connection it travels on and the waiter.
    calls: Mutex<BTreeMap<u64, (u64, oneshot::Sender<M>)>>,
    next_call_id: AtomicU64,
    next_connection_id: AtomicU64,
    accepted: mpsc::UnboundedSender<(Arc<Connection>, Reader)>,
    forwarded: mpsc::UnboundedSender<Incoming<M>>,
}

impl<M> Shared<M> {
    /// Routes a decoded frame: a reply to its waiting call, a message to the caller of this.
    fn dispatch(&self, connection: &Arc<Connection>, wire: Wire<M>) -> Option<Incoming<M>> {
        match wire {
            Wire::Hello { .. } => None,
            Wire::OneWay(body) => Some(Incoming { from: connection.peer.clone(), body, reply_to: None }),
            Wire::Request { id, body } => Some(Incoming {
                from: connection.peer.clone(),
                body,
                reply_to: Some((connection.clone(), id)),
            }),
            Wire::Reply { id, body } => {
                let waiter = self.calls.lock().expect("calls lock poisoned").remove(&id);
                if let Some((_, waiter)) = waiter {
                    let _ = waiter.send(body); // The caller may have timed out meanwhile.
                }
                None
            }
        }
    }

    /// Marks a connection dead and fails the calls waiting on it at once.
    fn connection_ended(&self, connection: &Connection) {
        connection.alive.store(false, Ordering::Release);
        // Dropping a waiter's sender tells the caller the connection is lost.
        self.calls.lock().expect("calls lock poisoned").retain(|_, (on, _)| *on != connection.id);
    }

    fn new_connection(&self, peer: String, writer: Writer) -> Arc<Connection> {
        Arc::new(Connection {
            id: self.next_connection_id.fetch_add(1, Ordering::Relaxed),
            peer,
            writer: tokio::sync::Mutex::new(writer),
            alive: AtomicBool::new(true),
        })
    }
}

/// A node's end of the network. Cheap to clone.
pub struct Transport<M> {
    shared: Arc<Shared<M>>,
}

impl<M> Clone for Transport<M> {
    fn clone(&self) -> Self {
        Transport { shared: self.shared.clone() }
    }
}

/// Messages a transport can carry.
pub trait Message: Serialize + DeserializeOwned + Send + 'static {}
impl<T: Serialize + DeserializeOwned + Send + 'static> Message for T {}

impl<M: Message> Transport<M> {
    /// A transport for node `me` that listens on its address from `book`.
    pub async fn bind(
        me: &str,
        book: AddressBook,
        options: TransportOptions,
        faults: LinkFaults,
        rng: SeededRng,
    ) -> std::io::Result<(Transport<M>, Inbox<M>)> {
        let address = book.get(me).ok_or_else(|| {
            std::io::Error::new(std::io::ErrorKind::NotFound, format!("{me} not in address book"))
        })?;
        let listener = TcpListener::bind(address).await?;
        let (transport, inbox) = Transport::unbound(me, book, options, faults, rng);
        let accepting = transport.clone();
        tokio::spawn(async move { accepting.accept_loop(listener).await });
        Ok((transport, inbox))
    }

    /// A transport that only dials out (a client): replies and messages come back over the
    /// connections it opens.
    pub fn unbound(
        me: &str,
        book: AddressBook,
        options: TransportOptions,
        faults: LinkFaults,
        rng: SeededRng,
    ) -> (Transport<M>, Inbox<M>) {
        assert!(options.backoff_min <= options.backoff_max, "backoff bounds reversed");
        let (accepted_sender, accepted) = mpsc::unbounded_channel();
        let (forwarded_sender, forwarded) = mpsc::unbounded_channel();
        let shared = Arc::new(Shared {
            me: me.to_string(),
            book,
            options,
            faults,
            rng: Mutex::new(rng),
            peers: Mutex::new(BTreeMap::new()),
            calls: Mutex::new(BTreeMap::new()),
            next_call_id: AtomicU64::new(1),
            next_connection_id: AtomicU64::new(1),
            accepted: accepted_sender,
            forwarded: forwarded_sender,
        });
        let inbox = Inbox { shared: shared.clone(), accepted, forwarded, connections: SelectAll::new() };
        (Transport { shared }, inbox)
    }

    /// This node's name.
    pub fn me(&self) -> &str {
        &self.shared.me
    }

    /// The cluster's address book.
    pub fn book(&self) -> &AddressBook {
        &self.shared.book
    }

    /// Sends `body` to `to`, one way. `Ok` means handed to the network, not delivered.
    pub async fn send(&self, to: &str, body: M) -> Result<(), NetError> {
        let frame = encode(&Wire::OneWay(body))?;
        let connection = self.connection(to).await?;
        self.write_with_faults(&connection, frame).await
    }

    /// Sends a request to `to` and waits up to `timeout` for its reply.
    pub async fn call(&self, to: &str, body: M, timeout: Duration) -> Result<M, NetError> {
        let id = self.shared.next_call_id.fetch_add(1, Ordering::Relaxed);
        let frame = encode(&Wire::Request { id, body })?;
        let connection = self.connection(to).await?;
        let (sender, receiver) = oneshot::channel();
        self.shared.calls.lock().expect("calls lock poisoned").insert(id, (connection.id, sender));
        let outcome = match self.write_with_faults(&connection, frame).await {
            Err(error) => Err(error),
            Ok(()) => match tokio::time::timeout(timeout, receiver).await {
                Ok(Ok(reply)) => Ok(reply),
                Ok(Err(_)) => Err(NetError::ConnectionLost { peer: to.to_string() }),
                Err(_) => Err(NetError::Timeout {
                    peer: to.to_string(),
                    after_ms: timeout.as_millis() as u64,
                }),
            },
        };
        self.shared.calls.lock().expect("calls lock poisoned").remove(&id);
        outcome
    }

    /// Answers a request received in the inbox. Answering a one-way message does nothing.
    pub async fn reply(&self, request: &Incoming<M>, body: M) -> Result<(), NetError> {
        let Some((connection, id)) = &request.reply_to else {
            return Ok(());
        };
        let frame = encode(&Wire::Reply { id: *id, body })?;
        self.write_with_faults(connection, frame).await
    }

    /// Writes a frame through the link's fault rule: at once, later, twice, or not at all.
    async fn write_with_faults(
        &self,
        connection: &Arc<Connection>,
        frame: Bytes,
    ) -> Result<(), NetError> {
        let Some(rule) = self.shared.faults.rule(&self.shared.me, &connection.peer) else {
            return connection.write(frame).await;
        };
        let verdict = rule.judge(&mut *self.shared.rng.lock().expect("rng lock poisoned"));
        match verdict {
            Verdict::Pass => connection.write(frame).await,
            Verdict::Drop => Ok(()),
            Verdict::Deliver { after, copies } => {
                if after.is_zero() {
                    for _ in 0..copies {
                        connection.write(frame.clone()).await?;
                    }
                } else {
                    let connection = connection.clone();
                    tokio::spawn(async move {
                        tokio::time::sleep(after).await;
                        for _ in 0..copies {
                            // A connection lost meanwhile loses the frame, as TCP would.
                            let _ = connection.write(frame.clone()).await;
                        }
                    });
                }
                Ok(())
            }
        }
    }

    /// The open connection to `to`, opening one when allowed by the backoff.
    async fn connection(&self, to: &str) -> Result<Arc<Connection>, NetError> {
        let slot = {
            let mut peers = self.shared.peers.lock().expect("peers lock poisoned");
            match peers.get(to) {
                Some(slot) => slot.clone(),
                None => peers.entry(to.to_string()).or_default().clone(),
            }
        };
        if let Some(connection) = slot.open_connection() {
            return Ok(connection);
        }
        let mut backoff = slot.dialing.lock().await;
        // Another task may have dialed while this one waited for the lock.
        if let Some(connection) = slot.open_connection() {
            return Ok(connection);
        }
        let address = self.shared.book.get(to).ok_or_else(|| NetError::UnknownPeer(to.into()))?;
        let now = tokio::time::Instant::now();
        if let Some(retry_at) = backoff.retry_at {
            if now < retry_at {
                let wait_ms = (retry_at - now).as_millis();
                let reason = format!("backing off, next attempt in {wait_ms} ms");
                return Err(NetError::Unreachable { peer: to.to_string(), reason });
            }
        }
        let connect = tokio::time::timeout(self.shared.options.connect_timeout, TcpStream::connect(address));
        let failure = match connect.await {
            Ok(Ok(stream)) => match self.open(to, stream).await {
                Ok(connection) => {
                    *slot.open.lock().expect("peer lock poisoned") = Some(connection.clone());
                    *backoff = Backoff::default();
                    return Ok(connection);
                }
                Err(error) => error.to_string(),
            },
            Ok(Err(error)) => error.to_string(),
            Err(_) => "connect timed out".to_string(),
        };
        let options = &self.shared.options;
        backoff.delay = (backoff.delay * 2).clamp(options.backoff_min, options.backoff_max);
        backoff.retry_at = Some(now + backoff.delay);
        Err(NetError::Unreachable { peer: to.to_string(), reason: failure })
    }

    /// Greets a freshly dialed peer and starts reading what it sends back.
    async fn open(&self, peer: &str, stream: TcpStream) -> Result<Arc<Connection>, NetError> {
        let (read_half, write_half) = tokio::io::split(stream);
        let connection = self.shared.new_connection(peer.to_string(), FramedWrite::new(write_half, codec()));
        connection.write(encode::<M>(&Wire::Hello { from: self.shared.me.clone() })?).await?;
        let reader = FramedRead::new(read_half, codec());
        let transport = self.clone();
        let reading = connection.clone();
        tokio::spawn(async move { transport.read_loop(reading, reader).await });
        Ok(connection)
    }

    async fn accept_loop(self, listener: TcpListener) {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                // Accept errors are transient (a peer gave up mid-handshake): keep serving.
                continue;
            };
            let transport = self.clone();
            tokio::spawn(async move { transport.serve_accepted(stream).await });
        }
    }

    async fn serve_accepted(self, stream: TcpStream) {
        let (read_half, write_half) = tokio::io::split(stream);
        let mut reader = FramedRead::new(read_half, codec());
        // The first frame names the peer; anything else is a stranger, and is hung up on.
        let peer = match reader.next().await {
            Some(Ok(frame)) => match postcard::from_bytes::<Wire<M>>(&frame) {
                Ok(Wire::Hello { from }) => from,
                _ => return,
            },
            _ => return,
        };
        let connection = self.shared.new_connection(peer, FramedWrite::new(write_half, codec()));
        // The inbox reads it from here on; a transport whose inbox is gone hangs up.
        let _ = self.shared.accepted.send((connection, reader));
    }

    /// Reads what comes back on a connection this node dialed (replies, mostly) until it ends,
    /// then fails the calls that waited on it.
    async fn read_loop(self, connection: Arc<Connection>, mut reader: Reader) {
        while let Some(Ok(frame)) = reader.next().await {
            let Ok(wire) = postcard::from_bytes::<Wire<M>>(&frame) else {
                break; // A frame that does not decode: the stream cannot be trusted further.
            };
            if let Some(incoming) = self.shared.dispatch(&connection, wire) {
                // A peer may send messages back on our connection; the inbox gets them. If
                // nobody reads the inbox (a pure client), they are dropped.
                let _ = self.shared.forwarded.send(incoming);
            }
        }
        self.shared.connection_ended(&connection);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    #[test]
    fn healthy_rule_passes_and_drop_rule_drops() {
        let mut rng = SeededRng::seed_from_u64(1);
        assert_eq!(LinkRule::default().judge(&mut rng), Verdict::Pass);
        let dropping = LinkRule { drop_probability: 1.0, ..LinkRule::default() };
        assert_eq!(dropping.judge(&mut rng), Verdict::Drop);
        let delaying = LinkRule { delay_ms: 30, duplicate_probability: 1.0, ..LinkRule::default() };
        assert_eq!(
            delaying.judge(&mut rng),
            Verdict::Deliver { after: Duration::from_millis(30), copies: 2 }
        );
    }

    #[test]
    fn link_rules_merge_and_clear() {
        let faults = LinkFaults::default();
        assert_eq!(faults.rule("a", "b"), None);
        faults.set_every_link(LinkRule { delay_ms: 5, ..LinkRule::default() });
        faults.set_link("a", "b", LinkRule { delay_ms: 7, drop_probability: 0.5, ..LinkRule::default() });
        let merged = faults.rule("a", "b").unwrap();
        assert_eq!((merged.delay_ms, merged.drop_probability), (12, 0.5));
        assert_eq!(faults.rule("b", "a").unwrap().delay_ms, 5);
        faults.clear_every_link();
        assert_eq!(faults.rule("b", "a"), None);
        faults.heal();
        assert_eq!(faults.rule("a", "b"), None);
    }
}
