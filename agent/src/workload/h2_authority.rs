//! Interop shim for gRPC C-core clients (Python `spiffe`, grpc >= 1.57): over a unix socket
//! they send the percent-encoded socket path as HTTP/2 `:authority`, which the `h2` crate
//! rejects as malformed (hyperium/h2#487, grpc/grpc#38142). This wraps the accepted stream
//! and rewrites such a value in place to a same-length valid name, before `h2` sees it.
//!
//! Only literal, non-Huffman `:authority` values (static name index or raw literal name) are
//! touched. The length stays the same, so frame lengths and both HPACK dynamic tables stay
//! consistent. Everything else passes through byte for byte.
//!
//! Memory is bounded per connection (issue 11, finding 4): only a HEADERS or CONTINUATION
//! frame within [`MAX_FRAME_SIZE`] is held whole, to patch it; every other frame's payload,
//! and a frame that declares more than `h2` accepts, streams through as it arrives, so `h2`
//! sees the header at once and refuses an oversized frame itself.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::UnixStream;
use tonic::transport::server::Connected;

use super::caller::ConnectedPeer;

/// The largest frame payload the Workload API server accepts (HTTP/2
/// `SETTINGS_MAX_FRAME_SIZE`, set on the server to this same value: `h2`'s default, 16 KiB).
pub const MAX_FRAME_SIZE: u32 = 16_384;

const PREFACE_LEN: usize = 24;
const FRAME_HEADER_LEN: usize = 9;
const READ_CHUNK: usize = 8192;
const TYPE_HEADERS: u8 = 1;
const TYPE_CONTINUATION: u8 = 9;
const FLAG_PADDED: u8 = 0x8;
const FLAG_PRIORITY: u8 = 0x20;

/// The most this shim holds for one connection: a whole header frame being collected, plus
/// one read.
pub const MAX_BUFFERED: usize = FRAME_HEADER_LEN + MAX_FRAME_SIZE as usize + READ_CHUNK;

/// A server-side stream that repairs malformed `:authority` values in client HEADERS.
#[derive(Debug)]
pub struct AuthorityFix<S> {
    inner: S,
    preface_left: usize,
    /// Payload bytes of the current frame still to pass through unbuffered.
    passthrough_left: usize,
    pending: Vec<u8>,
    ready: Vec<u8>,
    ready_pos: usize,
}

impl<S> AuthorityFix<S> {
    /// Wraps a freshly accepted stream (before the HTTP/2 preface).
    pub fn new(inner: S) -> Self {
        Self {
            inner,
            preface_left: PREFACE_LEN,
            passthrough_left: 0,
            pending: Vec::new(),
            ready: Vec::new(),
            ready_pos: 0,
        }
    }

    /// Moves what can go on from `pending` to `ready`: the preface, frame headers, payloads
    /// of frames that are not patched, and complete header frames, patched.
    fn process(&mut self) {
        loop {
            if self.preface_left > 0 {
                let take = self.preface_left.min(self.pending.len());
                self.ready.extend(self.pending.drain(..take));
                self.preface_left -= take;
                if self.preface_left > 0 {
                    return;
                }
            } else if self.passthrough_left > 0 {
                let take = self.passthrough_left.min(self.pending.len());
                if take == 0 {
                    return;
                }
                self.ready.extend(self.pending.drain(..take));
                self.passthrough_left -= take;
            } else if self.pending.len() >= FRAME_HEADER_LEN {
                let length = usize::from(self.pending[0]) << 16
                    | usize::from(self.pending[1]) << 8
                    | usize::from(self.pending[2]);
                let (kind, flags) = (self.pending[3], self.pending[4]);
                let patched = (kind == TYPE_HEADERS || kind == TYPE_CONTINUATION)
                    && length <= MAX_FRAME_SIZE as usize;
                if !patched {
                    self.ready.extend(self.pending.drain(..FRAME_HEADER_LEN));
                    self.passthrough_left = length;
                    continue;
                }
                let total = FRAME_HEADER_LEN + length;
                if self.pending.len() < total {
                    return;
                }
                let start = self.ready.len();
                self.ready.extend(self.pending.drain(..total));
                patch_headers(&mut self.ready[start + FRAME_HEADER_LEN..], kind, flags);
            } else {
                return;
            }
        }
    }

    /// Bytes held for this connection (the bound above, checked by the tests).
    #[cfg(test)]
    fn buffered(&self) -> usize {
        self.pending.len() + self.ready.len()
    }
}

/// Walks one header block fragment and rewrites malformed `:authority` literals.
fn patch_headers(payload: &mut [u8], kind: u8, flags: u8) {
    let mut start = 0;
    let mut end = payload.len();
    if kind == TYPE_HEADERS {
        if flags & FLAG_PADDED != 0 {
            let Some(&pad) = payload.first() else { return };
            start = 1;
            end = end.saturating_sub(usize::from(pad));
        }
        if flags & FLAG_PRIORITY != 0 {
            start += 5;
        }
    }
    if start >= end {
        return;
    }
    let block = &mut payload[start..end];
    let mut pos = 0;
    while pos < block.len() {
        let first = block[pos];
        if first & 0x80 != 0 {
            // Indexed field.
            let Some(next) = skip_integer(block, pos, 7) else {
                return;
            };
            pos = next;
        } else if first & 0xe0 == 0x20 {
            // Dynamic table size update.
            let Some(next) = skip_integer(block, pos, 5) else {
                return;
            };
            pos = next;
        } else {
            let prefix = if first & 0x40 != 0 { 6 } else { 4 };
            let Some((name_index, next)) = read_integer(block, pos, prefix) else {
                return;
            };
            pos = next;
            let mut is_authority = name_index == 1;
            if name_index == 0 {
                let Some(next) = skip_string(block, pos) else {
                    return;
                };
                // A raw (non-Huffman) literal name, as gRPC C-core sends it.
                is_authority = block[pos] & 0x80 == 0
                    && block.get(pos + 1..next) == Some(b":authority".as_slice());
                pos = next;
            }
            let Some(&header) = block.get(pos) else {
                return;
            };
            let huffman = header & 0x80 != 0;
            let Some((len, value_start)) = read_integer(block, pos, 7) else {
                return;
            };
            let value_end = value_start.saturating_add(len as usize);
            if value_end > block.len() {
                return;
            }
            if is_authority && !huffman {
                sanitize(&mut block[value_start..value_end]);
            }
            pos = value_end;
        }
    }
}

/// Replaces every byte that cannot appear in a host name with `-`.
fn sanitize(value: &mut [u8]) {
    let bad = value
        .iter()
        .any(|b| !(b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b':' | b'[' | b']')));
    if bad {
        for b in value.iter_mut() {
            if !(b.is_ascii_alphanumeric() || *b == b'.') {
                *b = b'-';
            }
        }
    }
}

/// An HPACK integer with an N-bit prefix at `pos`: its value and the position after it.
fn read_integer(block: &[u8], pos: usize, prefix: u32) -> Option<(u64, usize)> {
    let max = (1u64 << prefix) - 1;
    let mut value = u64::from(*block.get(pos)?) & max;
    let mut pos = pos + 1;
    if value < max {
        return Some((value, pos));
    }
    let mut shift = 0;
    loop {
        let b = *block.get(pos)?;
        pos += 1;
        value = value.checked_add((u64::from(b) & 0x7f).checked_shl(shift)?)?;
        if b & 0x80 == 0 {
            return Some((value, pos));
        }
        shift += 7;
        if shift > 56 {
            return None;
        }
    }
}

fn skip_integer(block: &[u8], pos: usize, prefix: u32) -> Option<usize> {
    read_integer(block, pos, prefix).map(|(_, next)| next)
}

fn skip_string(block: &[u8], pos: usize) -> Option<usize> {
    let (len, start) = read_integer(block, pos, 7)?;
    let end = start.checked_add(usize::try_from(len).ok()?)?;
    (end <= block.len()).then_some(end)
}

impl<S: AsyncRead + Unpin> AsyncRead for AuthorityFix<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        loop {
            if this.ready_pos < this.ready.len() {
                let n = buf.remaining().min(this.ready.len() - this.ready_pos);
                buf.put_slice(&this.ready[this.ready_pos..this.ready_pos + n]);
                this.ready_pos += n;
                if this.ready_pos == this.ready.len() {
                    this.ready.clear();
                    this.ready_pos = 0;
                }
                return Poll::Ready(Ok(()));
            }
            let mut chunk = [0u8; READ_CHUNK];
            let mut read = ReadBuf::new(&mut chunk);
            match Pin::new(&mut this.inner).poll_read(cx, &mut read) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                Poll::Ready(Ok(())) => {
                    if read.filled().is_empty() {
                        // EOF: hand over whatever is left unparsed, then EOF.
                        this.ready.append(&mut this.pending);
                        if this.ready.is_empty() {
                            return Poll::Ready(Ok(()));
                        }
                        continue;
                    }
                    this.pending.extend_from_slice(read.filled());
                    this.process();
                }
            }
        }
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for AuthorityFix<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

impl Connected for AuthorityFix<UnixStream> {
    type ConnectInfo = ConnectedPeer;

    /// Called once per connection, right after accept: the peer as it is now.
    fn connect_info(&self) -> Self::ConnectInfo {
        ConnectedPeer::observe(&self.inner.connect_info())
    }
}

#[cfg(test)]
#[path = "h2_authority_tests.rs"]
mod tests;
