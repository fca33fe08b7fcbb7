//! A minimal async Thrift client (framed, compact or binary): the CLI and the tests use it.

use std::time::Duration;

use bytes::{Bytes, BytesMut};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::proto::types::{decode_reply, encode_call, Reply};
use crate::proto::{Call, Protocol};

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

/// One connection to a proxy.
pub struct Client {
    stream: TcpStream,
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
        Ok(Client {
            stream,
            protocol,
            seqid: 0,
            timeout,
        })
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
