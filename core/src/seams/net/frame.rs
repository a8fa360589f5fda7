//! Framing: each message is a postcard-encoded [`Wire`] behind a 4-byte big-endian length.
//!
//! **Invariant:** no frame longer than [`FRAME_BYTES_MAX`] is written or read: encoding one is
//! a typed error, and a stream that announces one is read no further.

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncRead, AsyncReadExt};

use super::NetError;

/// Largest frame a transport sends or accepts: an image upload plus headroom. A longer frame
/// is a protocol error and closes the connection.
pub const FRAME_BYTES_MAX: usize = 64 << 20;

/// Bytes of the big-endian length that prefixes every frame.
const LENGTH_PREFIX_BYTES: usize = 4;

/// What travels in one frame. `Hello` opens every connection and names the sender.
#[derive(Debug, PartialEq, Serialize, Deserialize)]
pub(super) enum Wire<M> {
    Hello { from: String },
    OneWay(M),
    Request { id: u64, body: M },
    Reply { id: u64, body: M },
}

/// One whole frame, length prefix included.
pub(super) fn encode<M: Serialize>(wire: &Wire<&M>) -> Result<Vec<u8>, NetError> {
    let mut frame = vec![0; LENGTH_PREFIX_BYTES];
    frame =
        postcard::to_extend(wire, frame).map_err(|error| NetError::Encode(error.to_string()))?;
    let length = frame.len() - LENGTH_PREFIX_BYTES;
    if length > FRAME_BYTES_MAX {
        return Err(NetError::Encode(format!("frame of {length} bytes exceeds {FRAME_BYTES_MAX}")));
    }
    frame[..LENGTH_PREFIX_BYTES].copy_from_slice(&(length as u32).to_be_bytes());
    Ok(frame)
}

/// The next frame of `stream`, decoded; `None` once the stream ended or failed, announced a
/// frame over [`FRAME_BYTES_MAX`], or sent one that does not decode: in each case it cannot be
/// read further (a frame's end is no longer known, or its sender cannot be trusted).
pub(super) async fn read<M, S>(stream: &mut S, buffer: &mut Vec<u8>) -> Option<Wire<M>>
where
    M: DeserializeOwned,
    S: AsyncRead + Unpin,
{
    let mut prefix = [0; LENGTH_PREFIX_BYTES];
    stream.read_exact(&mut prefix).await.ok()?;
    let length = u32::from_be_bytes(prefix) as usize;
    if length > FRAME_BYTES_MAX {
        return None;
    }
    buffer.resize(length, 0);
    stream.read_exact(buffer).await.ok()?;
    let wire = postcard::from_bytes(buffer).ok();
    if buffer.capacity() > READ_BUFFER_BYTES {
        *buffer = Vec::with_capacity(READ_BUFFER_BYTES); // A large frame passed: give it back.
    }
    wire
}

/// What a connection's read buffer keeps between frames.
pub(super) const READ_BUFFER_BYTES: usize = 8 << 10;
