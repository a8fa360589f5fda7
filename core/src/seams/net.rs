//! Network seam: framed, typed messages between named nodes over TCP.
//!
//! Each message is encoded with postcard (a maintained serde codec) behind a 4-byte big-endian
//! length prefix, over `tokio::net::TcpStream`. Under
//! `--cfg madsim` that stream is madsim's simulated TCP, so partitions, packet loss and
//! latency set on madsim's `NetSim` apply; built without it, the same code runs on real
//! sockets.
//!
//! madsim can only clog nodes and links and set one global loss rate and latency range. What
//! it lacks, per-link delay, duplication, reordering and dropped frames, is injected here, on
//! the sending side, by the rules of a shared [`LinkFaults`] table the nemesis writes.
//!
//! Delivery: [`Transport::send`] is one-way and best effort; [`Transport::call`] sends a request
//! and waits for the reply with a timeout. Each borrows the message it sends: it is encoded
//! straight into the connection's write queue, so a caller that retries, or sends one message
//! to several peers, keeps it rather than cloning it for every send. Connections are opened on
//! first use, kept, and reopened after a failure with exponential backoff. Every failure is a
//! typed [`NetError`]: a dead or unreachable peer is an error to handle, never a panic.
//!
//! Cost model: under madsim every task wake, timer and channel hop costs wall time, so the
//! common paths avoid them. The inbox reads accepted connections in the receiving task; a
//! caller reads the reply off its dialed connection itself (no reader task in between); call
//! timeouts are kept by one sweeper task per transport instead of a timer per call; a dialed
//! connection's idle reader is looked at before use only when its stream woke it.
//!
//! **Invariant:** a frame is appended whole to its connection's queue under the connection's
//! lock, and the queue goes to the stream in order and is flushed before a writer returns, so
//! frames never interleave on a stream (an unflushed write would also stall the simulation).

use std::collections::BTreeMap;
use std::future::Future;
use std::net::SocketAddr;
use std::ops::DerefMut;
use std::ops::Range;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Weak};
use std::task::{ready, Context, Poll, Waker};
use std::time::Duration;

use futures::future::Either;
use rand::Rng;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, Notify};

use super::rng::SeededRng;

/// The lock of a connection's state and of the transport's tables, never held across an
/// await.
///
/// In the simulation one thread runs every node of a run (madsim starts no threads, and a sweep
/// gives each run a thread of its own), so the lock is never contended, and a spin lock is the
/// cheapest correct one: a compare-and-swap takes it and a plain store releases it, where
/// `std::sync::Mutex` also swaps to release it and checks for poisoning both ways. A message
/// takes three or four such locks: with spin locks the transport executes 1.5% fewer
/// instructions per message (`sim/benches/transport.rs`, under cachegrind). Built for real
/// threads, a waiter parks instead of spinning: a lock may be held while a large frame is
/// decoded.
#[derive(Debug, Default)]
struct Lock<T>(#[cfg(madsim)] spin::mutex::SpinMutex<T>, #[cfg(not(madsim))] std::sync::Mutex<T>);

impl<T> Lock<T> {
    fn new(value: T) -> Lock<T> {
        #[cfg(madsim)]
        return Lock(spin::mutex::SpinMutex::new(value));
        #[cfg(not(madsim))]
        return Lock(std::sync::Mutex::new(value));
    }

    #[inline]
    #[track_caller]
    fn lock(&self) -> impl DerefMut<Target = T> + '_ {
        #[cfg(madsim)]
        return self.0.lock();
        #[cfg(not(madsim))]
        return self.0.lock().expect("a thread panicked holding a transport lock");
    }
}

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

// Out of line and cold: the paths that fail are kept apart from the paths messages take,
// which stay compact in the instruction cache.
impl NetError {
    #[cold]
    #[inline(never)]
    fn lost(peer: &str) -> NetError {
        NetError::ConnectionLost { peer: peer.to_string() }
    }

    #[cold]
    #[inline(never)]
    fn timed_out(peer: &str, after: Duration) -> NetError {
        NetError::Timeout { peer: peer.to_string(), after_ms: after.as_millis() as u64 }
    }
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
    shared: Arc<LinkFaultState>,
}

/// What a frame reads of the link rules first, the flag and the generation, in the first cache
/// line of the allocation (`repr(C)`), beside the reference counts; the table after them.
#[derive(Debug, Default)]
#[repr(C)]
struct LinkFaultState {
    /// Set while any rule exists, so a healthy network costs one atomic load per frame.
    active: AtomicBool,
    /// Counts the table's changes, so a connection can keep the rule of its link until the
    /// next change rather than look it up on every frame.
    generation: AtomicU64,
    table: Lock<LinkFaultTable>,
}

#[derive(Debug, Default)]
struct LinkFaultTable {
    every_link: Option<LinkRule>,
    /// By sender, then receiver: looked up by `&str`, without building a key per frame.
    links: BTreeMap<String, BTreeMap<String, LinkRule>>,
}

impl LinkFaults {
    /// Sets the rule for frames from `from` to `to` (one direction).
    pub fn set_link(&self, from: &str, to: &str, rule: LinkRule) {
        self.change(|table| {
            table.links.entry(from.to_string()).or_default().insert(to.to_string(), rule);
        });
    }

    /// Sets a rule for every link.
    pub fn set_every_link(&self, rule: LinkRule) {
        self.change(|table| table.every_link = Some(rule));
    }

    /// Removes the rule of one link.
    pub fn clear_link(&self, from: &str, to: &str) {
        self.change(|table| {
            if let Some(receivers) = table.links.get_mut(from) {
                receivers.remove(to);
                if receivers.is_empty() {
                    table.links.remove(from);
                }
            }
        });
    }

    /// Removes the every-link rule.
    pub fn clear_every_link(&self) {
        self.change(|table| table.every_link = None);
    }

    /// Removes every rule.
    pub fn heal(&self) {
        self.change(|table| *table = LinkFaultTable::default());
    }

    /// Changes the table, then says whether any rule is left and starts a new generation.
    fn change(&self, change: impl FnOnce(&mut LinkFaultTable)) {
        let mut table = self.shared.table.lock();
        change(&mut table);
        let active = table.every_link.is_some() || !table.links.is_empty();
        self.shared.active.store(active, Ordering::Release);
        self.shared.generation.fetch_add(1, Ordering::AcqRel);
    }

    /// The rule in force from `from` to `to`, if any. (Inlined: with no rule anywhere, the
    /// common case, it is one atomic load on every frame.)
    #[inline]
    pub fn rule(&self, from: &str, to: &str) -> Option<LinkRule> {
        if !self.shared.active.load(Ordering::Acquire) {
            return None;
        }
        self.rule_in_table(from, to)
    }

    /// The rule in force on `connection`'s link from `from`: while rules exist, the one the
    /// connection kept, looked up again only after the table changed.
    #[inline]
    fn rule_on<M>(&self, from: &str, connection: &Connection<M>) -> Option<LinkRule> {
        if !self.shared.active.load(Ordering::Acquire) {
            return None;
        }
        self.rule_kept(from, connection)
    }

    fn rule_kept<M>(&self, from: &str, connection: &Connection<M>) -> Option<LinkRule> {
        let generation = self.shared.generation.load(Ordering::Acquire);
        // Most links have no rule while others do: that is known without the lock.
        if connection.no_link_rule_at.load(Ordering::Acquire) == generation {
            return None;
        }
        let mut kept = connection.link_rule.lock();
        if kept.0 != Some(generation) {
            *kept = (Some(generation), self.rule_in_table(from, &connection.peer));
        }
        if kept.1.is_none() {
            connection.no_link_rule_at.store(generation, Ordering::Release);
        }
        kept.1
    }

    fn rule_in_table(&self, from: &str, to: &str) -> Option<LinkRule> {
        let table = self.shared.table.lock();
        let link = table.links.get(from).and_then(|receivers| receivers.get(to)).copied();
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

/// Bytes of the big-endian length that prefixes every frame.
const LENGTH_PREFIX_BYTES: usize = 4;

/// What a frame reader starts with and shrinks back to after a large frame: room for many
/// small frames per read.
const READ_BUFFER_BYTES: usize = 8 << 10;

/// Appends one whole frame, length prefix included, to `buffer`. A frame that is too long
/// is refused here, as a typed error, and leaves `buffer` as it was.
fn encode_into<M: Serialize>(wire: &Wire<M>, buffer: &mut Vec<u8>) -> Result<(), NetError> {
    let start = buffer.len();
    buffer.extend_from_slice(&[0; LENGTH_PREFIX_BYTES]);
    if let Err(error) = postcard::serialize_with_flavor(wire, AppendFlavor(buffer)) {
        buffer.truncate(start);
        return Err(NetError::Encode(error.to_string()));
    }
    let length = buffer.len() - start - LENGTH_PREFIX_BYTES;
    if length > FRAME_BYTES_MAX {
        buffer.truncate(start);
        return Err(NetError::Encode(format!("frame of {length} bytes exceeds {FRAME_BYTES_MAX}")));
    }
    buffer[start..start + LENGTH_PREFIX_BYTES].copy_from_slice(&(length as u32).to_be_bytes());
    Ok(())
}

/// One whole frame in a buffer of its own, for a frame written later (a delayed one).
fn encode<M: Serialize>(wire: &Wire<M>) -> Result<Vec<u8>, NetError> {
    let mut frame = Vec::new();
    encode_into(wire, &mut frame)?;
    Ok(frame)
}

/// postcard output appended to a buffer. (postcard's own `to_extend` goes through `Extend`
/// one byte at a time, which showed in profiles.)
struct AppendFlavor<'a>(&'a mut Vec<u8>);

// Inlined into the encoder, which is instantiated in the crate that names the message type.
impl postcard::ser_flavors::Flavor for AppendFlavor<'_> {
    type Output = ();

    #[inline]
    fn try_extend(&mut self, data: &[u8]) -> postcard::Result<()> {
        self.0.extend_from_slice(data);
        Ok(())
    }

    #[inline]
    fn try_push(&mut self, data: u8) -> postcard::Result<()> {
        self.0.push(data);
        Ok(())
    }

    fn finalize(self) -> postcard::Result<()> {
        Ok(())
    }
}

/// Splits what a stream brings into length-prefixed frames, reusing one buffer: a read may
/// bring several frames, or part of one. (The stream is passed in: it sits beside the write
/// queue in the connection's [`Io`], under one lock.)
struct FrameReader {
    /// Initialized bytes; `start..end` holds what was read and not yet handed out.
    buffer: Vec<u8>,
    start: usize,
    end: usize,
    /// Set once the stream ended or failed: it is not read again.
    ended: bool,
}

/// What [`FrameReader::buffered`] found in the buffer.
enum Buffered {
    /// A whole frame, as a range of the buffer.
    Frame(Range<usize>),
    /// Part of a frame: the next frame, prefix included, takes this many bytes.
    Partial(usize),
    /// The next frame announces a length over [`FRAME_BYTES_MAX`].
    TooLong,
}

impl FrameReader {
    fn new() -> FrameReader {
        FrameReader { buffer: vec![0; READ_BUFFER_BYTES], start: 0, end: 0, ended: false }
    }

    /// The next frame read from `stream`, decoded; `None` once the stream cannot be read
    /// further (see [`FrameReader::poll_frame`]) or sent a frame that does not decode, after
    /// which it cannot be trusted further.
    fn poll_wire<M: DeserializeOwned, S: AsyncRead + Unpin>(
        &mut self,
        stream: &mut S,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Wire<M>>> {
        let frame = ready!(self.poll_frame(stream, cx));
        Poll::Ready(frame.and_then(|frame| postcard::from_bytes(&self.buffer[frame]).ok()))
    }

    /// The next whole frame read from `stream`, as a range of [`FrameReader::buffer`] valid
    /// until the next poll; `None` once the stream ended, failed, or announced a frame longer
    /// than [`FRAME_BYTES_MAX`]: the stream cannot be read further in any of those cases.
    fn poll_frame<S: AsyncRead + Unpin>(
        &mut self,
        stream: &mut S,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Range<usize>>> {
        loop {
            let needed = match self.buffered() {
                Buffered::Frame(frame) => {
                    self.start = frame.end;
                    return Poll::Ready(Some(frame));
                }
                Buffered::TooLong => return Poll::Ready(None),
                Buffered::Partial(needed) => needed,
            };
            if !ready!(self.poll_fill(stream, cx, needed)) {
                return Poll::Ready(None);
            }
        }
    }

    /// Reads ahead once a frame was taken, while the caller still holds the stream: whether
    /// the next [`FrameReader::poll_frame`] has something to find without waiting (a frame
    /// already buffered, bytes the stream had, or its end). `Pending` leaves the stream
    /// polled with `cx`, which it wakes when more arrives: whoever reads a stream until it has
    /// nothing then polls it once per frame, not twice.
    fn poll_ahead<S: AsyncRead + Unpin>(
        &mut self,
        stream: &mut S,
        cx: &mut Context<'_>,
    ) -> Poll<()> {
        match self.buffered() {
            Buffered::Partial(needed) => self.poll_fill(stream, cx, needed).map(|_| ()),
            Buffered::Frame(_) | Buffered::TooLong => Poll::Ready(()),
        }
    }

    /// What the buffer holds of the next frame. (This and [`FrameReader::poll_fill`] are
    /// inlined into their two callers, on every message's path: called, they took about 12
    /// instructions and 10 instruction-cache misses more per message, under cachegrind.)
    #[inline(always)]
    fn buffered(&self) -> Buffered {
        let available = self.end - self.start;
        if available < LENGTH_PREFIX_BYTES {
            return Buffered::Partial(LENGTH_PREFIX_BYTES);
        }
        let prefix = &self.buffer[self.start..self.start + LENGTH_PREFIX_BYTES];
        let length = u32::from_be_bytes(prefix.try_into().expect("four bytes")) as usize;
        if length > FRAME_BYTES_MAX {
            return Buffered::TooLong;
        }
        let needed = LENGTH_PREFIX_BYTES + length;
        if available < needed {
            return Buffered::Partial(needed);
        }
        Buffered::Frame(self.start + LENGTH_PREFIX_BYTES..self.start + needed)
    }

    /// Reads once from `stream` into the buffer, making room for a frame of `needed` bytes
    /// first; `false` once the stream ended or failed (it is not read again).
    #[inline(always)]
    fn poll_fill<S: AsyncRead + Unpin>(
        &mut self,
        stream: &mut S,
        cx: &mut Context<'_>,
        needed: usize,
    ) -> Poll<bool> {
        if self.ended {
            return Poll::Ready(false);
        }
        let available = self.end - self.start;
        if available == 0 {
            self.start = 0;
            self.end = 0;
            if self.buffer.len() > READ_BUFFER_BYTES {
                // A large frame passed: give its memory back.
                self.buffer = vec![0; READ_BUFFER_BYTES];
            }
        }
        if self.buffer.len() - self.start < needed {
            self.buffer.copy_within(self.start..self.end, 0);
            self.end = available;
            self.start = 0;
            if self.buffer.len() < needed {
                self.buffer.resize(needed, 0);
            }
        }
        debug_assert!(self.end < self.buffer.len(), "no room to read into");
        let mut read = ReadBuf::new(&mut self.buffer[self.end..]);
        let read_bytes = match ready!(Pin::new(&mut *stream).poll_read(cx, &mut read)) {
            Ok(()) => read.filled().len(),
            Err(_) => 0,
        };
        // No bytes: the end of the stream (or a failure).
        self.ended = read_bytes == 0;
        self.end += read_bytes;
        Poll::Ready(!self.ended)
    }
}

/// One TCP connection, either opened by this node or accepted from a peer.
struct Connection<M> {
    /// Shared with every message received on the connection (`Incoming::from`).
    peer: Arc<str>,
    /// The stream, its write queue, its reader and the calls waiting for a reply on it, under
    /// one plain lock that is never held across an await: see [`Io`].
    io: Lock<Io<M>>,
    alive: AtomicBool,
    /// The rule of this connection's link, as of a generation of the [`LinkFaults`] table.
    link_rule: Lock<(Option<u64>, Option<LinkRule>)>,
    /// The generation of the [`LinkFaults`] table at which this connection's link was found
    /// to have no rule (`u64::MAX`: not yet).
    no_link_rule_at: AtomicU64,
    /// Whether the idle reader may hold something (a frame, or the connection's end) that
    /// nobody has looked at. See [`Shared::drain_dialed`].
    reader_stirred: Arc<ReaderStir>,
    /// Wakes [`Connection::reader_stirred`]: what the idle reader is polled with.
    reader_stir_waker: Waker,
}

/// Set when a dialed connection's idle reader has something to read. The reader is left
/// polled with this as its waker, so the stream itself says when it needs another look.
struct ReaderStir {
    stirred: AtomicBool,
}

impl std::task::Wake for ReaderStir {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        self.stirred.store(true, Ordering::Release);
    }
}

/// A connection's stream with what its writers, its reader and its callers keep: the frames
/// queued for writing, the frame reader, and the calls waiting for their reply.
///
/// One lock covers all of it, rather than splitting the stream into halves behind a lock of
/// their own (`tokio::io::split`) and locking the queue, the reader and a call table besides:
/// a message then takes one lock per end, and a call starts (looks at the stream, enters the
/// table, writes its request) under one taking of it. Reading and writing under the same lock
/// do not wait on each other, as a lock is only ever held for one poll: a tokio stream keeps
/// the reader's and the writer's wakers apart, and madsim's writes never wait.
///
/// Writing: a writer appends its whole frame to `queue` under the lock, then drives the queue
/// out (write, flush) while it holds the lock, in one poll; it never holds the lock across an
/// await. When the stream cannot take more (real TCP with a full socket buffer; madsim's
/// stream always takes everything), the writer waits, and whichever writer is polled next
/// drives the queue on. Frames therefore never interleave, and nothing is allocated per
/// frame: the queue's memory is reused.
///
/// Reading: one task at a time reads, the one that holds the reader (`reader_held`): the
/// inbox on an accepted connection, always; on a dialed connection, a call waiting for its
/// reply (see [`CallFuture`]), or nobody. Replies read are settled in `calls` on the spot.
/// (Generic over the stream only so that tests can stand in a stream that takes a few bytes
/// at a time.)
struct Io<M, W = TcpStream> {
    stream: W,
    reader: FrameReader,
    /// Whether a task reads the connection, or nobody may any more (its end was read).
    reader_held: bool,
    /// Whole frames not yet written; `written..` is what the stream has not taken.
    queue: Vec<u8>,
    written: usize,
    /// Bytes queued, and bytes written and flushed, since the connection opened: a writer
    /// is done when the second count reaches the first as it was after its frame.
    queued_total: u64,
    flushed_total: u64,
    /// Writers waiting for the stream, all woken when it makes progress or fails (the stream
    /// itself wakes only the last writer that polled it).
    waiting: Vec<Waker>,
    failed: bool,
    /// The calls whose request went out on this connection (only dialed connections carry
    /// requests), until their futures are dropped.
    calls: CallTable<M>,
}

/// What a connection's queue keeps after a large frame passed.
const WRITE_BUFFER_BYTES: usize = 8 << 10;

impl<M, W: AsyncWrite + Unpin> Io<M, W> {
    fn new(stream: W, reader: FrameReader, reader_held: bool) -> Io<M, W> {
        Io {
            stream,
            reader,
            reader_held,
            queue: Vec::new(),
            written: 0,
            queued_total: 0,
            flushed_total: 0,
            waiting: Vec::new(),
            failed: false,
            calls: CallTable { pending: Vec::new(), closed: false },
        }
    }

    /// Appends one frame; returns the byte count the writer waits for.
    fn queue(
        &mut self,
        frame: impl FnOnce(&mut Vec<u8>) -> Result<(), NetError>,
    ) -> Result<u64, NetError> {
        let before = self.queue.len();
        frame(&mut self.queue)?;
        self.queued_total += (self.queue.len() - before) as u64;
        Ok(self.queued_total)
    }

    /// Writes and flushes what is queued until `until` bytes have been flushed. `Err` once
    /// the stream failed: it is not written to again.
    fn poll_drive(&mut self, cx: &mut Context<'_>, until: u64) -> Poll<Result<(), ()>> {
        loop {
            if self.failed {
                return Poll::Ready(Err(()));
            }
            if self.flushed_total >= until {
                return Poll::Ready(Ok(()));
            }
            let progress = if self.written < self.queue.len() {
                match Pin::new(&mut self.stream).poll_write(cx, &self.queue[self.written..]) {
                    Poll::Ready(Ok(0)) | Poll::Ready(Err(_)) => Err(()),
                    Poll::Ready(Ok(written)) => {
                        self.written += written;
                        continue;
                    }
                    Poll::Pending => Ok(false),
                }
            } else {
                match Pin::new(&mut self.stream).poll_flush(cx) {
                    Poll::Ready(Ok(())) => Ok(true),
                    Poll::Ready(Err(_)) => Err(()),
                    Poll::Pending => Ok(false),
                }
            };
            match progress {
                Ok(true) => {
                    self.flushed_total = self.queued_total;
                    self.queue.clear();
                    self.written = 0;
                    if self.queue.capacity() > WRITE_BUFFER_BYTES {
                        self.queue.shrink_to(WRITE_BUFFER_BYTES); // A large frame passed.
                    }
                    self.wake_waiting();
                }
                Ok(false) => {
                    if !self.waiting.iter().any(|waker| waker.will_wake(cx.waker())) {
                        self.waiting.push(cx.waker().clone());
                    }
                    return Poll::Pending;
                }
                Err(()) => {
                    // Nothing more goes out: the calls waiting on the connection fail now.
                    self.failed = true;
                    self.calls.close();
                    self.wake_waiting();
                    return Poll::Ready(Err(()));
                }
            }
        }
    }

    /// Takes call `id` out of the table. A call that read puts the reader back, and hands it
    /// to the next call waiting, if any.
    fn leave(&mut self, id: u64, reading: bool, stir: &ReaderStir) {
        self.calls.remove(id);
        if reading {
            self.reader_held = false;
            // Last polled with the call's waker, not the stir waker: the next user looks.
            stir.stirred.store(true, Ordering::Release);
            if let Some(next_reader) = self.calls.next_waiter() {
                next_reader.wake();
            }
        }
    }

    fn wake_waiting(&mut self) {
        // Usually nobody waits: skip the drain's own bookkeeping then.
        if !self.waiting.is_empty() {
            for waker in self.waiting.drain(..) {
                waker.wake();
            }
        }
    }
}

/// Queues one frame and waits until it is written and flushed, driving the queue. The frame
/// is queued and the queue driven under one taking of the lock, in the first poll. (A future
/// written out rather than an `async fn` over one: each layer of `async fn` adds a state
/// machine that every message goes through.)
struct FrameWrite<'a, M, F> {
    connection: &'a Connection<M>,
    /// The frame's encoder until it is queued.
    frame: Option<F>,
    /// The byte count to wait for, once queued.
    until: u64,
    done: bool,
}

impl<M, F: Encoder> Future for FrameWrite<'_, M, F> {
    type Output = Result<(), NetError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), NetError>> {
        let this = self.get_mut();
        let connection = this.connection;
        if this.frame.is_some() && !connection.alive.load(Ordering::Acquire) {
            this.frame = None;
            this.done = true;
            return Poll::Ready(Err(connection.lost()));
        }
        let mut io = connection.io.lock();
        if let Some(frame) = this.frame.take() {
            if io.failed {
                this.done = true;
                return Poll::Ready(Err(connection.lost()));
            }
            match io.queue(frame) {
                Ok(until) => this.until = until,
                Err(error) => {
                    this.done = true;
                    return Poll::Ready(Err(error));
                }
            }
        }
        let result = ready!(io.poll_drive(cx, this.until));
        this.done = true;
        Poll::Ready(result.map_err(|()| connection.lost()))
    }
}

impl<M, F> Drop for FrameWrite<'_, M, F> {
    fn drop(&mut self) {
        if self.done || self.frame.is_some() {
            return;
        }
        // This writer may be the one the stream would wake: hand the driving to the others.
        // Its frame stays queued, whole, and goes out with theirs (or the next write).
        let mut io = self.connection.io.lock();
        io.wake_waiting();
    }
}

/// A frame's encoder, as [`FrameWrite`] takes it.
trait Encoder: FnOnce(&mut Vec<u8>) -> Result<(), NetError> + Unpin {}
impl<F: FnOnce(&mut Vec<u8>) -> Result<(), NetError> + Unpin> Encoder for F {}

impl<M> Connection<M> {
    /// Marks the connection dead, its stream having failed as it was written, and gives the
    /// error the writer returns (the calls on it were failed with it, see [`Io::poll_drive`]).
    fn lost(&self) -> NetError {
        self.alive.store(false, Ordering::Release);
        NetError::lost(&self.peer)
    }

    /// Marks the connection over (its end was read, or it cannot be trusted further) and
    /// fails the calls waiting on it; `calls` is its call table, under its locked `Io`.
    fn end(&self, calls: &mut CallTable<M>) {
        self.alive.store(false, Ordering::Release);
        calls.close();
    }
}

impl<M: Serialize> Connection<M> {
    /// Encodes `wire` into the connection's queue and waits until it is written and flushed.
    fn write<'a>(&'a self, wire: &'a Wire<&'a M>) -> FrameWrite<'a, M, impl Encoder + 'a> {
        self.write_with(move |queue: &mut Vec<u8>| encode_into(wire, queue))
    }

    /// Writes a frame encoded earlier.
    fn write_frame<'a>(&'a self, frame: &'a [u8]) -> FrameWrite<'a, M, impl Encoder + 'a> {
        self.write_with(move |queue: &mut Vec<u8>| {
            queue.extend_from_slice(frame);
            Ok(())
        })
    }

    fn write_with<F: Encoder>(&self, frame: F) -> FrameWrite<'_, M, F> {
        FrameWrite { connection: self, frame: Some(frame), until: 0, done: false }
    }
}

/// Per-peer connection state, in the transport's peer table. The open connection sits in the
/// table itself, behind its plain lock, so the common case (connected) costs one lock and one
/// reference count, and no await; dialing and its backoff sit behind an async lock of their
/// own, so one task dials at a time.
struct PeerSlot<M> {
    open: Option<Arc<Connection<M>>>,
    dialing: Arc<tokio::sync::Mutex<Backoff>>,
}

impl<M> Default for PeerSlot<M> {
    fn default() -> Self {
        PeerSlot { open: None, dialing: Arc::default() }
    }
}

#[derive(Default)]
struct Backoff {
    delay: Duration,
    retry_at: Option<tokio::time::Instant>,
}

/// The peers this node dialed or was dialed by, in the address book: their names and slots.
///
/// A list rather than a map: a node has few peers, and the name asked for is often the very
/// string the table holds (a message's sender, answered), found by its address before any
/// name is compared. A map compared names on every message.
struct PeerTable<M> {
    peers: Vec<(Arc<str>, PeerSlot<M>)>,
}

impl<M> PeerTable<M> {
    /// The entry of `name`, created on first use.
    fn entry(&mut self, name: &str) -> (&Arc<str>, &mut PeerSlot<M>) {
        let same = |known: &Arc<str>| std::ptr::eq(known.as_ptr(), name.as_ptr());
        let at =
            match self.peers.iter().position(|(known, _)| same(known) && known.len() == name.len())
            {
                Some(at) => at,
                None => match self.peers.iter().position(|(known, _)| **known == *name) {
                    Some(at) => at,
                    None => {
                        self.peers.push((name.into(), PeerSlot::default()));
                        self.peers.len() - 1
                    }
                },
            };
        let (name, slot) = &mut self.peers[at];
        (name, slot)
    }
}

impl<M> PeerSlot<M> {
    fn open_connection(&self) -> Option<Arc<Connection<M>>> {
        self.open.as_ref().filter(|connection| connection.alive.load(Ordering::Acquire)).cloned()
    }
}

/// A message received, with the means to answer it when it was a request.
pub struct Incoming<M> {
    pub body: M,
    /// The connection it came on, which names the sender and carries the reply: one
    /// reference count per message, where a name and a connection of their own took two.
    connection: Arc<Connection<M>>,
    /// The id of the call to answer, when the sender waits for a reply.
    reply_id: Option<u64>,
}

impl<M> Incoming<M> {
    /// Whether the sender waits for a reply.
    pub fn wants_reply(&self) -> bool {
        self.reply_id.is_some()
    }

    /// The sender's name: the connection's, shared by every message on it rather than
    /// copied into each (it derefs to `&str`). Answering with `send(incoming.from(), ..)`
    /// finds the peer by the address of that very string.
    pub fn from(&self) -> &Arc<str> {
        &self.connection.peer
    }
}

impl<M> std::fmt::Debug for Incoming<M> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Incoming").field("from", self.from()).finish_non_exhaustive()
    }
}

/// One accepted connection, read by the inbox (which holds its reader for good).
struct AcceptedConnection<M> {
    connection: Arc<Connection<M>>,
    /// Polls the reader with this, so a frame arriving marks this connection ready.
    source: InboxSource,
}

/// What reaches the inbox besides the frames of the connections it reads: a connection just
/// accepted, or a message that came in on a connection this node dialed.
enum InboxEvent<M> {
    Accepted(Arc<Connection<M>>),
    Forwarded(Incoming<M>),
}

/// Wakes the inbox's task on behalf of one source (an accepted connection, or the event
/// channel) and marks that source ready, so that a wake-up polls only the sources that
/// called for it. Polling the others is not free under madsim: a simulated stream polled
/// while a packet is in flight arms one more timer each time, and each timer wakes the task
/// again when it fires.
///
/// Each source keeps its own clone of the task's waker, taken once, and wakes it directly:
/// a wake costs the task's own wake and no more (no `AtomicWaker` to register the waker in
/// anew on every poll, nor a flag shared among the sources). A poll by another task gives
/// every source a waker for that task (see [`Inbox::follow`]).
struct SourceWaker {
    ready: AtomicBool,
    /// The task that polls the inbox.
    task: Waker,
}

impl std::task::Wake for SourceWaker {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        self.ready.store(true, Ordering::Release);
        self.task.wake_by_ref();
    }
}

/// A source's readiness and the waker to poll it with.
struct InboxSource {
    state: Arc<SourceWaker>,
    waker: Waker,
}

impl InboxSource {
    /// A source that starts ready: it has never been polled (with this waker), so nothing
    /// would wake it.
    fn new(task: &Waker) -> InboxSource {
        let state = Arc::new(SourceWaker { ready: AtomicBool::new(true), task: task.clone() });
        InboxSource { waker: Waker::from(state.clone()), state }
    }

    /// Whether the source asked to be polled since it was last found idle; clears the mark.
    /// (Read before it is cleared: most sources are idle most of the time, and a plain load
    /// costs far less than the swap.)
    #[inline]
    fn take_ready(&self) -> bool {
        self.state.ready.load(Ordering::Acquire) && self.state.ready.swap(false, Ordering::AcqRel)
    }

    /// Polls again next time: the source gave an item, and may hold more.
    fn keep_ready(&self) {
        self.state.ready.store(true, Ordering::Release);
    }
}

/// The receiving end: every message sent to this node.
///
/// The inbox reads the connections peers opened to this node itself, in the task that calls
/// [`Inbox::recv`], rather than through a reader task per connection and a channel: a message
/// then wakes one task, not two, which keeps the transport close to raw TCP's speed. Each
/// source wakes the task through its own [`SourceWaker`], and a wake-up polls only the
/// sources marked ready, in turn, starting after the connection that last gave a frame, so a
/// busy peer cannot starve the others. (A plain list: `SelectAll` re-queues a stream, an
/// allocation, after every item, and a node has few peers.)
pub struct Inbox<M> {
    shared: Arc<Shared<M>>,
    events: mpsc::UnboundedReceiver<InboxEvent<M>>,
    events_source: InboxSource,
    /// Set once the event channel closed: the transport is gone.
    events_closed: bool,
    connections: Vec<AcceptedConnection<M>>,
    /// Where the next round of polling starts.
    next_connection: usize,
    /// The task that waits in [`Inbox::recv`], as its sources wake it.
    task: Waker,
}

impl<M: Message> Inbox<M> {
    /// The next message; `None` once the transport is gone.
    pub async fn recv(&mut self) -> Option<Incoming<M>> {
        std::future::poll_fn(|cx| self.poll_recv(cx)).await
    }

    fn poll_recv(&mut self, cx: &mut Context<'_>) -> Poll<Option<Incoming<M>>> {
        if !self.task.will_wake(cx.waker()) {
            self.follow(cx.waker());
        }
        loop {
            // Events first, so a connection is read as soon as it is accepted.
            if !self.events_closed && self.events_source.take_ready() {
                let mut events_context = Context::from_waker(&self.events_source.waker);
                match self.events.poll_recv(&mut events_context) {
                    Poll::Pending => {}
                    Poll::Ready(None) => self.events_closed = true,
                    Poll::Ready(Some(event)) => {
                        self.events_source.keep_ready();
                        match event {
                            InboxEvent::Accepted(connection) => {
                                let source = InboxSource::new(&self.task);
                                let accepted = AcceptedConnection { connection, source };
                                self.connections.push(accepted);
                                continue;
                            }
                            InboxEvent::Forwarded(incoming) => {
                                return Poll::Ready(Some(incoming));
                            }
                        }
                    }
                }
            }
            let Poll::Ready(polled) =
                poll_connections(&mut self.connections, &mut self.next_connection)
            else {
                break;
            };
            let (index, wire) = match polled {
                Polled::Frame { index, wire } => (index, wire),
                Polled::Ended(connection) => {
                    // The connection ended, or sent a frame that does not decode: it cannot
                    // be trusted further.
                    self.shared.connection_ended(&connection);
                    continue;
                }
            };
            let connection = &self.connections[index].connection;
            if !connection.alive.load(Ordering::Acquire) {
                continue;
            }
            if let Some(incoming) = Shared::incoming(connection, wire) {
                return Poll::Ready(Some(incoming));
            }
        }
        if self.events_closed && self.connections.is_empty() {
            return Poll::Ready(None);
        }
        Poll::Pending
    }

    /// Wakes `waker`'s task from here on, not the task that polled before (on the first poll,
    /// nobody): every source gets a waker of its own for the new task, and starts ready, so
    /// it is polled, and its stream holds that waker, before this poll ends. A stream still
    /// holding a waker of the previous task wakes that task in vain, once.
    #[cold]
    fn follow(&mut self, waker: &Waker) {
        self.task = waker.clone();
        self.events_source = InboxSource::new(&self.task);
        for accepted in &mut self.connections {
            accepted.source = InboxSource::new(&self.task);
        }
    }
}

/// What [`poll_connections`] found.
enum Polled<M> {
    /// A frame of the connection at `index`.
    Frame { index: usize, wire: Wire<M> },
    /// A connection that ended, taken out of the list.
    Ended(Arc<Connection<M>>),
}

/// The next frame of any accepted connection marked ready, decoded, polling from
/// `next_connection` on; or a connection that ended, which is then forgotten.
fn poll_connections<M: Message>(
    connections: &mut Vec<AcceptedConnection<M>>,
    next_connection: &mut usize,
) -> Poll<Polled<M>> {
    let count = connections.len();
    // At most `count`: it is one past the connection that last gave a frame, or where one
    // was removed.
    let start = if *next_connection < count { *next_connection } else { 0 };
    for turn in 0..count {
        // A subtraction rather than `%`: a division on every message showed in profiles.
        let index = if start + turn < count { start + turn } else { start + turn - count };
        let accepted = &mut connections[index];
        if !accepted.source.take_ready() {
            continue;
        }
        let mut context = Context::from_waker(&accepted.source.waker);
        let mut io = accepted.connection.io.lock();
        let Io { stream, reader, .. } = &mut *io;
        let Poll::Ready(wire) = reader.poll_wire(stream, &mut context) else {
            continue;
        };
        // Read ahead under this lock: a stream with nothing more now holds the source's waker,
        // so the next round need not lock and poll it only to find it waiting.
        let more = wire.is_some() && reader.poll_ahead(stream, &mut context).is_ready();
        drop(io);
        if let Some(wire) = wire {
            if more {
                accepted.source.keep_ready();
            }
            *next_connection = index + 1;
            return Poll::Ready(Polled::Frame { index, wire });
        }
        let ended = connections.remove(index);
        *next_connection = index;
        return Poll::Ready(Polled::Ended(ended.connection));
    }
    Poll::Pending
}

// ---------------------------------------------------------------------------------------------
// Calls waiting for their reply.

/// How a call ended, when something other than the caller ended it.
enum CallOutcome<M> {
    Reply(M),
    ConnectionLost,
    TimedOut,
}

/// A key of [`Shared::now_key`]'s clock that no deadline reaches.
const NO_DEADLINE: u64 = u64::MAX;

/// `duration` in nanoseconds, saturating (after 584 years).
fn nanos(duration: Duration) -> u64 {
    u64::try_from(duration.as_nanos()).unwrap_or(u64::MAX)
}

struct PendingCall<M> {
    /// Unset while the request is being written: the timeout counts from the written request.
    /// A key of [`Shared::now_key`]'s clock.
    deadline: Option<u64>,
    outcome: Option<CallOutcome<M>>,
    /// The caller's task, woken when an outcome is set or the reader is free to take.
    waker: Option<Waker>,
}

/// The calls waiting for a reply on one connection, by call id (ordered, so scans are
/// deterministic). It sits in the connection's [`Io`], under the lock its reader takes
/// anyway, so a reply is settled where it is read.
///
/// Wakers are woken with that lock held: a wake only schedules the task, which then takes the
/// lock itself.
struct CallTable<M> {
    /// Sorted by id. A vector rather than a map: a connection has few calls in flight, ids
    /// mostly arrive in order (an insert is then a push), and its memory is reused, where a
    /// map allocated and freed a node whenever it went from empty to one call and back.
    pending: Vec<(u64, PendingCall<M>)>,
    /// Set once the connection is over (its end was read, or a write failed): every call in
    /// the table has failed, and no call enters it any more.
    closed: bool,
}

impl<M> CallTable<M> {
    fn insert(&mut self, id: u64, call: PendingCall<M>) {
        match self.pending.last() {
            Some((last, _)) if *last > id => {
                let at = self.pending.partition_point(|(other, _)| *other < id);
                assert!(
                    self.pending.get(at).is_none_or(|(other, _)| *other != id),
                    "call id reused"
                );
                self.pending.insert(at, (id, call));
            }
            _ => self.pending.push((id, call)),
        }
    }

    fn get_mut(&mut self, id: u64) -> Option<&mut PendingCall<M>> {
        let at = self.pending.binary_search_by_key(&id, |(other, _)| *other).ok()?;
        Some(&mut self.pending[at].1)
    }

    fn remove(&mut self, id: u64) {
        // Usually the newest call, often the only one.
        if self.pending.last().is_some_and(|(last, _)| *last == id) {
            self.pending.pop();
        } else if let Ok(at) = self.pending.binary_search_by_key(&id, |(other, _)| *other) {
            self.pending.remove(at);
        }
    }

    /// Sets the outcome of a call that has none yet; returns the waker to wake.
    fn settle(call: &mut PendingCall<M>, outcome: CallOutcome<M>) -> Option<Waker> {
        if call.outcome.is_some() {
            return None;
        }
        call.outcome = Some(outcome);
        call.waker.take()
    }

    /// Hands a reply to its call, unless the call timed out and went meanwhile.
    fn settle_reply(&mut self, id: u64, body: M) {
        let waker = self.get_mut(id).and_then(|call| Self::settle(call, CallOutcome::Reply(body)));
        if let Some(waker) = waker {
            waker.wake();
        }
    }

    /// Fails every call waiting, the connection being over, and lets no call in any more.
    fn close(&mut self) {
        self.closed = true;
        for (_, call) in &mut self.pending {
            if let Some(waker) = Self::settle(call, CallOutcome::ConnectionLost) {
                waker.wake();
            }
        }
    }

    /// Times out the calls whose deadline passed, adding their ids and wakers to `expired`;
    /// returns the earliest deadline left.
    fn expire(&mut self, now: u64, expired: &mut Vec<(u64, Waker)>) -> Option<u64> {
        let mut earliest: Option<u64> = None;
        for (id, call) in &mut self.pending {
            let (Some(deadline), None) = (call.deadline, &call.outcome) else {
                continue;
            };
            if deadline <= now {
                expired.extend(Self::settle(call, CallOutcome::TimedOut).map(|waker| (*id, waker)));
            } else {
                earliest = Some(earliest.map_or(deadline, |at| at.min(deadline)));
            }
        }
        earliest
    }

    /// The waker of a call still waiting for its reply, to hand it the reader just put back.
    fn next_waiter(&self) -> Option<Waker> {
        self.pending
            .iter()
            .map(|(_, call)| call)
            .find(|call| call.outcome.is_none())
            .and_then(|call| call.waker.clone())
    }
}

/// Waits for the reply to one request.
///
/// Whoever waits reads: the caller reads the connection its request went out on itself when
/// no other caller is reading it, so a reply wakes the caller directly instead of waking a
/// reader task that then wakes the caller. Replies to other calls read on the way are handed
/// to their callers. When the caller is done, it puts the reader back and wakes another call
/// waiting on that connection, which takes over.
///
/// A call starts in one poll, under one taking of its connection's lock
/// ([`CallFuture::start`]): it takes the reader, unless another call holds it, and reads
/// what the connection holds with its own waker; it enters the connection's call table; and
/// it queues and writes its request. That look leaves the stream polled with the caller's
/// waker, so when the request goes out in the same poll, the first poll here need not read
/// again: nothing can have arrived unseen. (Under madsim every poll of a simulated stream
/// costs wall time; this one was a second per call.)
///
/// Timeouts do not arm a timer per call (under madsim every timer stays in the timer heap
/// until it fires, and its late firing wakes the task again): the transport's sweeper task
/// sleeps until the earliest deadline of the calls waiting, and settles the expired ones.
struct CallFuture<'a, M> {
    shared: &'a Arc<Shared<M>>,
    connection: Arc<Connection<M>>,
    id: u64,
    /// In nanoseconds.
    timeout: u64,
    /// Whether the call is in its connection's call table: from its start on.
    entered: bool,
    /// While the request is being written (the stream took only part of it): the byte count
    /// its writing waits for (see [`Io::poll_drive`]).
    writing: Option<u64>,
    /// Whether this call holds the connection's reader.
    reading: bool,
    /// Set when the request went out within the poll that started the call, the reader held
    /// (by this call, which polled the stream with its waker, or by another that hands it its
    /// reply): the next poll, in the same poll of the task, need not look at anything.
    looked: bool,
}

/// How [`CallFuture::start`] went.
enum Start {
    /// The call is in the table, its request written or being written (unless it was left to
    /// the caller).
    Started,
    /// The connection is over: the call did not enter it.
    Ended,
    /// The request does not encode, or the connection failed as it was written.
    Failed(NetError),
}

impl<'a, M: Message> CallFuture<'a, M> {
    fn new(
        shared: &'a Arc<Shared<M>>,
        connection: Arc<Connection<M>>,
        id: u64,
        timeout: Duration,
    ) -> CallFuture<'a, M> {
        CallFuture {
            shared,
            connection,
            id,
            timeout: nanos(timeout),
            entered: false,
            writing: None,
            reading: false,
            looked: false,
        }
    }

    /// Starts the call (see [`CallFuture`]) under one taking of the connection's lock: looks
    /// at what the connection holds when `look` (a connection just dialed holds nothing yet),
    /// enters the call table, and writes `request` when `write` (a link with a fault rule has
    /// its frames judged by [`Transport::write_judged`] instead).
    fn start(
        &mut self,
        request: &Wire<&M>,
        look: bool,
        write: bool,
        cx: &mut Context<'_>,
    ) -> Start {
        let connection = &self.connection;
        let mut io = connection.io.lock();
        if io.calls.closed {
            return Start::Ended;
        }
        if look && !io.reader_held {
            io.reader_held = true;
            // From here on the stream wakes this call, which marks the reader stirred again
            // when it puts it back.
            connection.reader_stirred.stirred.store(false, Ordering::Release);
            if !self.shared.read_until_pending(connection, &mut io, cx) {
                return Start::Ended;
            }
            self.reading = true;
        }
        // Stored before the request leaves: another caller reading this connection may read
        // the reply first, and wakes this one with it.
        let call = PendingCall { deadline: None, outcome: None, waker: Some(cx.waker().clone()) };
        io.calls.insert(self.id, call);
        self.entered = true;
        if !write {
            return Start::Started;
        }
        let until = match io.queue(|queue| encode_into(request, queue)) {
            Ok(until) => until,
            Err(error) => return Start::Failed(error),
        };
        match io.poll_drive(cx, until) {
            Poll::Ready(Ok(())) => {
                self.sent(&mut io.calls);
                // Looked (or another call reads) and wrote in one poll of this task: nothing
                // arrived unseen since.
                self.looked = io.reader_held;
            }
            Poll::Ready(Err(())) => return Start::Failed(self.connection.lost()),
            Poll::Pending => self.writing = Some(until),
        }
        Start::Started
    }

    /// The request is out: the timeout counts from now.
    fn sent(&self, calls: &mut CallTable<M>) {
        let deadline = self.shared.now_key().saturating_add(self.timeout).min(NO_DEADLINE - 1);
        if let Some(call) = calls.get_mut(self.id) {
            call.deadline = Some(deadline);
        }
        self.shared.sweep_by(deadline);
    }

    /// [`CallFuture::sent`], for a request written outside [`CallFuture::start`].
    fn sent_later(&self) {
        self.sent(&mut self.connection.io.lock().calls);
    }
}

impl<M: Message> Future for CallFuture<'_, M> {
    type Output = CallOutcome<M>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<CallOutcome<M>> {
        let this = self.get_mut();
        if std::mem::take(&mut this.looked) {
            // Still in the poll that started the call: its waker is in the table, and the
            // reader's holder (this call, or another that hands it its reply) wakes it.
            return Poll::Pending;
        }
        let connection = &this.connection;
        let mut guard = connection.io.lock();
        let io = &mut *guard;
        let call = io
            .calls
            .get_mut(this.id)
            .expect("a call stays in its connection's table until its future is dropped");
        if let Some(outcome) = call.outcome.take() {
            return Poll::Ready(outcome);
        }
        // Stored before trying the reader: a holder that puts it back afterwards sees this
        // waker and wakes this call to take it.
        match &call.waker {
            Some(waker) if waker.will_wake(cx.waker()) => {}
            _ => call.waker = Some(cx.waker().clone()),
        }
        if let Some(until) = this.writing {
            match ready!(io.poll_drive(cx, until)) {
                Ok(()) => {
                    this.writing = None;
                    this.sent(&mut io.calls);
                }
                Err(()) => {
                    connection.alive.store(false, Ordering::Release);
                    return Poll::Ready(CallOutcome::ConnectionLost);
                }
            }
        }
        if !this.reading {
            if io.reader_held {
                return Poll::Pending; // Another caller reads, and hands this call its reply.
            }
            io.reader_held = true;
            this.reading = true;
        }
        let Io { stream, reader, calls, .. } = io;
        loop {
            match ready!(reader.poll_wire(stream, cx)) {
                Some(Wire::Reply { id, body }) if id == this.id => {
                    // Done: leaves now, under this lock, rather than when dropped.
                    io.leave(this.id, this.reading, &connection.reader_stirred);
                    (this.entered, this.reading) = (false, false);
                    return Poll::Ready(CallOutcome::Reply(body));
                }
                Some(wire) => this.shared.dispatch_on_dialed(connection, calls, wire),
                None => {
                    // The connection is over, or sent a frame that does not decode (the stream
                    // cannot be trusted further): nobody reads it again, and its calls fail.
                    this.reading = false;
                    connection.end(calls);
                    return Poll::Ready(CallOutcome::ConnectionLost);
                }
            }
        }
    }
}

impl<M> Drop for CallFuture<'_, M> {
    fn drop(&mut self) {
        if !self.entered {
            return;
        }
        let mut io = self.connection.io.lock();
        if self.writing.is_some() {
            // This writer may be the one the stream would wake: hand the driving to the
            // others. Its frame stays queued, whole, and goes out with theirs.
            io.wake_waiting();
        }
        io.leave(self.id, self.reading, &self.connection.reader_stirred);
    }
}

struct Shared<M> {
    me: String,
    book: AddressBook,
    options: TransportOptions,
    faults: LinkFaults,
    rng: Lock<SeededRng>,
    peers: Lock<PeerTable<M>>,
    next_call_id: AtomicU64,
    /// When the sweeper next wakes to time calls out, a key of [`Shared::now_key`]'s clock
    /// ([`NO_DEADLINE`]: it sleeps until a call wakes it).
    sweep_at: AtomicU64,
    /// Where that clock counts from.
    epoch: tokio::time::Instant,
    /// Under madsim, the simulation's elapsed time at `epoch`, in nanoseconds.
    #[cfg(madsim)]
    epoch_elapsed: u64,
    /// Wakes the sweeper when a call's deadline comes before the one it sleeps on, or when
    /// the transport is gone.
    sweeper_wake: Arc<Notify>,
    sweeper_started: AtomicBool,
    /// The simulation's clock, read directly: the same time as `tokio::time::Instant::now`,
    /// which under madsim reaches it through an intercepted `clock_gettime` at several times
    /// the cost, once per call.
    #[cfg(madsim)]
    time: madsim::time::TimeHandle,
    /// To the inbox: connections accepted, messages that came on dialed connections.
    inbox_events: mpsc::UnboundedSender<InboxEvent<M>>,
}

impl<M> Drop for Shared<M> {
    fn drop(&mut self) {
        self.sweeper_wake.notify_one(); // So the sweeper sees the transport is gone, and ends.
    }
}

impl<M> Shared<M> {
    /// Now, on the clock call deadlines are kept on: nanoseconds after `epoch`. A call's
    /// deadline is then an addition, and comparing deadlines a comparison of integers, where
    /// `Instant`s took a clock read, two normalizing additions and a 128-bit conversion per
    /// call.
    fn now_key(&self) -> u64 {
        #[cfg(madsim)]
        return nanos(self.time.elapsed()) - self.epoch_elapsed;
        #[cfg(not(madsim))]
        return nanos(self.epoch.elapsed());
    }

    /// The instant of a key of [`Shared::now_key`]'s clock, for the sweeper's timer.
    fn instant_of(&self, key: u64) -> tokio::time::Instant {
        self.epoch + Duration::from_nanos(key)
    }

    /// The message a frame brings to the inbox, if any: a one-way message, or a request to
    /// answer on `connection`. Replies are not messages: whoever reads one on a dialed
    /// connection hands it to its call, and an accepted connection carries no calls (this
    /// transport sends requests only on connections it dialed), so a reply on one answers
    /// nothing.
    fn incoming(connection: &Arc<Connection<M>>, wire: Wire<M>) -> Option<Incoming<M>> {
        let (body, reply_id) = match wire {
            Wire::Hello { .. } | Wire::Reply { .. } => return None,
            Wire::OneWay(body) => (body, None),
            Wire::Request { id, body } => (body, Some(id)),
        };
        Some(Incoming { body, connection: connection.clone(), reply_id })
    }

    /// Routes a frame read on a connection this node dialed, `calls` being its call table: a
    /// reply to its call; a peer's message (replies are what comes back on dialed
    /// connections, but not only) on to the inbox, or dropped if nobody reads the inbox (a
    /// pure client).
    fn dispatch_on_dialed(
        &self,
        connection: &Arc<Connection<M>>,
        calls: &mut CallTable<M>,
        wire: Wire<M>,
    ) {
        match wire {
            Wire::Reply { id, body } => calls.settle_reply(id, body),
            wire => {
                if let Some(incoming) = Self::incoming(connection, wire) {
                    let _ = self.inbox_events.send(InboxEvent::Forwarded(incoming));
                }
            }
        }
    }

    /// Marks a connection dead and fails the calls waiting on it at once.
    fn connection_ended(&self, connection: &Connection<M>) {
        connection.end(&mut connection.io.lock().calls);
    }

    /// Times out the calls whose deadline passed, on every connection this node dialed (the
    /// calls of a connection that is over have all failed, see [`CallTable::close`]); returns
    /// the earliest deadline left.
    fn expire_calls(&self, now: u64) -> Option<u64> {
        let connections: Vec<Arc<Connection<M>>> = {
            let peers = self.peers.lock();
            peers.peers.iter().filter_map(|(_, slot)| slot.open.clone()).collect()
        };
        let mut expired = Vec::new();
        let mut earliest: Option<u64> = None;
        for connection in connections {
            let mut io = connection.io.lock();
            if let Some(deadline) = io.calls.expire(now, &mut expired) {
                earliest = Some(earliest.map_or(deadline, |at| at.min(deadline)));
            }
        }
        self.sweep_at.store(earliest.unwrap_or(NO_DEADLINE), Ordering::Release);
        // In call order, whichever connections the calls travel on.
        expired.sort_unstable_by_key(|(id, _)| *id);
        for (_, waker) in expired {
            waker.wake();
        }
        earliest
    }

    fn new_connection(
        &self,
        peer: Arc<str>,
        stream: TcpStream,
        reader: FrameReader,
        reader_held: bool,
    ) -> Arc<Connection<M>> {
        // Stirred from the start: the reader has never been polled.
        let reader_stirred = Arc::new(ReaderStir { stirred: AtomicBool::new(true) });
        Arc::new(Connection {
            peer,
            io: Lock::new(Io::new(stream, reader, reader_held)),
            alive: AtomicBool::new(true),
            link_rule: Lock::new((None, None)),
            no_link_rule_at: AtomicU64::new(u64::MAX),
            reader_stir_waker: Waker::from(reader_stirred.clone()),
            reader_stirred,
        })
    }
}

impl<M: Message> Shared<M> {
    /// Starts the task that times calls out, on the first call that needs it.
    fn start_sweeper(self: &Arc<Self>) {
        if self.sweeper_started.swap(true, Ordering::AcqRel) {
            return;
        }
        tokio::spawn(sweep_calls(Arc::downgrade(self), self.sweeper_wake.clone()));
    }

    /// Makes sure the sweeper wakes by `key`, a call's deadline.
    fn sweep_by(self: &Arc<Self>, key: u64) {
        // Read first: most deadlines come after the one the sweeper sleeps on.
        if key < self.sweep_at.load(Ordering::Acquire)
            && key < self.sweep_at.fetch_min(key, Ordering::AcqRel)
        {
            self.start_sweeper();
            self.sweeper_wake.notify_one();
        }
    }

    /// Reads what a dialed connection already holds, without waiting: replies nobody was
    /// reading, and above all its end, so that a connection the peer closed (it crashed or
    /// restarted) is found dead before it is used, and redialed, rather than after a frame
    /// was written into it and lost. Returns whether the connection is still open.
    ///
    /// The reader is polled only when stirred: it is left polled with the connection's stir
    /// waker, so the stream wakes that when anything arrives, the end included. A connection
    /// used only to send (Raft peers' one-way messages) is then not polled, nor even locked,
    /// before every frame; one a call has just read is (the call polled it with its own
    /// waker).
    fn drain_dialed(&self, connection: &Arc<Connection<M>>) -> bool {
        // Unstirred, or a call holds the reader (it sees the end when it comes).
        if !connection.reader_stirred.stirred.load(Ordering::Acquire) {
            return connection.alive.load(Ordering::Acquire);
        }
        // Read in place, under the connection's lock: no call waits for the reader meanwhile
        // (it is never seen held), so none has to be woken afterwards.
        let mut io = connection.io.lock();
        if io.reader_held {
            return connection.alive.load(Ordering::Acquire);
        }
        // Cleared before the poll: whatever arrives after it stirs the reader again.
        if !connection.reader_stirred.stirred.swap(false, Ordering::AcqRel) {
            return connection.alive.load(Ordering::Acquire);
        }
        let mut context = Context::from_waker(&connection.reader_stir_waker);
        self.read_until_pending(connection, &mut io, &mut context)
    }

    /// Reads a dialed connection's frames until the stream has nothing more (they are
    /// dispatched), with `io` locked and its reader held; returns whether the connection is
    /// still open. One that ended, or sent a frame that does not decode, is over: its reader
    /// stays held for good, and the calls waiting on it fail.
    fn read_until_pending(
        &self,
        connection: &Arc<Connection<M>>,
        io: &mut Io<M>,
        cx: &mut Context<'_>,
    ) -> bool {
        let Io { stream, reader, calls, .. } = io;
        let open = loop {
            match reader.poll_wire(stream, cx) {
                Poll::Pending => break true,
                Poll::Ready(None) => break false,
                Poll::Ready(Some(wire)) => self.dispatch_on_dialed(connection, calls, wire),
            }
        };
        if !open {
            io.reader_held = true;
            connection.end(&mut io.calls);
        }
        open
    }
}

/// Times out calls: sleeps until the earliest deadline of the calls waiting, settles those
/// that expired, and sleeps again; with no deadline it sleeps until a call wakes it. One
/// timer per earliest deadline, not one per call.
async fn sweep_calls<M: Message>(shared: Weak<Shared<M>>, wake: Arc<Notify>) {
    loop {
        let earliest = {
            let Some(shared) = shared.upgrade() else {
                return; // The transport is gone.
            };
            let earliest = shared.expire_calls(shared.now_key());
            earliest.map(|key| shared.instant_of(key))
        };
        match earliest {
            Some(deadline) => tokio::select! {
                biased;
                () = wake.notified() => {}
                () = tokio::time::sleep_until(deadline) => {}
            },
            None => wake.notified().await,
        }
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
        let (inbox_events, events) = mpsc::unbounded_channel();
        #[cfg(madsim)]
        let time = madsim::time::TimeHandle::current();
        let shared = Arc::new(Shared {
            me: me.to_string(),
            book,
            options,
            faults,
            rng: Lock::new(rng),
            peers: Lock::new(PeerTable { peers: Vec::new() }),
            next_call_id: AtomicU64::new(1),
            sweep_at: AtomicU64::new(NO_DEADLINE),
            #[cfg(madsim)]
            epoch: time.now_instant(),
            #[cfg(not(madsim))]
            epoch: tokio::time::Instant::now(),
            #[cfg(madsim)]
            epoch_elapsed: nanos(time.elapsed()),
            sweeper_wake: Arc::new(Notify::new()),
            sweeper_started: AtomicBool::new(false),
            #[cfg(madsim)]
            time,
            inbox_events,
        });
        // Nobody polled the inbox yet: its first poll follows the task that polls it.
        let task = Waker::noop().clone();
        let inbox = Inbox {
            shared: shared.clone(),
            events,
            events_source: InboxSource::new(&task),
            events_closed: false,
            connections: Vec::new(),
            next_connection: 0,
            task,
        };
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
    pub async fn send(&self, to: &str, body: &M) -> Result<(), NetError> {
        let connection = self.connection(to).await?;
        self.write_with_faults(&connection, &Wire::OneWay(body)).await
    }

    /// Sends a request to `to` and waits up to `timeout` for its reply.
    pub async fn call(&self, to: &str, body: &M, timeout: Duration) -> Result<M, NetError> {
        let id = self.shared.next_call_id.fetch_add(1, Ordering::Relaxed);
        let request = Wire::Request { id, body };
        let (mut connection, mut dialed) = match self.with_peer(to, |slot| slot.open_connection()) {
            Some(connection) => (connection, false),
            None => (Box::pin(self.dial(to)).await?, true),
        };
        let waiting = loop {
            let rule = self.shared.faults.rule_on(&self.shared.me, &connection);
            // Once started, dropping the future (at any await) takes the call out of the
            // table and puts the reader back.
            let mut waiting = CallFuture::new(&self.shared, connection, id, timeout);
            let started = std::future::poll_fn(|cx| {
                Poll::Ready(waiting.start(&request, !dialed, rule.is_none(), cx))
            })
            .await;
            match started {
                Start::Started => {}
                Start::Failed(error) => return Err(error),
                // Found over before use (the peer closed it: it crashed or restarted): redial.
                Start::Ended if !dialed => {
                    connection = Box::pin(self.dial(to)).await?;
                    dialed = true;
                    continue;
                }
                Start::Ended => return Err(NetError::lost(to)),
            }
            if let Some(rule) = rule {
                // Boxed, as dialing is (see `connection`): a faulty link's path stays out of
                // the common path's future.
                Box::pin(self.write_judged(&waiting.connection, &request, rule)).await?;
                waiting.sent_later();
            }
            break waiting;
        };
        match waiting.await {
            CallOutcome::Reply(reply) => Ok(reply),
            CallOutcome::ConnectionLost => Err(NetError::lost(to)),
            CallOutcome::TimedOut => Err(NetError::timed_out(to, timeout)),
        }
    }

    /// Answers a request received in the inbox. Answering a one-way message does nothing.
    pub async fn reply(&self, request: &Incoming<M>, body: &M) -> Result<(), NetError> {
        let Some(id) = request.reply_id else {
            return Ok(());
        };
        self.write_with_faults(&request.connection, &Wire::Reply { id, body }).await
    }

    /// Writes a frame through the link's fault rule: at once, later, twice, or not at all.
    ///
    /// A plain function returning the write itself rather than an `async fn` awaiting it: one
    /// state machine less for every `send` and `reply` to go through. (The rule is looked up
    /// when the write is made, which its callers await at once.)
    fn write_with_faults<'a>(
        &'a self,
        connection: &'a Arc<Connection<M>>,
        wire: &'a Wire<&'a M>,
    ) -> impl Future<Output = Result<(), NetError>> + 'a {
        match self.shared.faults.rule_on(&self.shared.me, connection) {
            None => Either::Left(connection.write(wire)),
            // Boxed, as dialing is (see `connection`).
            Some(rule) => Either::Right(Box::pin(self.write_judged(connection, wire, rule))),
        }
    }

    /// Writes a frame as `rule` judges it.
    async fn write_judged(
        &self,
        connection: &Arc<Connection<M>>,
        wire: &Wire<&M>,
        rule: LinkRule,
    ) -> Result<(), NetError> {
        let verdict = rule.judge(&mut *self.shared.rng.lock());
        match verdict {
            Verdict::Pass => connection.write(wire).await,
            Verdict::Drop => Ok(()),
            Verdict::Deliver { after, copies } => {
                Self::deliver(connection, wire, after, copies).await
            }
        }
    }

    /// Writes a frame `copies` times, at once or after `after` (in a task of its own, so
    /// the sender does not wait and later frames overtake it).
    async fn deliver(
        connection: &Arc<Connection<M>>,
        wire: &Wire<&M>,
        after: Duration,
        copies: u8,
    ) -> Result<(), NetError> {
        if after.is_zero() {
            for _ in 0..copies {
                connection.write(wire).await?;
            }
            return Ok(());
        }
        let frame = encode(wire)?;
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

    /// The open connection to `to`, opening one when allowed by the backoff.
    ///
    /// Dialing is boxed: an `async fn`'s future is as large as its largest state, and the
    /// dialing states (connect, greet, the backoff lock) would make every `send`, `call` and
    /// `reply` future about 2 KB, which each message then writes to and evicts from the
    /// cache. The common case, already connected, awaits nothing.
    async fn connection(&self, to: &str) -> Result<Arc<Connection<M>>, NetError> {
        if let Some(connection) = self.with_peer(to, |slot| slot.open_connection()) {
            if self.shared.drain_dialed(&connection) {
                return Ok(connection);
            }
        }
        Box::pin(self.dial(to)).await
    }

    /// Opens a connection to `to` when the backoff allows, unless another task just did.
    async fn dial(&self, to: &str) -> Result<Arc<Connection<M>>, NetError> {
        let dialing = self.with_peer(to, |slot| slot.dialing.clone());
        let mut backoff = dialing.lock().await;
        // Another task may have dialed while this one waited for the lock.
        if let Some(connection) = self.with_peer(to, |slot| slot.open_connection()) {
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
        let connect =
            tokio::time::timeout(self.shared.options.connect_timeout, TcpStream::connect(address));
        let failure = match connect.await {
            Ok(Ok(stream)) => match self.open(to, stream).await {
                Ok(connection) => {
                    self.with_peer(to, |slot| slot.open = Some(connection.clone()));
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

    /// Runs `f` on the table entry of peer `to` (created on first use), under the peers lock.
    fn with_peer<R>(&self, to: &str, f: impl FnOnce(&mut PeerSlot<M>) -> R) -> R {
        let mut peers = self.shared.peers.lock();
        f(peers.entry(to).1)
    }

    /// The name a connection with `peer` carries: the peer table's own copy for a peer in the
    /// address book, so that answering a message (`send(message.from(), ..)`) finds the peer's
    /// entry by address.
    fn peer_name(&self, peer: &str) -> Arc<str> {
        if self.shared.book.get(peer).is_none() {
            return peer.into(); // Not a peer this node can dial: kept out of the table.
        }
        let mut peers = self.shared.peers.lock();
        peers.entry(peer).0.clone()
    }

    /// Greets a freshly dialed peer. What it sends back is read by the calls waiting on the
    /// connection (see [`CallFuture`]), so no task is spawned to read it.
    async fn open(&self, peer: &str, stream: TcpStream) -> Result<Arc<Connection<M>>, NetError> {
        let peer = self.peer_name(peer);
        let connection = self.shared.new_connection(peer, stream, FrameReader::new(), false);
        connection.write(&Wire::<&M>::Hello { from: self.shared.me.clone() }).await?;
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

    async fn serve_accepted(self, mut stream: TcpStream) {
        let mut reader = FrameReader::new();
        // The first frame names the peer; anything else is a stranger, and is hung up on.
        let hello = std::future::poll_fn(|cx| reader.poll_wire::<M, _>(&mut stream, cx)).await;
        let Some(Wire::Hello { from: peer }) = hello else {
            return;
        };
        // The inbox reads it from here on; a transport whose inbox is gone hangs up.
        let connection = self.shared.new_connection(self.peer_name(&peer), stream, reader, true);
        let _ = self.shared.inbox_events.send(InboxEvent::Accepted(connection));
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

    /// A stream that takes at most three bytes per write and refuses every other write and
    /// flush at first, as a full socket buffer would.
    #[derive(Default)]
    struct SlowStream {
        taken: Vec<u8>,
        flushed: usize,
        /// Whether the next write or flush is refused; flips on every one.
        refuse_next: bool,
    }

    impl SlowStream {
        /// Whether this write or flush is refused (after waking the writer, as a socket
        /// that becomes writable again would).
        fn refuses(&mut self, cx: &mut Context<'_>) -> bool {
            let refuse = self.refuse_next;
            self.refuse_next = !refuse;
            if refuse {
                cx.waker().wake_by_ref();
            }
            refuse
        }
    }

    impl AsyncWrite for SlowStream {
        fn poll_write(
            mut self: Pin<&mut Self>,
            cx: &mut Context<'_>,
            data: &[u8],
        ) -> Poll<std::io::Result<usize>> {
            if self.refuses(cx) {
                return Poll::Pending;
            }
            let taken = data.len().min(3);
            self.taken.extend_from_slice(&data[..taken]);
            Poll::Ready(Ok(taken))
        }

        fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
            if self.refuses(cx) {
                return Poll::Pending;
            }
            self.flushed = self.taken.len();
            Poll::Ready(Ok(()))
        }

        fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<std::io::Result<()>> {
            Poll::Ready(Ok(()))
        }
    }

    /// What a scripted stream gives on each read, in turn.
    enum Read {
        Bytes(Vec<u8>),
        Nothing,
        End,
    }

    /// A stream that answers each read with the next step of its script, `Read::Nothing` once
    /// the script is spent; counts its reads.
    struct ScriptedStream {
        script: std::collections::VecDeque<Read>,
        reads: usize,
    }

    impl ScriptedStream {
        fn new(script: impl IntoIterator<Item = Read>) -> ScriptedStream {
            ScriptedStream { script: script.into_iter().collect(), reads: 0 }
        }
    }

    impl AsyncRead for ScriptedStream {
        fn poll_read(
            mut self: Pin<&mut Self>,
            _: &mut Context<'_>,
            buf: &mut ReadBuf<'_>,
        ) -> Poll<std::io::Result<()>> {
            self.reads += 1;
            match self.script.pop_front() {
                Some(Read::Bytes(mut bytes)) => {
                    let taken = bytes.len().min(buf.remaining());
                    buf.put_slice(&bytes[..taken]);
                    if taken < bytes.len() {
                        self.script.push_front(Read::Bytes(bytes.split_off(taken)));
                    }
                    Poll::Ready(Ok(()))
                }
                Some(Read::End) => Poll::Ready(Ok(())),
                Some(Read::Nothing) | None => Poll::Pending,
            }
        }
    }

    fn frames(values: &[u64]) -> Vec<u8> {
        let mut bytes = Vec::new();
        for value in values {
            encode_into(&Wire::OneWay(*value), &mut bytes).unwrap();
        }
        bytes
    }

    fn poll_value(reader: &mut FrameReader, stream: &mut ScriptedStream) -> Poll<Option<u64>> {
        let mut context = Context::from_waker(Waker::noop());
        reader.poll_wire::<u64, _>(stream, &mut context).map(|wire| match wire {
            Some(Wire::OneWay(value)) => Some(value),
            Some(_) => panic!("a frame of another kind"),
            None => None,
        })
    }

    #[test]
    fn the_reader_splits_reads_into_frames_however_they_are_cut() {
        let bytes = frames(&[1, u64::MAX, 3]);
        // The three frames cut across reads: a prefix split in two, a frame in three reads,
        // then the rest in one read with the end of the stream after it.
        let script = vec![
            Read::Bytes(bytes[..2].to_vec()),
            Read::Nothing,
            Read::Bytes(bytes[2..7].to_vec()),
            Read::Bytes(bytes[7..9].to_vec()),
            Read::Bytes(bytes[9..].to_vec()),
            Read::End,
        ];
        let mut stream = ScriptedStream::new(script);
        let mut reader = FrameReader::new();
        assert_eq!(poll_value(&mut reader, &mut stream), Poll::Pending);
        assert_eq!(poll_value(&mut reader, &mut stream), Poll::Ready(Some(1)));
        assert_eq!(poll_value(&mut reader, &mut stream), Poll::Ready(Some(u64::MAX)));
        assert_eq!(poll_value(&mut reader, &mut stream), Poll::Ready(Some(3)));
        assert_eq!(poll_value(&mut reader, &mut stream), Poll::Ready(None));
        let reads = stream.reads;
        assert_eq!(poll_value(&mut reader, &mut stream), Poll::Ready(None), "still ended");
        assert_eq!(stream.reads, reads, "an ended stream is not read again");
    }

    #[test]
    fn reading_ahead_polls_the_stream_only_when_no_frame_is_buffered() {
        let bytes = frames(&[1, 2, 3]);
        let (two_frames, third) = bytes.split_at(bytes.len() / 3 * 2);
        let script = vec![
            Read::Bytes(two_frames.to_vec()),
            Read::Bytes(third[..1].to_vec()),
            Read::Bytes(third[1..].to_vec()),
            Read::Nothing,
            Read::End,
        ];
        let mut stream = ScriptedStream::new(script);
        let mut reader = FrameReader::new();
        let mut context = Context::from_waker(Waker::noop());
        assert_eq!(poll_value(&mut reader, &mut stream), Poll::Ready(Some(1)));
        // The second frame came in the same read: ahead without reading.
        assert!(reader.poll_ahead(&mut stream, &mut context).is_ready());
        assert_eq!(stream.reads, 1);
        assert_eq!(poll_value(&mut reader, &mut stream), Poll::Ready(Some(2)));
        // Nothing buffered: one read, which brings part of the third frame.
        assert!(reader.poll_ahead(&mut stream, &mut context).is_ready());
        assert_eq!(stream.reads, 2);
        assert_eq!(poll_value(&mut reader, &mut stream), Poll::Ready(Some(3)));
        assert_eq!(stream.reads, 3);
        // The stream has nothing now: ahead waits, and the next poll reads again.
        assert!(reader.poll_ahead(&mut stream, &mut context).is_pending());
        assert_eq!(poll_value(&mut reader, &mut stream), Poll::Ready(None), "then it ended");
        // An end found ahead is kept.
        let mut stream = ScriptedStream::new([Read::Bytes(frames(&[4])), Read::End]);
        let mut reader = FrameReader::new();
        assert_eq!(poll_value(&mut reader, &mut stream), Poll::Ready(Some(4)));
        assert!(reader.poll_ahead(&mut stream, &mut context).is_ready());
        assert_eq!(poll_value(&mut reader, &mut stream), Poll::Ready(None));
        assert_eq!(stream.reads, 2, "the end was read once");
    }

    #[test]
    fn frames_queued_by_waiting_writers_go_out_whole_and_in_order() {
        let mut outgoing = Io::<u64, _>::new(SlowStream::default(), FrameReader::new(), true);
        let mut context = Context::from_waker(Waker::noop());
        let frame =
            |value: u64| move |queue: &mut Vec<u8>| encode_into(&Wire::OneWay(value), queue);
        let first = outgoing.queue(frame(1)).unwrap();
        assert!(outgoing.poll_drive(&mut context, first).is_pending(), "the stream refuses");
        // A second writer queues while the first waits; either one's polls drive both.
        let second = outgoing.queue(frame(u64::MAX)).unwrap();
        let mut polls = 0;
        while outgoing.poll_drive(&mut context, second).is_pending() {
            polls += 1;
            assert!(polls < 100, "the queue does not drain");
        }
        assert_eq!(outgoing.poll_drive(&mut context, first), Poll::Ready(Ok(())));
        assert_eq!(outgoing.stream.flushed, outgoing.stream.taken.len(), "flushed at the end");
        let mut expected = Vec::new();
        encode_into(&Wire::OneWay(1u64), &mut expected).unwrap();
        encode_into(&Wire::OneWay(u64::MAX), &mut expected).unwrap();
        assert_eq!(outgoing.stream.taken, expected);
        assert!(outgoing.queue.is_empty() && outgoing.waiting.is_empty());
    }

    #[test]
    fn a_frame_that_fails_to_encode_leaves_the_queue_as_it_was() {
        let mut outgoing = Io::<u64, _>::new(SlowStream::default(), FrameReader::new(), true);
        outgoing.queue(|queue| encode_into(&Wire::OneWay(7u8), queue)).unwrap();
        let before = outgoing.queue.clone();
        let too_long = vec![0u8; FRAME_BYTES_MAX + 1];
        let refused = outgoing.queue(|queue| encode_into(&Wire::OneWay(too_long), queue));
        assert!(matches!(refused, Err(NetError::Encode(_))));
        assert_eq!(outgoing.queue, before);
        assert_eq!(outgoing.queued_total, before.len() as u64);
    }

    #[test]
    fn the_call_table_keeps_calls_in_id_order() {
        let mut table = CallTable::<u64> { pending: Vec::new(), closed: false };
        let call = || PendingCall { deadline: None, outcome: None, waker: None };
        for id in [2, 5, 3, 1, 4] {
            table.insert(id, call());
        }
        let ids: Vec<u64> = table.pending.iter().map(|(id, _)| *id).collect();
        assert_eq!(ids, [1, 2, 3, 4, 5]);
        table.remove(3);
        table.remove(3); // Removing a call twice is harmless (it timed out, then dropped).
        assert!(table.get_mut(3).is_none() && table.get_mut(4).is_some());
        assert_eq!(table.pending.len(), 4);
    }

    #[test]
    fn the_call_table_expires_settles_and_closes() {
        let at = |ms: u64| ms * 1_000_000; // Keys of the transport's clock, in nanoseconds.
        let mut table = CallTable::<u64> { pending: Vec::new(), closed: false };
        for (id, deadline) in [(1, Some(300)), (2, Some(100)), (3, None), (4, Some(200))] {
            let waker = Some(Waker::noop().clone());
            let call = PendingCall { deadline: deadline.map(at), outcome: None, waker };
            table.insert(id, call);
        }
        let mut expired = Vec::new();
        let earliest = table.expire(at(200), &mut expired);
        let expired: Vec<u64> = expired.into_iter().map(|(id, _)| id).collect();
        assert_eq!(expired, [2, 4], "the calls whose deadline passed, in id order");
        assert_eq!(earliest, Some(at(300)), "the earliest deadline left");
        table.settle_reply(1, 10);
        table.settle_reply(9, 90); // A call that went: nothing to settle.
        assert!(table.next_waiter().is_some(), "call 3 still waits");
        table.close();
        let outcome = |id| table.pending.iter().find(|(other, _)| *other == id).unwrap();
        assert!(matches!(outcome(1).1.outcome, Some(CallOutcome::Reply(10))), "kept its reply");
        assert!(matches!(outcome(2).1.outcome, Some(CallOutcome::TimedOut)), "kept its timeout");
        assert!(matches!(outcome(3).1.outcome, Some(CallOutcome::ConnectionLost)));
        assert!(table.closed && table.next_waiter().is_none(), "nobody waits on a closed table");
    }

    /// Calls from a client node to a server node whose inbox task runs `serve`. (Simulation
    /// only: the nodes, their addresses and the kill are madsim's.)
    #[cfg(madsim)]
    mod calls {
        use super::*;
        use crate::seams::rng::rng_for;
        use madsim::runtime::Handle;
        use std::net::{IpAddr, Ipv4Addr};

        const SERVER: IpAddr = IpAddr::V4(Ipv4Addr::new(10, 9, 0, 1));

        fn book() -> AddressBook {
            AddressBook::new([("server".to_string(), SocketAddr::new(SERVER, 7000))].into())
        }

        /// Starts the server node, its inbox handed to `serve`.
        async fn server<F, S>(serve: S) -> madsim::runtime::NodeHandle
        where
            S: FnOnce(Transport<u64>, Inbox<u64>) -> F + Send + 'static,
            F: Future<Output = ()> + Send + 'static,
        {
            let node = Handle::current().create_node().name("server").ip(SERVER).build();
            node.spawn(async move {
                let rng = rng_for(1, "server");
                let options = TransportOptions::default();
                let bound =
                    Transport::bind("server", book(), options, LinkFaults::default(), rng).await;
                let (transport, inbox) = bound.expect("binds");
                serve(transport, inbox).await;
            });
            tokio::time::sleep(Duration::from_millis(10)).await;
            node
        }

        /// Runs `test` on a client node of its own (the test's own node has no address).
        async fn on_client<F: Future<Output = ()> + Send + 'static>(test: F) {
            let client_ip = IpAddr::V4(Ipv4Addr::new(10, 9, 1, 1));
            let node = Handle::current().create_node().name("client").ip(client_ip).build();
            node.spawn(test).await.expect("the test's task ends");
        }

        fn client(name: &str) -> Transport<u64> {
            let options = TransportOptions::default();
            Transport::unbound(name, book(), options, LinkFaults::default(), rng_for(1, name)).0
        }

        #[madsim::test]
        async fn concurrent_calls_each_get_their_own_reply() {
            // Eight requests in, answered in reverse order: whichever caller reads a reply
            // hands it to its own caller.
            server(|transport, mut inbox| async move {
                let mut requests = Vec::new();
                while requests.len() < 8 {
                    requests.push(inbox.recv().await.expect("a request"));
                }
                for request in requests.iter().rev() {
                    transport.reply(request, &(request.body * 10)).await.expect("replies");
                }
                std::future::pending::<()>().await;
            })
            .await;
            on_client(async move {
                let client = client("client");
                let calls = (0..8u64).map(|body| {
                    let client = client.clone();
                    async move { client.call("server", &body, Duration::from_secs(5)).await }
                });
                let replies = futures::future::join_all(calls).await;
                let replies: Vec<u64> =
                    replies.into_iter().map(|reply| reply.expect("a reply")).collect();
                assert_eq!(replies, (0..8).map(|body| body * 10).collect::<Vec<_>>());
            })
            .await;
        }

        #[madsim::test]
        async fn a_late_reply_times_out_and_confuses_no_later_call() {
            // Request 0 is answered after a second; the others at once.
            server(|transport, mut inbox| async move {
                while let Some(request) = inbox.recv().await {
                    let transport = transport.clone();
                    tokio::spawn(async move {
                        if request.body == 0 {
                            tokio::time::sleep(Duration::from_secs(1)).await;
                        }
                        let _ = transport.reply(&request, &(request.body * 10)).await;
                    });
                }
            })
            .await;
            on_client(async move {
                let client = client("client");
                let started = tokio::time::Instant::now();
                let late = client.call("server", &0, Duration::from_millis(300)).await;
                let waited = started.elapsed();
                assert!(
                    matches!(late, Err(NetError::Timeout { after_ms: 300, .. })),
                    "the late call times out: {late:?}"
                );
                assert!(
                    waited >= Duration::from_millis(300) && waited < Duration::from_millis(400),
                    "it times out when its timeout runs out, not later: {waited:?}"
                );
                assert_eq!(client.call("server", &2, Duration::from_secs(5)).await.unwrap(), 20);
                tokio::time::sleep(Duration::from_millis(1500)).await; // The late reply arrives.
                assert_eq!(client.call("server", &3, Duration::from_secs(5)).await.unwrap(), 30);
            })
            .await;
        }

        #[madsim::test]
        async fn a_call_to_a_killed_peer_fails_before_its_timeout() {
            let server = server(|_transport, mut inbox| async move {
                while inbox.recv().await.is_some() {} // Never answers.
            })
            .await;
            on_client(async move {
                let client = client("client");
                let waiting = {
                    let client = client.clone();
                    tokio::spawn(
                        async move { client.call("server", &1, Duration::from_secs(30)).await },
                    )
                };
                tokio::time::sleep(Duration::from_millis(200)).await;
                let started = tokio::time::Instant::now();
                Handle::current().kill(server.id());
                let outcome = waiting.await.expect("the call's task ends");
                assert!(
                    matches!(outcome, Err(NetError::ConnectionLost { .. })),
                    "the call fails as lost: {outcome:?}"
                );
                assert!(started.elapsed() < Duration::from_secs(5), "long before its timeout");
            })
            .await;
        }
    }

    #[test]
    fn link_rules_merge_and_clear() {
        let faults = LinkFaults::default();
        assert_eq!(faults.rule("a", "b"), None);
        faults.set_every_link(LinkRule { delay_ms: 5, ..LinkRule::default() });
        faults.set_link(
            "a",
            "b",
            LinkRule { delay_ms: 7, drop_probability: 0.5, ..LinkRule::default() },
        );
        let merged = faults.rule("a", "b").unwrap();
        assert_eq!((merged.delay_ms, merged.drop_probability), (12, 0.5));
        assert_eq!(faults.rule("b", "a").unwrap().delay_ms, 5);
        faults.clear_every_link();
        assert_eq!(faults.rule("b", "a"), None);
        assert_eq!(faults.rule("a", "b").unwrap().delay_ms, 7);
        faults.clear_link("a", "b");
        assert_eq!(faults.rule("a", "b"), None);
        assert!(
            !faults.shared.active.load(Ordering::Acquire),
            "no rule left: the fast path is back"
        );
        faults.set_link("a", "b", LinkRule { delay_ms: 1, ..LinkRule::default() });
        faults.heal();
        assert_eq!(faults.rule("a", "b"), None);
    }
}
