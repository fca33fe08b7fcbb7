//! Admin calls for partitions owned by another node (status, dead letters, re-drive, purge,
//! pending counts): find the owner in the group description and ask its admin API, over TLS
//! when the admin port serves TLS (delay.md §10, "Status"; docs/CLUSTER.md).

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use rustls::{ClientConfig, RootCertStore};
use tokio_rustls::TlsConnector;

use crate::config::settings::Settings;
use crate::http::client::{self, HttpError};
use crate::http::{header, HeaderName, Method};

/// Header marking a forwarded query (`X-Pproxy-Forwarded`), so a node that is not the owner
/// answers instead of forwarding again.
pub const FORWARDED_HEADER: HeaderName = HeaderName::from_static("x-pproxy-forwarded");

/// Partitions of `topic` in a member assignment (Kafka's ConsumerProtocolAssignment: version
/// i16, then topics each with a name and partitions, then user data).
pub fn assigned_partitions(a: &[u8], topic: &str) -> Vec<i32> {
    parse_assignment(a, topic).unwrap_or_default()
}

fn parse_assignment(a: &[u8], topic: &str) -> Option<Vec<i32>> {
    let mut pos = 2usize; // version
    let n = i32::from_be_bytes(a.get(pos..pos + 4)?.try_into().ok()?);
    pos += 4;
    let mut out = Vec::new();
    for _ in 0..n.max(0) {
        let len = i16::from_be_bytes(a.get(pos..pos + 2)?.try_into().ok()?).max(0) as usize;
        pos += 2;
        let name = a.get(pos..pos + len)?;
        pos += len;
        let np = i32::from_be_bytes(a.get(pos..pos + 4)?.try_into().ok()?);
        pos += 4;
        for _ in 0..np.max(0) {
            let p = i32::from_be_bytes(a.get(pos..pos + 4)?.try_into().ok()?);
            pos += 4;
            if name == topic.as_bytes() {
                out.push(p);
            }
        }
    }
    Some(out)
}

/// Node name and admin address from an ownership member's client id
/// (`pproxy-sched|<node>|<admin>`).
pub fn member_address(client_id: &str) -> Option<(String, String)> {
    let mut it = client_id.splitn(3, '|');
    if it.next()? != "pproxy-sched" {
        return None;
    }
    Some((it.next()?.to_string(), it.next()?.to_string()))
}

/// How this node calls other nodes' admin ports: TLS when this node's admin port serves TLS
/// (`server.adminTls`), built once at start from the certificate files.
#[derive(Clone, Default)]
pub struct Peers {
    /// Verifies the peer and presents this node's certificate; `None` = plain HTTP.
    pub tls: Option<TlsConnector>,
}

/// Why the TLS client of forwarded calls could not be built.
#[derive(Debug, thiserror::Error)]
#[error("forwarding TLS: {0}")]
pub struct PeerTlsError(String);

impl Peers {
    /// From the settings: TLS when `server.adminTls` is on, trusting `scheduler.cluster.adminCaFile`,
    /// else `tls.clientCaFile`, else the certificates of `tls.certFile` (a chain that ends at its
    /// CA, or one self-signed certificate shared by every node); this node's certificate and key
    /// are presented when a peer asks for a client certificate.
    pub fn from_settings(s: &Settings) -> Result<Peers, PeerTlsError> {
        if !s.server.admin_tls {
            return Ok(Peers { tls: None });
        }
        let bad = |what: &str, e: &dyn std::fmt::Display| PeerTlsError(format!("{what}: {e}"));
        let certs = |p: &Path| {
            CertificateDer::pem_file_iter(p)
                .and_then(|it| it.collect::<Result<Vec<_>, _>>())
                .map_err(|e| bad(&p.display().to_string(), &e))
        };
        let (Some(cert), Some(key)) = (&s.tls.cert_file, &s.tls.key_file) else {
            return Err(PeerTlsError(
                "server.adminTls needs tls.certFile and tls.keyFile".into(),
            ));
        };
        let anchors = s
            .scheduler
            .cluster
            .admin_ca_file
            .as_ref()
            .or(s.tls.client_ca_file.as_ref())
            .unwrap_or(cert);
        let mut roots = RootCertStore::empty();
        for c in certs(anchors)? {
            roots.add(c).map_err(|e| bad("trust anchor", &e))?;
        }
        let chain = certs(cert)?;
        let key = PrivateKeyDer::from_pem_file(key).map_err(|e| bad("tls.keyFile", &e))?;
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let config = ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| bad("versions", &e))?
            .with_root_certificates(roots)
            .with_client_auth_cert(chain, key)
            .map_err(|e| bad("client certificate", &e))?;
        Ok(Peers {
            tls: Some(TlsConnector::from(Arc::new(config))),
        })
    }

    /// `method <path>` on another node's admin port (`host:port`), marked as forwarded, with
    /// the admin `token` when one is set; answers (status, body).
    pub async fn call(
        &self,
        method: Method,
        admin: &str,
        path: &str,
        token: Option<&str>,
    ) -> Result<(u16, String), HttpError> {
        let auth = token.map(|t| format!("Bearer {t}"));
        let mut headers = vec![(FORWARDED_HEADER, "1")];
        if let Some(auth) = &auth {
            headers.push((header::AUTHORIZATION, auth.as_str()));
        }
        let tls = match &self.tls {
            None => None,
            Some(connector) => Some(client::Tls {
                connector: connector.clone(),
                name: server_name(admin)?,
            }),
        };
        let answer = client::request(method, admin, path, &headers, tls.as_ref(), TIMEOUT).await?;
        Ok((answer.status.as_u16(), answer.text()))
    }
}

/// The name a peer's certificate must carry: the host of its admin address (an IP address
/// or a DNS name).
fn server_name(admin: &str) -> Result<ServerName<'static>, HttpError> {
    let host = match admin.rsplit_once(':') {
        Some((h, _)) => h.trim_start_matches('[').trim_end_matches(']'),
        None => admin,
    };
    ServerName::try_from(host.to_string()).map_err(|e| {
        HttpError::Tls(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            format!("{admin}: {e}"),
        ))
    })
}

/// Bound of one forwarded call.
const TIMEOUT: Duration = Duration::from_secs(5);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn assignment_bytes_give_the_topic_partitions() {
        // version 1; two topics: "j" [0, 3] and "other" [1]; empty user data.
        let mut a = vec![0u8, 1];
        a.extend_from_slice(&2i32.to_be_bytes());
        a.extend_from_slice(&1i16.to_be_bytes());
        a.extend_from_slice(b"j");
        a.extend_from_slice(&2i32.to_be_bytes());
        a.extend_from_slice(&0i32.to_be_bytes());
        a.extend_from_slice(&3i32.to_be_bytes());
        a.extend_from_slice(&5i16.to_be_bytes());
        a.extend_from_slice(b"other");
        a.extend_from_slice(&1i32.to_be_bytes());
        a.extend_from_slice(&1i32.to_be_bytes());
        a.extend_from_slice(&(-1i32).to_be_bytes());
        assert_eq!(assigned_partitions(&a, "j"), vec![0, 3]);
        assert_eq!(assigned_partitions(&a, "other"), vec![1]);
        assert!(assigned_partitions(&a[..9], "j").is_empty(), "truncated");
        assert!(assigned_partitions(&[], "j").is_empty());
    }

    #[test]
    fn client_ids_carry_node_and_admin() {
        assert_eq!(
            member_address("pproxy-sched|10.0.0.1:9613|10.0.0.1:9614"),
            Some(("10.0.0.1:9613".into(), "10.0.0.1:9614".into()))
        );
        assert_eq!(member_address("rdkafka"), None);
    }

    #[test]
    fn peer_names_come_from_the_admin_address() {
        let name = |a: &str| server_name(a).map(|n| n.to_str().into_owned()).ok();
        assert_eq!(name("10.0.0.1:9614").as_deref(), Some("10.0.0.1"));
        assert_eq!(name("[::1]:9614").as_deref(), Some("::1"));
        assert_eq!(
            name("pproxy-02.example:9614").as_deref(),
            Some("pproxy-02.example")
        );
        assert_eq!(name("bad name:1"), None);
    }
}
