//! Network seam: framed, typed messages between named nodes over TCP.
//!
//! Each message is a postcard frame ([`frame`]) over `tokio::net::TcpStream`. Under
//! `--cfg madsim` that stream is madsim's simulated TCP, so partitions, packet loss and
//! latency set on madsim's `NetSim` apply; built without it, the same code runs on real
//! sockets. Per-link delay, jitter, duplication, reordering and frame loss, which madsim
//! lacks, are applied on the sending side from the shared [`LinkFaults`] table ([`faults`]).
//!
//! Shape: a node dials each peer once and keeps the connection ([`conn`]); a failed dial is
//! retried no sooner than an exponential backoff allows. Every connection has one reader
//! task: it hands replies to the calls waiting for them and every other message to the
//! node's [`Inbox`]. A [`Transport::call`] waits for its reply under its own timeout. The
//! listener backs off after a failed `accept` rather than retry at once.
//!
//! Delivery, as a caller may rely on it:
//! - Frames never interleave on a stream; a frame over [`FRAME_BYTES_MAX`] is an error.
//! - [`Transport::send`] returns `Ok` once its frame is flushed to the connection (or, on a
//!   link with a fault rule, judged and handed on). Frames sent one way on one dialed
//!   connection arrive in the order sent, each once, unless the connection breaks (what was
//!   in flight is lost, and the next send dials anew) or a link fault drops, delays (so
//!   later frames overtake it) or duplicates it. Nothing is retried by the transport.
//! - A [`Transport::call`] gets the reply to its own request (matched by request id), at
//!   most once, or fails: [`NetError::Timeout`] when no reply came within its timeout, counted
//!   from the written request; [`NetError::ConnectionLost`] as soon as the connection ends.
//! - Every failure is a typed [`NetError`], never a panic; panics are broken invariants.

mod conn;
mod faults;
mod frame;
#[cfg(test)]
mod tests;

use std::collections::BTreeMap;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use serde::de::DeserializeOwned;
use serde::Serialize;
use tokio::io::{BufReader, WriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio::time::Instant;

pub use self::faults::{LinkFaults, LinkRule, LinkTally, Verdict};
pub use self::frame::FRAME_BYTES_MAX;

use self::conn::Connection;
use self::frame::Wire;
use super::rng::SeededRng;

/// Messages the inbox holds before the reader tasks wait for it to be read: a bound on the
/// memory a slow node spends on what peers send it (beyond it, TCP holds the rest).
const INBOX_MESSAGES_MAX: usize = 4096;

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

/// Timeouts and backoff of a transport. The backoff paces both redials to a peer and
/// retries of a failed `accept`.
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

impl TransportOptions {
    /// The wait after a failure that followed a wait of `previous`: doubled, within bounds.
    fn next_backoff(&self, previous: Duration) -> Duration {
        (previous * 2).clamp(self.backoff_min, self.backoff_max)
    }
}

/// Messages a transport can carry.
pub trait Message: Serialize + DeserializeOwned + Send + 'static {}
impl<T: Serialize + DeserializeOwned + Send + 'static> Message for T {}

/// A message received, with the means to answer it when it was a request.
pub struct Incoming<M, W = WriteHalf<TcpStream>> {
    pub body: M,
    /// The connection it came on: it names the sender and carries the reply.
    connection: Arc<Connection<M, W>>,
    /// The id of the call to answer, when the sender waits for a reply.
    reply_id: Option<u64>,
}

impl<M, W> Incoming<M, W> {
    /// Whether the sender waits for a reply.
    pub fn wants_reply(&self) -> bool {
        self.reply_id.is_some()
    }

    /// The sender's name (it derefs to `&str`).
    pub fn from(&self) -> &Arc<str> {
        &self.connection.peer
    }
}

impl<M, W> std::fmt::Debug for Incoming<M, W> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Incoming").field("from", self.from()).finish_non_exhaustive()
    }
}

/// The receiving end: every message sent to this node, on any connection.
pub struct Inbox<M> {
    messages: mpsc::Receiver<Incoming<M>>,
}

impl<M> Inbox<M> {
    /// The next message; `None` once the transport and its connections are gone.
    pub async fn recv(&mut self) -> Option<Incoming<M>> {
        self.messages.recv().await
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

struct Shared<M> {
    me: String,
    book: AddressBook,
    options: TransportOptions,
    faults: LinkFaults,
    /// Draws the link faults' verdicts, in the order frames are sent.
    rng: Mutex<SeededRng>,
    /// The peers this node dialed, by name (ordered: nothing here depends on hash order).
    peers: Mutex<BTreeMap<String, Peer<M>>>,
    next_call_id: AtomicU64,
    inbox: mpsc::Sender<Incoming<M>>,
}

/// What this node keeps of one peer it dials.
struct Peer<M> {
    open: Option<(Arc<Connection<M>>, Reader)>,
    /// Held while dialing, so one task dials a peer at a time and the backoff is respected.
    dialing: Arc<tokio::sync::Mutex<Backoff>>,
}

#[derive(Default)]
struct Backoff {
    delay: Duration,
    retry_at: Option<Instant>,
}

/// A dialed connection's reader task, aborted when the transport drops the connection: the
/// task would otherwise keep the stream (and its peer's end) open until the peer closes it.
struct Reader(tokio::task::AbortHandle);

impl Drop for Reader {
    fn drop(&mut self) {
        self.0.abort();
    }
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // Never held across an await, and every change under it is whole: a panic elsewhere
    // leaves the data usable.
    mutex.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

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
        let listener = Arc::new(TcpListener::bind(address).await?);
        let (transport, inbox) = Transport::unbound(me, book, options, faults, rng);
        let messages = transport.shared.inbox.clone();
        tokio::spawn(accept_with_backoff(
            move || {
                let listener = listener.clone();
                async move { listener.accept().await.map(|(stream, _)| stream) }
            },
            options,
            move |stream| {
                tokio::spawn(serve_accepted(stream, messages.clone()));
            },
        ));
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
        let (inbox, messages) = mpsc::channel(INBOX_MESSAGES_MAX);
        let shared = Shared {
            me: me.to_string(),
            book,
            options,
            faults,
            rng: Mutex::new(rng),
            peers: Mutex::new(BTreeMap::new()),
            next_call_id: AtomicU64::new(1),
            inbox,
        };
        (Transport { shared: Arc::new(shared) }, Inbox { messages })
    }

    /// This node's name.
    pub fn me(&self) -> &str {
        &self.shared.me
    }

    /// The cluster's address book.
    pub fn book(&self) -> &AddressBook {
        &self.shared.book
    }

    /// Sends `body` to `to`, one way. `Ok` means handed to the network, not delivered (see
    /// the module's delivery guarantees).
    pub async fn send(&self, to: &str, body: &M) -> Result<(), NetError> {
        let connection = self.connection(to).await?;
        self.write_with_faults(&connection, &Wire::OneWay(body)).await
    }

    /// Sends a request to `to` and waits up to `timeout` for its reply.
    pub async fn call(&self, to: &str, body: &M, timeout: Duration) -> Result<M, NetError> {
        let id = self.shared.next_call_id.fetch_add(1, Ordering::Relaxed);
        let mut connection = self.connection(to).await?;
        // A connection that ended since it was looked up is dialed anew, once.
        let mut pending = connection.enter_call(id);
        if pending.is_none() {
            connection = self.dial(to).await?;
            pending = connection.enter_call(id);
        }
        let Some(mut pending) = pending else {
            return Err(connection.lost());
        };
        self.write_with_faults(&connection, &Wire::Request { id, body }).await?;
        match tokio::time::timeout(timeout, &mut pending.reply).await {
            Ok(Ok(reply)) => Ok(reply),
            Ok(Err(_)) => Err(connection.lost()), // The connection ended: the call left its table.
            Err(_) => Err(NetError::Timeout { peer: to.to_string(), after_ms: millis(timeout) }),
        }
    }

    /// Answers a request received in the inbox. Answering a one-way message does nothing.
    pub async fn reply(&self, request: &Incoming<M>, body: &M) -> Result<(), NetError> {
        let Some(id) = request.reply_id else {
            return Ok(());
        };
        self.write_with_faults(&request.connection, &Wire::Reply { id, body }).await
    }

    /// Writes a frame through the rule of its link: at once, later, twice, or not at all.
    async fn write_with_faults(
        &self,
        connection: &Arc<Connection<M>>,
        wire: &Wire<&M>,
    ) -> Result<(), NetError> {
        let verdict = self.shared.faults.judge(&self.shared.me, &connection.peer, &self.shared.rng);
        match verdict {
            Verdict::Pass => connection.write(wire).await,
            Verdict::Drop => Ok(()),
            Verdict::Deliver { after, copies } if after.is_zero() => {
                for _ in 0..copies {
                    connection.write(wire).await?;
                }
                Ok(())
            }
            Verdict::Deliver { after, copies } => {
                // In a task of its own, so the sender does not wait and later frames overtake.
                let frame = frame::encode(wire)?;
                let connection = connection.clone();
                tokio::spawn(async move {
                    tokio::time::sleep(after).await;
                    for _ in 0..copies {
                        // A connection lost meanwhile loses the frame, as TCP would.
                        let _ = connection.write_frame(&frame).await;
                    }
                });
                Ok(())
            }
        }
    }

    /// The open connection to `to`, dialing one when there is none.
    async fn connection(&self, to: &str) -> Result<Arc<Connection<M>>, NetError> {
        match self.open_connection(to) {
            Some(connection) => Ok(connection),
            None => self.dial(to).await,
        }
    }

    fn open_connection(&self, to: &str) -> Option<Arc<Connection<M>>> {
        let peers = lock(&self.shared.peers);
        let (connection, _) = peers.get(to)?.open.as_ref()?;
        connection.is_alive().then(|| connection.clone())
    }

    /// Opens a connection to `to` when the backoff allows, unless another task just did.
    async fn dial(&self, to: &str) -> Result<Arc<Connection<M>>, NetError> {
        let address = self.shared.book.get(to).ok_or_else(|| NetError::UnknownPeer(to.into()))?;
        let dialing = {
            let mut peers = lock(&self.shared.peers);
            let peer = peers
                .entry(to.to_string())
                .or_insert_with(|| Peer { open: None, dialing: Arc::default() });
            peer.dialing.clone()
        };
        let mut backoff = dialing.lock().await;
        if let Some(connection) = self.open_connection(to) {
            return Ok(connection); // Another task dialed while this one waited.
        }
        let now = Instant::now();
        if let Some(retry_at) = backoff.retry_at.filter(|retry_at| now < *retry_at) {
            let wait_ms = millis(retry_at - now);
            let reason = format!("backing off, next attempt in {wait_ms} ms");
            return Err(NetError::Unreachable { peer: to.to_string(), reason });
        }
        let connect = TcpStream::connect(address);
        let reason = match tokio::time::timeout(self.shared.options.connect_timeout, connect).await
        {
            Ok(Ok(stream)) => match self.greet(to, stream).await {
                Ok(connection) => {
                    *backoff = Backoff::default();
                    return Ok(connection);
                }
                Err(error) => error.to_string(),
            },
            Ok(Err(error)) => error.to_string(),
            Err(_) => "connect timed out".to_string(),
        };
        backoff.delay = self.shared.options.next_backoff(backoff.delay);
        backoff.retry_at = Some(now + backoff.delay);
        Err(NetError::Unreachable { peer: to.to_string(), reason })
    }

    /// Names this node to a freshly dialed peer, starts the connection's reader and keeps it.
    async fn greet(&self, to: &str, stream: TcpStream) -> Result<Arc<Connection<M>>, NetError> {
        let (read, write) = tokio::io::split(stream);
        let connection = Connection::new(to.into(), write);
        connection.write(&Wire::Hello { from: self.shared.me.clone() }).await?;
        let read = BufReader::with_capacity(frame::READ_BUFFER_BYTES, read);
        let buffer = Vec::with_capacity(frame::READ_BUFFER_BYTES);
        let reading = connection.clone().read_until_end(read, buffer, self.shared.inbox.clone());
        let reader = Reader(tokio::spawn(reading).abort_handle());
        let mut peers = lock(&self.shared.peers);
        let peer = peers.get_mut(to).expect("a peer being dialed has an entry");
        // The connection replaced, if any, ended: dropping its reader ends its task.
        peer.open = Some((connection.clone(), reader));
        Ok(connection)
    }
}

/// Reads an accepted connection: its first frame names the peer (anything else is a stranger,
/// and is hung up on), then its messages go to the inbox until it ends.
async fn serve_accepted<M: Message>(stream: TcpStream, inbox: mpsc::Sender<Incoming<M>>) {
    let (read, write) = tokio::io::split(stream);
    let mut read = BufReader::with_capacity(frame::READ_BUFFER_BYTES, read);
    let mut buffer = Vec::with_capacity(frame::READ_BUFFER_BYTES);
    let Some(Wire::<M>::Hello { from }) = frame::read(&mut read, &mut buffer).await else {
        return;
    };
    Connection::new(from.into(), write).read_until_end(read, buffer, inbox).await;
}

/// Accepts connections with `accept` and hands each to `serve`, for as long as the task
/// runs. After a failed `accept` (a peer that gave up mid-handshake, or no file descriptor
/// left) it waits, from `backoff_min` doubling to `backoff_max`, rather than fail again at
/// once in a busy loop; a success resets the wait. The HTTP servers accept with it too.
pub(crate) async fn accept_with_backoff<S, A, F>(
    mut accept: A,
    options: TransportOptions,
    mut serve: impl FnMut(S),
) where
    A: FnMut() -> F,
    F: Future<Output = std::io::Result<S>>,
{
    let mut backoff = Duration::ZERO;
    loop {
        match accept().await {
            Ok(stream) => {
                backoff = Duration::ZERO;
                serve(stream);
            }
            Err(_) => {
                backoff = options.next_backoff(backoff);
                tokio::time::sleep(backoff).await;
            }
        }
    }
}

fn millis(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)
}
