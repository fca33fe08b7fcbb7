//! A one-request HTTP/1.1 client of the admin port (operations.md §4): connect (TLS when given
//! a connector), send, read the whole answer, close. Used by the operator CLI, the cluster
//! forwarder and the tests.

use std::future::Future;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
pub use hyper::header::{self, HeaderMap, HeaderName, HeaderValue};
/// What building a request can fail with (a method or header value HTTP cannot carry).
pub use hyper::http::Error as BuildError;
pub use hyper::{Method, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio_rustls::rustls::pki_types::ServerName;
use tokio_rustls::TlsConnector;

/// How long [`get`] and [`post`] wait for the whole answer.
pub const TIMEOUT: Duration = Duration::from_secs(10);

/// TLS for a request: the connector and the name the server's certificate must carry.
#[derive(Clone)]
pub struct Tls {
    /// Trust anchors and client certificate.
    pub connector: TlsConnector,
    /// The name checked against the server certificate.
    pub name: ServerName<'static>,
}

/// A whole answer.
#[derive(Debug)]
pub struct Answer {
    /// Status code.
    pub status: StatusCode,
    /// Response headers.
    pub headers: HeaderMap,
    /// The body, read to its end.
    pub body: Bytes,
}

impl Answer {
    /// The body as text (invalid UTF-8 replaced).
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// A header's value as text, if present and visible ASCII.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
}

/// Why a request got no answer.
#[derive(Debug, thiserror::Error)]
pub enum HttpError {
    /// The TCP connection failed.
    #[error("connect to {addr}: {source}")]
    Connect {
        /// The address tried.
        addr: String,
        /// The socket error.
        source: std::io::Error,
    },
    /// The TLS handshake failed.
    #[error("TLS handshake: {0}")]
    Tls(std::io::Error),
    /// A header value that HTTP cannot carry, or a path that is not one.
    #[error("bad request: {0}")]
    Request(#[from] hyper::http::Error),
    /// The exchange failed: the server closed early or answered something that is not HTTP.
    #[error("HTTP: {0}")]
    Protocol(#[from] hyper::Error),
    /// No whole answer in time.
    #[error("no answer within {0:?}")]
    Timeout(Duration),
    /// [`blocking`] could not build its runtime.
    #[error("runtime: {0}")]
    Runtime(std::io::Error),
}

/// `GET path` on `addr` (`host:port`), waiting up to [`TIMEOUT`].
pub async fn get(
    addr: &str,
    path: &str,
    headers: &[(HeaderName, &str)],
    tls: Option<&Tls>,
) -> Result<Answer, HttpError> {
    request(Method::GET, addr, path, headers, tls, TIMEOUT).await
}

/// `POST path` on `addr` with an empty body, waiting up to [`TIMEOUT`].
pub async fn post(
    addr: &str,
    path: &str,
    headers: &[(HeaderName, &str)],
    tls: Option<&Tls>,
) -> Result<Answer, HttpError> {
    request(Method::POST, addr, path, headers, tls, TIMEOUT).await
}

/// One request with an empty body on a fresh connection; the whole exchange is bounded by
/// `timeout`.
pub async fn request(
    method: Method,
    addr: &str,
    path: &str,
    headers: &[(HeaderName, &str)],
    tls: Option<&Tls>,
    timeout: Duration,
) -> Result<Answer, HttpError> {
    let mut req = hyper::Request::builder()
        .method(method)
        .uri(path)
        .header(header::HOST, addr)
        // One request per client connection: the server may close as soon as it has answered.
        .header(header::CONNECTION, "close");
    for (name, value) in headers {
        req = req.header(
            name,
            HeaderValue::from_str(value).map_err(hyper::http::Error::from)?,
        );
    }
    let req = req.body(Empty::<Bytes>::new())?;
    let exchange = async {
        let tcp = TcpStream::connect(addr)
            .await
            .map_err(|source| HttpError::Connect {
                addr: addr.to_string(),
                source,
            })?;
        match tls {
            None => exchange(tcp, req).await,
            Some(t) => {
                let stream = t
                    .connector
                    .connect(t.name.clone(), tcp)
                    .await
                    .map_err(HttpError::Tls)?;
                exchange(stream, req).await
            }
        }
    };
    tokio::time::timeout(timeout, exchange)
        .await
        .map_err(|_| HttpError::Timeout(timeout))?
}

/// Sends `req` on `io` and reads the answer, driving the connection in this task (no task is
/// spawned, so nothing outlives the call).
async fn exchange<S>(io: S, req: hyper::Request<Empty<Bytes>>) -> Result<Answer, HttpError>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(io)).await?;
    let answer = async move {
        let resp = sender.send_request(req).await?;
        let (head, body) = resp.into_parts();
        let body = body.collect().await?.to_bytes();
        Ok::<_, HttpError>(Answer {
            status: head.status,
            headers: head.headers,
            body,
        })
    };
    let mut answer = std::pin::pin!(answer);
    let mut conn = std::pin::pin!(conn);
    let mut conn_done = false;
    loop {
        tokio::select! {
            biased;
            r = answer.as_mut() => return r,
            // The connection may end before the answer is taken from it; an error shows up in
            // the answer too.
            _ = conn.as_mut(), if !conn_done => conn_done = true,
        }
    }
}

/// Runs a client future to its end from synchronous code, inside a runtime or not: on a thread
/// of its own with a current-thread runtime.
pub fn blocking<T, F>(fut: F) -> Result<T, HttpError>
where
    T: Send,
    F: Future<Output = Result<T, HttpError>> + Send,
{
    std::thread::scope(|s| {
        let worker = s.spawn(|| {
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map_err(HttpError::Runtime)?
                .block_on(fut)
        });
        worker
            .join()
            .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
    })
}
