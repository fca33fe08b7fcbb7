//! A connection's read side with a buffer that exists only while bytes wait to be consumed: an
//! idle plain-TCP connection waits for readability holding no buffer at all, so ten thousand
//! idle clients do not each keep 4 KiB (issue 20 part 4).

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::{Buf, BytesMut};
use futures::FutureExt;
use tokio::io::{AsyncRead, AsyncReadExt, ReadBuf};
use tokio::net::tcp::OwnedReadHalf;

/// Bytes read from the socket in one go while a frame is arriving.
pub const READ_BUFFER: usize = 4 * 1024;

/// Something a connection reads from.
pub trait Source: AsyncRead + Unpin + Send {
    /// Reads what has arrived into `buf`, waiting until something has (0: end of stream).
    /// Cancel-safe: dropped while waiting, nothing was read.
    fn fill<'a>(
        &'a mut self,
        buf: &'a mut BytesMut,
    ) -> impl Future<Output = io::Result<usize>> + Send + 'a;
}

impl Source for OwnedReadHalf {
    async fn fill(&mut self, buf: &mut BytesMut) -> io::Result<usize> {
        loop {
            // Readiness first, memory after: the wait itself holds no buffer.
            self.readable().await?;
            buf.reserve(READ_BUFFER);
            // `read_buf` (poll_read) marks the socket not ready after a short read, so the next
            // wait sleeps in epoll at once; `try_read_buf` keeps the readiness and costs every
            // request a second read that finds nothing (EAGAIN).
            match self.read_buf(buf).now_or_never() {
                Some(r) => return r,
                // A spurious wake-up: give the memory back before waiting again.
                None if buf.is_empty() => *buf = BytesMut::new(),
                None => {}
            }
        }
    }
}

impl<T: AsyncRead + Send> Source for tokio::io::ReadHalf<T> {
    /// A TLS stream cannot be asked for readiness: its library holds records of its own, so the
    /// buffer is taken for the wait (TLS connections cost their library's buffers anyway).
    async fn fill(&mut self, buf: &mut BytesMut) -> io::Result<usize> {
        buf.reserve(READ_BUFFER);
        self.read_buf(buf).await
    }
}

/// The read side of one connection.
pub struct FrameReader<R> {
    inner: R,
    /// Read but not yet consumed; no capacity at all between frames.
    buf: BytesMut,
}

impl<R: Source> FrameReader<R> {
    /// A reader over `inner`, holding no buffer yet.
    pub fn new(inner: R) -> Self {
        FrameReader {
            inner,
            buf: BytesMut::new(),
        }
    }

    /// Waits for the next frame's first byte: `true` once it is here, `false` when the peer
    /// closed. Cancel-safe: what was read stays buffered.
    pub async fn wait(&mut self) -> io::Result<bool> {
        if !self.buf.is_empty() {
            return Ok(true);
        }
        Ok(self.inner.fill(&mut self.buf).await? > 0)
    }

    /// Gives the buffer's memory back once everything read was consumed (after each frame).
    pub fn release(&mut self) {
        if self.buf.is_empty() {
            self.buf = BytesMut::new();
        }
    }

    /// Bytes of buffer held now.
    #[cfg(test)]
    fn held(&self) -> usize {
        self.buf.capacity()
    }
}

impl<R: AsyncRead + Unpin> AsyncRead for FrameReader<R> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        out: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let me = self.get_mut();
        if me.buf.is_empty() {
            // Large payloads are read straight into their own buffer.
            return Pin::new(&mut me.inner).poll_read(cx, out);
        }
        let n = me.buf.len().min(out.remaining());
        out.put_slice(&me.buf[..n]);
        me.buf.advance(n);
        Poll::Ready(Ok(()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncWriteExt;
    use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
    use tokio::net::{TcpListener, TcpStream};

    /// A reader over the server side of a fresh loopback connection, the client, and the
    /// server's write half (kept so the connection stays open).
    async fn connected() -> (FrameReader<OwnedReadHalf>, TcpStream, OwnedWriteHalf) {
        let l = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = l.local_addr().expect("addr");
        let client = TcpStream::connect(addr).await.expect("connect");
        let (server, _) = l.accept().await.expect("accept");
        let (rd, wr) = server.into_split();
        (FrameReader::new(rd), client, wr)
    }

    /// One request, one read: after a read that drained the socket, the next wait must sleep in
    /// epoll instead of waking at once for a read that finds nothing (EAGAIN).
    #[tokio::test]
    async fn a_drained_socket_is_not_reported_readable_again() {
        let (mut r, mut client, _wr) = connected().await;
        client.write_all(&[0, 0, 0, 1, 9]).await.expect("write");
        assert!(r.wait().await.expect("wait"));
        assert_eq!(r.read_u32().await.expect("len"), 1);
        assert_eq!(r.read_u8().await.expect("payload"), 9);
        r.release();
        assert!(
            r.inner.readable().now_or_never().is_none(),
            "readiness kept after a short read: the next request costs an extra read"
        );
    }

    #[tokio::test]
    async fn an_idle_connection_holds_no_buffer_and_frames_read_whole() {
        let (mut r, mut client, _wr) = connected().await;
        assert_eq!(r.held(), 0, "nothing before the first byte");
        // A wait that is cancelled (the close signal in the server) loses nothing and holds
        // nothing.
        let waited = tokio::time::timeout(std::time::Duration::from_millis(50), r.wait()).await;
        assert!(waited.is_err());
        assert_eq!(r.held(), 0);
        // Two frames in one write, then one larger than the buffer.
        let big = vec![7u8; 3 * READ_BUFFER];
        let mut bytes = vec![0, 0, 0, 3, 1, 2, 3, 0, 0, 0, 2, 4, 5];
        bytes.extend((big.len() as u32).to_be_bytes());
        bytes.extend(&big);
        client.write_all(&bytes).await.expect("write");
        for want in [vec![1u8, 2, 3], vec![4, 5], big] {
            assert!(r.wait().await.expect("wait"));
            let len = r.read_u32().await.expect("len") as usize;
            let mut payload = vec![0u8; len];
            r.read_exact(&mut payload).await.expect("payload");
            assert_eq!(payload, want);
            r.release();
        }
        assert_eq!(r.held(), 0, "released after the last frame");
        drop(client);
        assert!(!r.wait().await.expect("eof"), "peer closed");
    }
}
