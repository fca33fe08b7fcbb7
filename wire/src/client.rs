//! A minimal async Thrift client (framed, compact or binary): the CLI and the tests use it.

use std::time::Duration;

use bytes::{Bytes, BytesMut};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::types::{decode_reply, encode_call, Reply};
use crate::{Call, Protocol};

/// Client-side failures.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// Connect, read or write failed.
    #[error("transport: {0}")]
    Io(#[from] std::io::Error),
    /// No answer in time.
    #[error("socket timeout")]
    Timeout,
    /// The reply could not be decoded.
    #[error("bad reply: {0}")]
    Decode(String),
}

/// A byte stream a client can run over: TCP or TLS.
pub trait Stream: AsyncRead + AsyncWrite + Unpin + Send {}

impl<T: AsyncRead + AsyncWrite + Unpin + Send> Stream for T {}

/// One connection to a proxy.
pub struct Client {
    stream: Box<dyn Stream>,
    protocol: Protocol,
    seqid: i32,
    timeout: Duration,
}

impl Client {
    /// Connects to `addr`.
    pub async fn connect(
        addr: &str,
        protocol: Protocol,
        timeout: Duration,
    ) -> Result<Client, ClientError> {
        let stream = tokio::time::timeout(timeout, TcpStream::connect(addr))
            .await
            .map_err(|_| ClientError::Timeout)??;
        stream.set_nodelay(true)?;
        Ok(Client::over(stream, protocol, timeout))
    }

    /// Connects to `addr` and runs a TLS handshake for `server_name` (TLS port, docs/SECURITY.md).
    #[cfg(feature = "tls")]
    pub async fn connect_tls(
        addr: &str,
        protocol: Protocol,
        timeout: Duration,
        connector: &tokio_rustls::TlsConnector,
        server_name: &str,
    ) -> Result<Client, ClientError> {
        let name = tokio_rustls::rustls::pki_types::ServerName::try_from(server_name.to_string())
            .map_err(|e| ClientError::Io(std::io::Error::other(e)))?;
        let fut = async {
            let tcp = TcpStream::connect(addr).await?;
            tcp.set_nodelay(true)?;
            connector.connect(name, tcp).await
        };
        let tls = tokio::time::timeout(timeout, fut)
            .await
            .map_err(|_| ClientError::Timeout)??;
        Ok(Client::over(tls, protocol, timeout))
    }

    /// A client over an established stream.
    pub fn over(stream: impl Stream + 'static, protocol: Protocol, timeout: Duration) -> Client {
        Client {
            stream: Box::new(stream),
            protocol,
            seqid: 0,
            timeout,
        }
    }

    /// Sends one call and waits for its reply.
    pub async fn call(&mut self, call: &Call) -> Result<Reply, ClientError> {
        self.seqid = self.seqid.wrapping_add(1);
        let frame = encode_call(self.protocol, self.seqid, call);
        self.send_raw(&frame).await?;
        let payload = self.read_frame().await?;
        let (_, reply) = decode_reply(&payload).map_err(|e| ClientError::Decode(e.to_string()))?;
        Ok(reply)
    }

    /// Writes raw bytes (tests use it for malformed frames).
    pub async fn send_raw(&mut self, bytes: &[u8]) -> Result<(), ClientError> {
        self.stream.write_all(bytes).await?;
        self.stream.flush().await?;
        Ok(())
    }

    /// Reads one reply frame payload.
    pub async fn read_frame(&mut self) -> Result<Bytes, ClientError> {
        let fut = async {
            let len = self.stream.read_i32().await?;
            if len < 0 {
                return Err(ClientError::Decode("negative frame length".into()));
            }
            let mut buf = BytesMut::zeroed(len as usize);
            self.stream.read_exact(&mut buf).await?;
            Ok(buf.freeze())
        };
        tokio::time::timeout(self.timeout, fut)
            .await
            .map_err(|_| ClientError::Timeout)?
    }
}
