//! Serves a handler over one connection (plain TCP or TLS, whatever the caller accepted):
//! HTTP/1.1 with keep-alive, bounded head, body, head-read time and connection lifetime.

use std::convert::Infallible;
use std::future::Future;
use std::time::Duration;

use http_body_util::{BodyExt, Limited};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use serde_json::json;
use tokio::io::{AsyncRead, AsyncWrite};

use super::{json, Request, Response, StatusCode};

/// What one connection may take.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    /// Request line and headers, in bytes; a longer head is answered 431 and the connection closed.
    pub max_head: usize,
    /// Request body, in bytes; a longer body is answered 413.
    pub max_body: usize,
    /// Time to receive a whole request head, counted from the first wait for it (so it is also
    /// the idle time allowed between keep-alive requests).
    pub head_timeout: Duration,
    /// Lifetime of the connection: then it is asked to close after the response in progress.
    pub lifetime: Duration,
    /// Time that response still gets before the connection is dropped.
    pub grace: Duration,
}

impl Limits {
    /// The admin port's: a stuck client is cut after 10 s, as it always was.
    pub const ADMIN: Limits = Limits {
        max_head: 16 * 1024,
        max_body: 64 * 1024,
        head_timeout: Duration::from_secs(10),
        lifetime: Duration::from_secs(10),
        grace: Duration::from_secs(1),
    };
}

/// Why a connection ended early (the caller usually just drops it: the peer is gone).
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// The peer broke the protocol, went away, or sent no head in time.
    #[error("HTTP connection: {0}")]
    Http(#[from] hyper::Error),
    /// The response in progress at the end of the lifetime did not finish within the grace.
    #[error("connection cut after its lifetime")]
    Lifetime,
}

/// Serves requests on `io` with `handler` until the peer closes, a limit is hit, or the lifetime
/// ends.
pub async fn serve<S, H, F>(io: S, limits: &Limits, handler: H) -> Result<(), ServeError>
where
    S: AsyncRead + AsyncWrite + Unpin,
    H: Fn(Request) -> F,
    F: Future<Output = Response>,
{
    let handler = &handler;
    let max_body = limits.max_body;
    let service = service_fn(move |req: hyper::Request<Incoming>| async move {
        let (head, body) = req.into_parts();
        let response = match Limited::new(body, max_body).collect().await {
            Ok(body) => handler(Request::from_parts(head, body.to_bytes())).await,
            Err(e) if e.is::<http_body_util::LengthLimitError>() => json(
                StatusCode::PAYLOAD_TOO_LARGE,
                &json!({"error": format!("the body is limited to {max_body} bytes")}),
            ),
            Err(_) => json(
                StatusCode::BAD_REQUEST,
                &json!({"error": "the body could not be read"}),
            ),
        };
        Ok::<_, Infallible>(response)
    });
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(limits.head_timeout)
        .max_header_size(limits.max_head)
        // A client may shut its write side after the request and still read the answer.
        .half_close(true)
        .keep_alive(true);
    let conn = builder.serve_connection(TokioIo::new(io), service);
    let mut conn = std::pin::pin!(conn);
    tokio::select! {
        r = conn.as_mut() => return Ok(r?),
        _ = tokio::time::sleep(limits.lifetime) => {}
    }
    // Closes an idle connection now, a busy one after its response.
    conn.as_mut().graceful_shutdown();
    match tokio::time::timeout(limits.grace, conn).await {
        Ok(r) => Ok(r?),
        Err(_) => Err(ServeError::Lifetime),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::{client, respond, Method};
    use tokio::io::{AsyncReadExt, AsyncWriteExt, DuplexStream};
    use tokio::task::JoinHandle;

    /// Short bounds, so the tests that wait for them take well under a second each.
    const SHORT: Limits = Limits {
        head_timeout: Duration::from_millis(300),
        lifetime: Duration::from_millis(600),
        grace: Duration::from_millis(200),
        ..Limits::ADMIN
    };

    /// [`SHORT`] with a long lifetime, so that it is the head timeout that cuts.
    const HEAD_TIMEOUT_FIRST: Limits = Limits {
        lifetime: Duration::from_secs(5),
        ..SHORT
    };

    /// Slack for a loaded machine when checking that a bound was kept.
    const SLACK: Duration = Duration::from_millis(500);

    async fn echo(req: Request) -> Response {
        let body = format!("{} {} {}", req.method(), req.uri(), req.body().len());
        respond(StatusCode::OK, crate::http::TEXT, body)
    }

    /// A server task on one end of an in-memory pipe of `capacity` bytes; the other end.
    fn connect<H, F>(
        limits: Limits,
        capacity: usize,
        handler: H,
    ) -> (DuplexStream, JoinHandle<Result<(), ServeError>>)
    where
        H: Fn(Request) -> F + Send + Sync + 'static,
        F: Future<Output = Response> + Send + 'static,
    {
        let (client, server) = tokio::io::duplex(capacity);
        let served = tokio::spawn(async move { serve(server, &limits, handler).await });
        (client, served)
    }

    /// Everything the server writes until it closes the connection, and how long that took.
    async fn until_closed(mut client: DuplexStream) -> (String, Duration) {
        let start = tokio::time::Instant::now();
        let mut out = Vec::new();
        let _ = client.read_to_end(&mut out).await;
        (String::from_utf8_lossy(&out).into_owned(), start.elapsed())
    }

    #[tokio::test]
    async fn two_requests_on_one_connection() {
        let (mut client, served) = connect(Limits::ADMIN, 64 * 1024, echo);
        let mut buf = vec![0u8; 4096];
        for path in ["/one", "/two?x=1"] {
            let req = format!("GET {path} HTTP/1.1\r\nHost: x\r\n\r\n");
            client.write_all(req.as_bytes()).await.expect("write");
            let tail = format!("GET {path} 0");
            let mut answer = String::new();
            while !answer.ends_with(&tail) {
                let n = client.read(&mut buf).await.expect("read");
                assert!(n > 0, "closed after {answer}");
                answer.push_str(&String::from_utf8_lossy(&buf[..n]));
            }
            assert!(answer.starts_with("HTTP/1.1 200 OK\r\n"), "{answer}");
        }
        drop(client);
        assert!(served.await.expect("join").is_ok());
    }

    #[tokio::test]
    async fn a_head_over_the_limit_is_answered_431() {
        let (mut client, served) = connect(Limits::ADMIN, 64 * 1024, echo);
        let big = "a".repeat(Limits::ADMIN.max_head + 1);
        let req = format!("GET / HTTP/1.1\r\nHost: x\r\nX-Big: {big}\r\n\r\n");
        // The server may stop reading (and close) before the whole head is written.
        let _ = client.write_all(req.as_bytes()).await;
        let (answer, _) = until_closed(client).await;
        assert!(answer.starts_with("HTTP/1.1 431 "), "{answer}");
        let _ = served.await.expect("join");
    }

    #[tokio::test]
    async fn a_body_over_the_limit_is_answered_413() {
        let (mut client, served) = connect(Limits::ADMIN, 256 * 1024, echo);
        let n = Limits::ADMIN.max_body + 1;
        let req = format!("POST / HTTP/1.1\r\nHost: x\r\nContent-Length: {n}\r\n\r\n");
        client.write_all(req.as_bytes()).await.expect("head");
        let _ = client.write_all(&vec![b'x'; n]).await;
        let _ = client.shutdown().await;
        let (answer, _) = until_closed(client).await;
        assert!(answer.starts_with("HTTP/1.1 413 "), "{answer}");
        let _ = served.await.expect("join");
    }

    #[tokio::test]
    async fn a_client_stuck_in_its_head_is_cut_at_the_head_timeout() {
        let limits = HEAD_TIMEOUT_FIRST;
        let (mut client, served) = connect(limits, 64 * 1024, echo);
        client
            .write_all(b"GET / HTTP/1.1\r\nHost: x\r\n")
            .await
            .expect("write");
        let (_, took) = until_closed(client).await;
        assert!(took >= limits.head_timeout, "{took:?}");
        assert!(took <= limits.head_timeout + SLACK, "{took:?}");
        assert!(served.await.expect("join").is_err(), "a header timeout");
    }

    #[tokio::test]
    async fn a_client_that_never_reads_is_cut_after_the_lifetime_and_grace() {
        // A response larger than the pipe, never read: the server stays blocked writing it.
        let big = |_req: Request| async {
            respond(StatusCode::OK, crate::http::TEXT, vec![b'x'; 1 << 20])
        };
        let (mut client, served) = connect(SHORT, 1024, big);
        client
            .write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
            .await
            .expect("write");
        let start = tokio::time::Instant::now();
        let r = served.await.expect("join");
        assert!(matches!(r, Err(ServeError::Lifetime)), "{r:?}");
        let took = start.elapsed();
        assert!(took >= SHORT.lifetime + SHORT.grace - SLACK, "{took:?}");
        assert!(took <= SHORT.lifetime + SHORT.grace + SLACK, "{took:?}");
    }

    #[tokio::test]
    async fn an_idle_keep_alive_connection_is_closed() {
        let limits = HEAD_TIMEOUT_FIRST;
        let (mut client, served) = connect(limits, 64 * 1024, echo);
        client
            .write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
            .await
            .expect("write");
        let (answer, took) = until_closed(client).await;
        assert!(answer.starts_with("HTTP/1.1 200 OK\r\n"), "{answer}");
        // By the head timeout, long before the lifetime.
        assert!(took <= limits.head_timeout + SLACK, "{took:?}");
        let _ = served.await.expect("join");
    }

    #[tokio::test]
    async fn the_client_reads_status_headers_and_body() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr").to_string();
        let server = tokio::spawn(async move {
            for _ in 0..2 {
                let (s, _) = listener.accept().await.expect("accept");
                let _ = serve(s, &Limits::ADMIN, |req: Request| async move {
                    let auth = req
                        .headers()
                        .get(crate::http::header::AUTHORIZATION)
                        .and_then(|v| v.to_str().ok())
                        .unwrap_or("")
                        .to_string();
                    let r = respond(StatusCode::CREATED, crate::http::JSON, auth);
                    crate::http::with_header(
                        r,
                        crate::http::header::CACHE_CONTROL,
                        crate::http::HeaderValue::from_static("no-store"),
                    )
                })
                .await;
            }
        });
        let auth = [(crate::http::header::AUTHORIZATION, "Bearer t")];
        let a = client::get(&addr, "/x", &auth, None).await.expect("get");
        assert_eq!(a.status, StatusCode::CREATED);
        assert_eq!(a.header("content-type"), Some(crate::http::JSON));
        assert_eq!(a.header("cache-control"), Some("no-store"));
        assert_eq!(a.text(), "Bearer t");
        let a = client::post(&addr, "/y", &[], None).await.expect("post");
        assert_eq!(a.text(), "");
        server.await.expect("server");
        let refused = client::request(Method::GET, &addr, "/", &[], None, Duration::from_secs(1));
        assert!(matches!(
            refused.await,
            Err(client::HttpError::Connect { .. })
        ));
    }
}
