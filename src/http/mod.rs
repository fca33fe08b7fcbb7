//! The one HTTP/1.1 layer of pproxy: the admin server ([`server`]) and its clients ([`client`]:
//! the operator CLI, the cluster forwarder and the tests), both on hyper (docs/DECISIONS.md,
//! "HTTP layer").

/// The client half lives in the wire crate, so clients build without the proxy.
pub use pproxy_wire::http as client;
pub mod server;

pub use hyper::header::{self, HeaderMap, HeaderName, HeaderValue};
pub use hyper::{Method, StatusCode};

/// A request as a handler sees it: head and the whole body (bounded by [`server::Limits`]).
pub type Request = hyper::Request<bytes::Bytes>;

/// A response: status, headers and a body held in memory.
pub type Response = hyper::Response<http_body_util::Full<bytes::Bytes>>;

/// The `Content-Type` of JSON bodies.
pub const JSON: &str = "application/json";

/// The `Content-Type` of plain text bodies.
pub const TEXT: &str = "text/plain";

/// A response with `status`, `Content-Type: content_type` and `body`; add headers with
/// [`with_header`].
pub fn respond(
    status: StatusCode,
    content_type: &'static str,
    body: impl Into<bytes::Bytes>,
) -> Response {
    let mut r = hyper::Response::new(http_body_util::Full::new(body.into()));
    *r.status_mut() = status;
    r.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    r
}

/// A JSON response.
pub fn json(status: StatusCode, body: &serde_json::Value) -> Response {
    respond(status, JSON, body.to_string())
}

/// `r` with one more header (`Cache-Control`, `Content-Security-Policy`, ...).
pub fn with_header(mut r: Response, name: HeaderName, value: HeaderValue) -> Response {
    r.headers_mut().insert(name, value);
    r
}
