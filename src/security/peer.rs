//! Who is on the other end of a connection: address and, over mutual TLS, certificate subject.

use std::net::{IpAddr, SocketAddr};

use super::acl::SubjectAttrs;

/// The client of one connection, fixed when it is accepted.
#[derive(Debug, Clone, Default)]
pub struct Peer {
    /// Remote address.
    pub addr: Option<SocketAddr>,
    /// Whether the connection is TLS.
    pub tls: bool,
    /// Subject of the verified client certificate (mutual TLS only).
    pub subject: Option<SubjectAttrs>,
}

impl Peer {
    /// A plaintext client.
    pub fn plain(addr: Option<SocketAddr>) -> Peer {
        Peer {
            addr,
            tls: false,
            subject: None,
        }
    }

    /// The remote IP address.
    pub fn ip(&self) -> Option<IpAddr> {
        self.addr.map(|a| a.ip())
    }
}
