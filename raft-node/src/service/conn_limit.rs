//! A bound on the HTTP API's open connections.
//!
//! Every open connection costs a task and buffers, and idle keep-alive or
//! slow clients can hold many open at once; without a bound, clients decide
//! how much memory the node uses. [`LimitedListener`] accepts a connection
//! only while fewer than the limit are open: past it, new connections wait in
//! the kernel's accept backlog (and, if that fills, are refused by the
//! kernel) until one closes. It logs when the limit is reached, at most once
//! every ten seconds, never once per connection.

use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tracing::warn;

/// A TCP listener that keeps at most `limit` accepted connections open.
#[derive(Debug)]
pub struct LimitedListener {
    inner: TcpListener,
    permits: Arc<Semaphore>,
    limit: usize,
    last_warning: Option<tokio::time::Instant>,
}

/// Least time between two "limit reached" warnings.
const WARN_EVERY: std::time::Duration = std::time::Duration::from_secs(10);

impl LimitedListener {
    /// Wraps `inner`, allowing `limit` (at least 1) open connections.
    pub fn new(inner: TcpListener, limit: usize) -> LimitedListener {
        let limit = limit.max(1);
        LimitedListener {
            inner,
            permits: Arc::new(Semaphore::new(limit)),
            limit,
            last_warning: None,
        }
    }

    /// How many connections are open now.
    pub fn open(&self) -> usize {
        self.limit - self.permits.available_permits()
    }
}

impl axum::serve::Listener for LimitedListener {
    type Io = LimitedStream;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        let permit = match self.permits.clone().try_acquire_owned() {
            Ok(p) => p,
            Err(_) => {
                let now = tokio::time::Instant::now();
                if self
                    .last_warning
                    .is_none_or(|t| now.duration_since(t) >= WARN_EVERY)
                {
                    self.last_warning = Some(now);
                    warn!(
                        limit = self.limit,
                        "HTTP connection limit reached; new connections wait until one closes"
                    );
                }
                self.permits
                    .clone()
                    .acquire_owned()
                    .await
                    .expect("the semaphore is never closed")
            }
        };
        let (stream, addr) = axum::serve::Listener::accept(&mut self.inner).await;
        (
            LimitedStream {
                inner: stream,
                _permit: permit,
            },
            addr,
        )
    }

    fn local_addr(&self) -> io::Result<Self::Addr> {
        self.inner.local_addr()
    }
}

/// An accepted connection; closing it frees its place.
#[derive(Debug)]
pub struct LimitedStream {
    inner: TcpStream,
    _permit: OwnedSemaphorePermit,
}

impl AsyncRead for LimitedStream {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl AsyncWrite for LimitedStream {
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

#[cfg(test)]
mod tests {
    use super::*;
    use axum::serve::Listener;
    use std::time::Duration;

    #[tokio::test]
    async fn a_connection_past_the_limit_waits_until_one_closes() {
        let tcp = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = tcp.local_addr().unwrap();
        let mut l = LimitedListener::new(tcp, 2);
        let _c1 = TcpStream::connect(addr).await.unwrap();
        let _c2 = TcpStream::connect(addr).await.unwrap();
        let _c3 = TcpStream::connect(addr).await.unwrap();
        let (a, _) = l.accept().await;
        let (b, _) = l.accept().await;
        assert_eq!(l.open(), 2);
        // The third is connected (the kernel completed the handshake) but
        // not accepted while two are open. No timing is involved: the
        // accept is polled once and must be pending.
        let c = {
            let third = l.accept();
            tokio::pin!(third);
            assert!(futures::poll!(third.as_mut()).is_pending());
            drop(a);
            tokio::time::timeout(Duration::from_secs(30), third)
                .await
                .expect("accepted once a connection closed")
        };
        assert_eq!(l.open(), 2);
        drop(b);
        assert_eq!(l.open(), 1);
        drop(c);
        assert_eq!(l.open(), 0);
    }
}
