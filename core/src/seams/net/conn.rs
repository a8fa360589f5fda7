//! One TCP connection: a writer shared by every sender, a reader task, and the calls waiting
//! for their reply on it.
//!
//! **Invariants:**
//! - Frames never interleave on a stream. A frame is written whole (`write_all`, then
//!   `flush`) while its writer holds the connection's write lock. A writer cancelled in the
//!   middle of a frame leaves the stream marked broken, and nothing is written after it.
//! - A reply reaches the call whose request carried its id, at most once: the reader takes
//!   the call out of the table to answer it, so a duplicated or late reply finds nobody and
//!   is dropped. Call ids are never reused on a connection (asserted).
//! - Once the connection ended (its end read, a frame that does not decode, a failed or cut
//!   write), every call waiting on it fails at once and no call enters it any more.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, WriteHalf};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, oneshot};

use super::frame::{self, Wire};
use super::{Incoming, Message, NetError};

/// One connection, dialed by this node or accepted from a peer.
pub(super) struct Connection<M, W = WriteHalf<TcpStream>> {
    /// The peer's name, shared with every message received on the connection.
    pub(super) peer: Arc<str>,
    writer: tokio::sync::Mutex<Writer<W>>,
    /// Cleared once the connection ended: it is not used for new messages any more.
    alive: AtomicBool,
    calls: Mutex<Calls<M>>,
}

struct Writer<W> {
    half: W,
    /// Set while a frame is being written, and left set if its writer was cancelled or the
    /// write failed: the stream may hold part of a frame, so nothing may follow it.
    broken: bool,
}

/// The calls waiting for a reply on this connection (only dialed connections carry them).
struct Calls<M> {
    waiting: BTreeMap<u64, oneshot::Sender<M>>,
    /// Set once the connection ended: every waiting call was failed, and none enters.
    closed: bool,
}

/// The receiving end of a call, until its reply comes or it is dropped (which takes it out of
/// the table, so a call that timed out leaves nothing behind).
pub(super) struct PendingCall<M, W> {
    connection: Arc<Connection<M, W>>,
    id: u64,
    pub(super) reply: oneshot::Receiver<M>,
}

impl<M, W> Drop for PendingCall<M, W> {
    fn drop(&mut self) {
        self.connection.lock_calls().waiting.remove(&self.id);
    }
}

impl<M: Message, W: AsyncWrite + Unpin> Connection<M, W> {
    /// A connection with `peer` that writes to `write` (its reader reads the other half).
    pub(super) fn new(peer: Arc<str>, write: W) -> Arc<Connection<M, W>> {
        Arc::new(Connection {
            peer,
            writer: tokio::sync::Mutex::new(Writer { half: write, broken: false }),
            alive: AtomicBool::new(true),
            calls: Mutex::new(Calls { waiting: BTreeMap::new(), closed: false }),
        })
    }

    pub(super) fn is_alive(&self) -> bool {
        self.alive.load(Ordering::Acquire)
    }

    /// Encodes `wire` and writes it, returning once it is flushed to the stream.
    pub(super) async fn write(&self, wire: &Wire<&M>) -> Result<(), NetError> {
        self.write_frame(&frame::encode(wire)?).await
    }

    /// Writes one encoded frame whole (see the module's invariants).
    pub(super) async fn write_frame(&self, frame: &[u8]) -> Result<(), NetError> {
        let mut writer = self.writer.lock().await;
        if writer.broken || !self.is_alive() {
            drop(writer);
            self.end();
            return Err(self.lost());
        }
        writer.broken = true; // Until the whole frame is flushed.
        let written = async {
            writer.half.write_all(frame).await?;
            writer.half.flush().await
        };
        if written.await.is_err() {
            drop(writer);
            self.end();
            return Err(self.lost());
        }
        writer.broken = false;
        Ok(())
    }

    /// Enters call `id` in the table, before its request is written (the reply may come
    /// before the writer returns); `None` once the connection ended.
    pub(super) fn enter_call(self: &Arc<Self>, id: u64) -> Option<PendingCall<M, W>> {
        let (sender, reply) = oneshot::channel();
        let mut calls = self.lock_calls();
        if calls.closed {
            return None;
        }
        let previous = calls.waiting.insert(id, sender);
        assert!(previous.is_none(), "call id {id} reused on the connection to {}", self.peer);
        Some(PendingCall { connection: self.clone(), id, reply })
    }

    /// Marks the connection ended and fails every call waiting on it: dropping a call's
    /// sender wakes it with an error.
    pub(super) fn end(&self) {
        self.alive.store(false, Ordering::Release);
        let mut calls = self.lock_calls();
        calls.closed = true;
        calls.waiting.clear();
    }

    pub(super) fn lost(&self) -> NetError {
        NetError::ConnectionLost { peer: self.peer.to_string() }
    }

    /// Reads frames until the connection ends: replies to the calls waiting for them, every
    /// other message (one-way or a request) to `inbox`. A message nobody can take (the inbox
    /// is gone: a pure client) is dropped. Runs in the connection's reader task.
    pub(super) async fn read_until_end(
        self: Arc<Self>,
        mut read: impl AsyncRead + Unpin,
        mut buffer: Vec<u8>,
        inbox: mpsc::Sender<Incoming<M, W>>,
    ) {
        while let Some(wire) = frame::read(&mut read, &mut buffer).await {
            let (body, reply_id) = match wire {
                Wire::Hello { .. } => continue,
                Wire::Reply { id, body } => {
                    let call = self.lock_calls().waiting.remove(&id);
                    // The caller may have gone (timed out) and dropped its receiver.
                    let _ = call.map(|sender| sender.send(body));
                    continue;
                }
                Wire::OneWay(body) => (body, None),
                Wire::Request { id, body } => (body, Some(id)),
            };
            let incoming = Incoming { body, connection: self.clone(), reply_id };
            let _ = inbox.send(incoming).await;
        }
        self.end();
    }
}

impl<M, W> Connection<M, W> {
    fn lock_calls(&self) -> MutexGuard<'_, Calls<M>> {
        // Every change to the table is one map operation: a panic elsewhere leaves it whole.
        self.calls.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}
