//! TLS for the Thrift and admin ports: certificates from `tls.*`, swapped on reload, and the
//! first-byte test that tells a TLS client from a plaintext one on the same port.

use std::path::Path;
use std::sync::Arc;

use arc_swap::ArcSwapOption;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;
use rustls::{RootCertStore, ServerConfig};
use tokio_rustls::TlsAcceptor;

use super::acl::SubjectAttrs;
use crate::config::settings::Settings;
use crate::config::ConfigError;

/// First byte of a TLS handshake record. A framed Thrift request starts with the top byte of its
/// length, and 0x16 would announce a frame of over 369 MB, far above any accepted frame, so the
/// two cannot be confused.
pub const HANDSHAKE_RECORD: u8 = 0x16;

/// The TLS acceptor in force; `None` while TLS is off. New handshakes use the newest one, so a
/// reload never touches established connections.
#[derive(Default)]
pub struct TlsState {
    acceptor: ArcSwapOption<TlsAcceptor>,
}

impl TlsState {
    /// The acceptor for a new connection.
    pub fn acceptor(&self) -> Option<Arc<TlsAcceptor>> {
        self.acceptor.load_full()
    }

    /// Replaces the acceptor new connections use.
    pub fn set(&self, next: Option<TlsAcceptor>) {
        self.acceptor.store(next.map(Arc::new));
    }
}

/// Checks the `tls.*` keys and the ones that depend on them, then builds the acceptor.
pub fn build(settings: &Settings) -> Result<Option<TlsAcceptor>, ConfigError> {
    let t = &settings.tls;
    let bad = |m: &str| Err(ConfigError::Invalid(m.to_string()));
    if t.cert_file.is_some() != t.key_file.is_some() {
        return bad("`tls.certFile` and `tls.keyFile` go together");
    }
    if !t.enabled() {
        if t.required || t.client_ca_file.is_some() || settings.server.admin_tls {
            return bad("`tls.required`, `tls.clientCaFile` and `server.adminTls` need `tls.certFile` and `tls.keyFile`");
        }
        return Ok(None);
    }
    if t.require_client_cert && t.client_ca_file.is_none() {
        return bad("`tls.requireClientCert` needs `tls.clientCaFile`");
    }
    let (Some(cert), Some(key)) = (&t.cert_file, &t.key_file) else {
        return Ok(None);
    };
    let chain = read_certs(cert)?;
    let key = PrivateKeyDer::from_pem_file(key)
        .map_err(|e| ConfigError::Invalid(format!("tls.keyFile {}: {e}", key.display())))?;
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let builder = ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| ConfigError::Invalid(format!("tls: {e}")))?;
    let builder = match &t.client_ca_file {
        None => builder.with_no_client_auth(),
        Some(ca) => {
            let mut roots = RootCertStore::empty();
            for c in read_certs(ca)? {
                roots
                    .add(c)
                    .map_err(|e| ConfigError::Invalid(format!("tls.clientCaFile: {e}")))?;
            }
            let v = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider);
            let v = if t.require_client_cert {
                v
            } else {
                v.allow_unauthenticated()
            };
            let v = v
                .build()
                .map_err(|e| ConfigError::Invalid(format!("tls.clientCaFile: {e}")))?;
            builder.with_client_cert_verifier(v)
        }
    };
    let config = builder
        .with_single_cert(chain, key)
        .map_err(|e| ConfigError::Invalid(format!("tls certificate and key: {e}")))?;
    Ok(Some(TlsAcceptor::from(Arc::new(config))))
}

fn read_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, ConfigError> {
    let certs = CertificateDer::pem_file_iter(path)
        .and_then(|it| it.collect::<Result<Vec<_>, _>>())
        .map_err(|e| ConfigError::Invalid(format!("{}: {e}", path.display())))?;
    if certs.is_empty() {
        return Err(ConfigError::Invalid(format!(
            "{}: no certificate",
            path.display()
        )));
    }
    Ok(certs)
}

/// The subject of the client certificate a TLS connection presented (verified by then).
pub fn peer_subject(conn: &rustls::ServerConnection) -> Option<SubjectAttrs> {
    let der = conn.peer_certificates()?.first()?;
    subject_of(der)
}

/// The subject attributes of a DER certificate, attribute names upper-case (`CN`, `O`, ...).
pub fn subject_of(der: &[u8]) -> Option<SubjectAttrs> {
    use x509_parser::objects::{oid2abbrev, oid_registry};
    use x509_parser::prelude::{FromDer, X509Certificate};
    let (_, cert) = X509Certificate::from_der(der).ok()?;
    let registry = oid_registry();
    let mut out = Vec::new();
    for attr in cert.subject().iter_attributes() {
        let Ok(value) = attr.as_str() else { continue };
        let name = oid2abbrev(attr.attr_type(), registry)
            .map(str::to_string)
            .unwrap_or_else(|_| attr.attr_type().to_id_string());
        out.push((name.to_ascii_uppercase(), value.to_string()));
    }
    Some(out)
}
