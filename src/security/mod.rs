//! Security: TLS on the Thrift and admin ports, client ACLs (docs/SECURITY.md).

pub mod acl;
pub mod peer;
pub mod tls;

use arc_swap::ArcSwap;
use tokio_rustls::TlsAcceptor;

pub use acl::{Acl, Denied};
pub use peer::Peer;
pub use tls::TlsState;

use crate::config::settings::Settings;
use crate::config::ConfigError;

/// The TLS acceptor and ACLs in force, both replaced by a reload.
pub struct Security {
    /// TLS acceptor (none while TLS is off).
    pub tls: TlsState,
    /// Compiled ACLs.
    pub acl: ArcSwap<Acl>,
}

/// Security settings read and checked, not yet in force.
pub struct Prepared {
    tls: Option<TlsAcceptor>,
    acl: Acl,
}

impl Security {
    /// Reads and checks the `tls.*` and `acl.*` keys (certificate files included).
    pub fn prepare(settings: &Settings) -> Result<Prepared, ConfigError> {
        Ok(Prepared {
            tls: tls::build(settings)?,
            acl: Acl::compile(&settings.acl)?,
        })
    }

    /// Security for a starting process.
    pub fn new(p: Prepared) -> Security {
        let s = Security {
            tls: TlsState::default(),
            acl: ArcSwap::from_pointee(Acl::default()),
        };
        s.install(p);
        s
    }

    /// Puts prepared settings in force; open connections keep their session.
    pub fn install(&self, p: Prepared) {
        self.tls.set(p.tls);
        self.acl.store(std::sync::Arc::new(p.acl));
    }
}
