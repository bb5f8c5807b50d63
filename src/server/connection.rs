//! One client connection's message loop, with a bound on message size.
//!
//! pgwire's own loop (`pgwire::tokio::process_socket`) buffers any message up
//! to 1 GB before a handler sees it, so 500 connections could each hold a
//! gigabyte that no statement bound counts. This loop makes the same steps
//! (TLS negotiation, decoding, dispatch to the handlers through pgwire's
//! `process_message`), but reads through a [`BoundedReader`], which follows the
//! message framing and ends the connection (FATAL, 08P01) as soon as a
//! header declares more than `max_message_size` bytes, before the body is
//! read. It also tells the client why a message could not be decoded, where
//! pgwire's loop closes the socket without a word.

use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use futures::{SinkExt, StreamExt};
use pgwire::api::{ClientInfo, ErrorHandler, PgWireConnectionState, PgWireServerHandlers};
use pgwire::error::{ErrorInfo, PgWireError};
use pgwire::messages::response::TransactionStatus;
use pgwire::messages::{PgWireBackendMessage, PgWireFrontendMessage};
use pgwire::tokio::server::PgWireMessageServerCodec;
use pgwire::tokio::server::{negotiate_tls, process_error, process_message};
use pgwire::tokio::TlsAcceptor;
use sluice_query::session::Session;

use super::pg::EndReason;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio::sync::watch;
use tokio_util::codec::{Framed, FramedParts};

/// The startup-phase request codes after which the client sends another
/// untyped packet (SSLRequest, GSSENCRequest).
const NEGOTIATION_CODES: [u32; 2] = [80_877_103, 80_877_104];

/// Serves one client until it leaves, its connection fails, it sends a
/// message longer than `max_message_size` bytes (told FATAL 08P01), or the
/// server asks it to end through `ending` (told FATAL with the reason's
/// SQLSTATE and message, at the next message boundary).
///
/// # Errors
/// The socket's I/O errors.
pub async fn serve_connection<H: PgWireServerHandlers>(
    socket: TcpStream,
    tls: Option<TlsAcceptor>,
    handlers: H,
    max_message_size: usize,
    mut ending: watch::Receiver<Option<EndReason>>,
) -> io::Result<()> {
    // A client that sends nothing at all is told why it is closed in plain
    // text, as there is no TLS to speak yet.
    let mut first = [0u8; 1];
    let asked = tokio::select! {
        biased;
        reason = asked_to_end(&mut ending) => Some(reason),
        _ = socket.peek(&mut first) => None,
    };
    if let Some(reason) = asked {
        let mut plain = socket;
        let _ = tokio::io::AsyncWriteExt::write_all(&mut plain, &fatal(reason)).await;
        close_gracefully(plain).await;
        return Ok(());
    }
    let Some(negotiated) = negotiate_tls(socket, tls).await? else {
        // A direct TLS handshake to a server without TLS.
        return Ok(());
    };
    let old = negotiated.into_parts();
    let mut frames = FrameTracker::new(max_message_size);
    // What negotiation read ahead is in the buffer, not behind the reader.
    frames.feed(&old.read_buf);
    let reader = BoundedReader {
        inner: old.io,
        frames,
    };
    let mut parts = FramedParts::new(reader, old.codec);
    parts.read_buf = old.read_buf;
    parts.write_buf = old.write_buf;
    let mut socket = Framed::from_parts(parts);

    let startup = handlers.startup_handler();
    let simple = handlers.simple_query_handler();
    let extended = handlers.extended_query_handler();
    let copy = handlers.copy_handler();
    let cancel = handlers.cancel_handler();
    let on_error = handlers.error_handler();
    loop {
        let next = tokio::select! {
            // Asked to end wins over a message the client already sent.
            biased;
            (code, message) = asked_to_end(&mut ending) => {
                tracing::info!(peer = %socket.socket_addr(), code, "{message}");
                let info = ErrorInfo::new("FATAL".into(), code.into(), message.into());
                socket
                    .send(PgWireBackendMessage::ErrorResponse(info.into()))
                    .await?;
                close_gracefully(socket.into_inner().inner).await;
                return Ok(());
            }
            next = socket.next() => next,
        };
        let message = match next {
            Some(Ok(message)) => message,
            Some(Err(e)) => {
                let refusal = match socket.get_ref().frames.too_large {
                    Some(len) => format!(
                        "message of {len} bytes exceeds max_message_size ({max_message_size} bytes)"
                    ),
                    None if matches!(e, PgWireError::IoError(_)) => break,
                    None => format!("invalid message: {e}"),
                };
                tracing::warn!(peer = %socket.socket_addr(), "{refusal}");
                let info = ErrorInfo::new("FATAL".into(), "08P01".into(), refusal);
                socket
                    .send(PgWireBackendMessage::ErrorResponse(info.into()))
                    .await?;
                close_gracefully(socket.into_inner().inner).await;
                return Ok(());
            }
            // The client hung up.
            None => break,
        };
        // Terminate: the client is leaving and may wait for the socket to close.
        if matches!(message, PgWireFrontendMessage::Terminate(_)) {
            break;
        }
        let in_extended_query = match socket.state() {
            PgWireConnectionState::CopyInProgress(extended) => extended,
            _ => message.is_extended_query(),
        };
        report_block_status(&mut socket, &message);
        // `process_message` answers a CancelRequest and closes its connection.
        let is_cancel_request = matches!(message, PgWireFrontendMessage::CancelRequest(_));
        let handled = process_message(
            message,
            &mut socket,
            Arc::clone(&startup),
            Arc::clone(&simple),
            Arc::clone(&extended),
            Arc::clone(&copy),
            Arc::clone(&cancel),
        )
        .await;
        if let Err(mut e) = handled {
            // Any error inside a block fails it, those pgwire meets before a
            // statement runs (Parse, Bind) included.
            if let Some(session) = socket.session_extensions().get::<Mutex<Session>>() {
                session
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .fail_transaction();
            }
            // A statement stopped because the connection is being ended
            // reports why, FATAL, as PostgreSQL's does.
            if let Some((code, message)) = *ending.borrow() {
                let info = ErrorInfo::new("FATAL".into(), code.into(), message.into());
                e = PgWireError::UserError(Box::new(info));
            }
            on_error.on_error(&socket, &mut e);
            let fatal = e.is_fatal();
            process_error(&mut socket, e, in_extended_query).await?;
            if fatal {
                close_gracefully(socket.into_inner().inner).await;
                return Ok(());
            }
        }
        if is_cancel_request {
            break;
        }
    }
    Ok(())
}

/// Makes the transaction status pgwire reports in ReadyForQuery the session's
/// own. pgwire tracks the status from each statement's response and cannot
/// take a failed block back to healthy (ROLLBACK TO SAVEPOINT), so: before a
/// Sync, whose ReadyForQuery reports the status as it stands, it is set to
/// the session's; before a simple Query in a failed block it is set to "in a
/// block", from which any error (every statement but COMMIT, ROLLBACK and
/// ROLLBACK TO SAVEPOINT is refused with 25P02) takes it back to failed.
fn report_block_status<S: 'static, ST>(
    socket: &mut Framed<S, PgWireMessageServerCodec<ST>>,
    message: &PgWireFrontendMessage,
) {
    // Only these two are answered with ReadyForQuery: the others need no lock.
    if !matches!(
        message,
        PgWireFrontendMessage::Sync(_) | PgWireFrontendMessage::Query(_)
    ) {
        return;
    }
    let Some(session) = socket.session_extensions().get::<Mutex<Session>>() else {
        return;
    };
    let truth = {
        let session = session.lock().unwrap_or_else(|p| p.into_inner());
        if session.transaction_failed() {
            TransactionStatus::Error
        } else if session.in_transaction() {
            TransactionStatus::Transaction
        } else {
            TransactionStatus::Idle
        }
    };
    match message {
        PgWireFrontendMessage::Sync(_) => socket.set_transaction_status(truth),
        PgWireFrontendMessage::Query(q)
            if truth == TransactionStatus::Error && !q.query.trim().is_empty() =>
        {
            socket.set_transaction_status(TransactionStatus::Transaction)
        }
        _ => {}
    }
}

/// A FATAL ErrorResponse for `reason`, encoded.
fn fatal((code, message): EndReason) -> Vec<u8> {
    let info = ErrorInfo::new("FATAL".into(), code.into(), message.into());
    let mut bytes = bytes::BytesMut::new();
    // Encoding an ErrorResponse into memory cannot fail.
    let _ = PgWireBackendMessage::ErrorResponse(info.into()).encode(&mut bytes);
    bytes.to_vec()
}

/// The reason the server gives once it asks the connection to end: at once
/// if it already has (a statement just stopped by `pg_terminate_backend`).
async fn asked_to_end(ending: &mut watch::Receiver<Option<EndReason>>) -> EndReason {
    loop {
        if let Some(reason) = *ending.borrow_and_update() {
            return reason;
        }
        if ending.changed().await.is_err() {
            // No one can ask any more.
            std::future::pending::<()>().await;
        }
    }
}

/// How long a refused client may go on sending before its socket is closed.
const REFUSAL_DRAIN: std::time::Duration = std::time::Duration::from_secs(5);

/// Closes a connection just sent a FATAL error so that its client reads it,
/// even while still sending (a refused message, a pipeline): closing a socket
/// with unread bytes resets it, and the reset can overtake the error. So the
/// write side is shut (the client reads the error, then end of stream) and
/// what the client still sends is read and dropped until it hangs up, for at
/// most [`REFUSAL_DRAIN`].
async fn close_gracefully<S: AsyncRead + AsyncWrite + Unpin>(mut io: S) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    if io.shutdown().await.is_err() {
        return;
    }
    let mut scratch = vec![0u8; 64 << 10];
    let drain = async { while matches!(io.read(&mut scratch).await, Ok(n) if n > 0) {} };
    let _ = tokio::time::timeout(REFUSAL_DRAIN, drain).await;
}

/// The socket as the message decoder reads it, with each frontend message's
/// declared length checked as its header passes.
struct BoundedReader<S> {
    inner: S,
    frames: FrameTracker,
}

impl<S: AsyncRead + Unpin> AsyncRead for BoundedReader<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let this = &mut *self;
        match Pin::new(&mut this.inner).poll_read(cx, buf) {
            Poll::Ready(Ok(())) => {
                this.frames.feed(&buf.filled()[before..]);
                if let Some(len) = this.frames.too_large {
                    return Poll::Ready(Err(io::Error::new(
                        io::ErrorKind::InvalidData,
                        format!("message of {len} bytes is too large"),
                    )));
                }
                Poll::Ready(Ok(()))
            }
            other => other,
        }
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for BoundedReader<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

/// Follows the frontend's framing through a byte stream: untyped packets
/// (length, request code) until the startup message, then typed messages
/// (type byte, length). Each length counts itself, not the type byte.
#[derive(Debug)]
struct FrameTracker {
    max: usize,
    /// Past the startup packet: every message starts with a type byte.
    typed: bool,
    header: [u8; 8],
    header_read: usize,
    body_left: usize,
    /// The declared length of the first message over `max`.
    too_large: Option<usize>,
}

impl FrameTracker {
    fn new(max: usize) -> FrameTracker {
        FrameTracker {
            max,
            typed: false,
            header: [0; 8],
            header_read: 0,
            body_left: 0,
            too_large: None,
        }
    }

    /// Takes the next bytes of the stream; records a message over the bound.
    fn feed(&mut self, mut bytes: &[u8]) {
        while !bytes.is_empty() && self.too_large.is_none() {
            if self.body_left > 0 {
                let n = self.body_left.min(bytes.len());
                self.body_left -= n;
                bytes = &bytes[n..];
                continue;
            }
            let header_len = if self.typed { 5 } else { 8 };
            let n = (header_len - self.header_read).min(bytes.len());
            self.header[self.header_read..self.header_read + n].copy_from_slice(&bytes[..n]);
            self.header_read += n;
            bytes = &bytes[n..];
            if self.header_read < header_len {
                return;
            }
            self.header_read = 0;
            let word = |at: usize| {
                u32::from_be_bytes([
                    self.header[at],
                    self.header[at + 1],
                    self.header[at + 2],
                    self.header[at + 3],
                ])
            };
            if self.typed {
                let len = word(1) as usize;
                if len > self.max {
                    self.too_large = Some(len);
                }
                self.body_left = len.saturating_sub(4);
            } else {
                // pgwire bounds startup packets (10,000 bytes) itself.
                self.body_left = (word(0) as usize).saturating_sub(8);
                self.typed = !NEGOTIATION_CODES.contains(&word(4));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn startup() -> Vec<u8> {
        let body = b"user\0me\0\0";
        let mut packet = ((8 + body.len()) as u32).to_be_bytes().to_vec();
        packet.extend(196_608u32.to_be_bytes());
        packet.extend(body);
        packet
    }

    fn typed(kind: u8, body_len: usize) -> Vec<u8> {
        let mut message = vec![kind];
        message.extend(((body_len + 4) as u32).to_be_bytes());
        message.extend(vec![b'x'; body_len]);
        message
    }

    #[test]
    fn messages_within_the_bound_pass_however_the_stream_is_split() {
        let mut stream = 80_877_103u32.to_be_bytes().to_vec();
        stream.splice(0..0, 8u32.to_be_bytes());
        stream.extend(startup());
        stream.extend(typed(b'Q', 96));
        stream.extend(typed(b'S', 0));
        stream.extend(typed(b'Q', 96));
        for chunk in [1, 2, 3, 5, 7, 64, stream.len()] {
            let mut frames = FrameTracker::new(100);
            for piece in stream.chunks(chunk) {
                frames.feed(piece);
            }
            assert_eq!(frames.too_large, None, "chunks of {chunk}");
            assert!(frames.typed);
            assert_eq!((frames.header_read, frames.body_left), (0, 0));
        }
    }

    #[test]
    fn a_header_over_the_bound_is_caught_before_its_body() {
        let mut stream = startup();
        stream.extend(typed(b'Q', 10));
        let header_end = stream.len() + 5;
        stream.extend(typed(b'Q', 97));
        let mut frames = FrameTracker::new(100);
        frames.feed(&stream[..header_end]);
        assert_eq!(frames.too_large, Some(101));
    }

    #[test]
    fn the_startup_packet_is_not_read_as_a_typed_message() {
        // A startup packet whose bytes would read as a huge typed length.
        let mut frames = FrameTracker::new(100);
        frames.feed(&startup());
        assert_eq!(frames.too_large, None);
        frames.feed(&typed(b'p', 50));
        assert_eq!(frames.too_large, None);
    }
}
