//! Security (docs/SECURITY.md) against real pproxy processes: TLS beside plaintext on the Thrift
//! port, TLS-only, mutual TLS subjects and client addresses as ACL principals, delay cancels bound
//! to the adding principal, certificate reload under load, and the admin port's token, loopback
//! and TLS rules. Forwarded messages are read back from the real Kafka of scripts/stack.sh.
//! Certificates come from rcgen, made fresh in each test.

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use crate::common::*;
use bytes::Bytes;
use pproxy::client::Client;
use pproxy::http::client::{self, Answer, Tls};
use pproxy::http::{header, Method};
use pproxy::proto::{Call, DelayMessage, Protocol};
use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};
use tokio_rustls::TlsConnector;

const T: Duration = Duration::from_secs(15);

/// A throwaway certificate authority.
struct Pki {
    ca: CertifiedIssuer<'static, KeyPair>,
}

/// A certificate and its key, PEM.
#[derive(Clone)]
struct Leaf {
    cert: String,
    key: String,
}

impl Pki {
    fn new(name: &str) -> Pki {
        let mut p = CertificateParams::new(Vec::<String>::new()).expect("ca params");
        p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        p.distinguished_name.push(DnType::CommonName, name);
        let key = KeyPair::generate().expect("ca key");
        Pki {
            ca: CertifiedIssuer::self_signed(p, key).expect("ca"),
        }
    }

    fn ca_pem(&self) -> String {
        self.ca.pem()
    }

    /// A leaf for `cn`, valid for 127.0.0.1 and localhost.
    fn leaf(&self, cn: &str) -> Leaf {
        let mut p = CertificateParams::new(vec!["127.0.0.1".to_string(), "localhost".to_string()])
            .expect("leaf params");
        p.distinguished_name.push(DnType::CommonName, cn);
        p.distinguished_name
            .push(DnType::OrganizationName, "pproxy tests");
        let key = KeyPair::generate().expect("leaf key");
        let cert = p.signed_by(&key, &self.ca).expect("leaf");
        Leaf {
            cert: cert.pem(),
            key: key.serialize_pem(),
        }
    }

    /// A client TLS connector trusting this CA, presenting `client` when given.
    fn connector(&self, client: Option<&Leaf>) -> TlsConnector {
        let mut roots = rustls::RootCertStore::empty();
        roots.add(self.ca.der().clone()).expect("ca into roots");
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let b = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .expect("versions")
            .with_root_certificates(roots);
        let config = match client {
            None => b.with_no_client_auth(),
            Some(l) => {
                let chain = vec![CertificateDer::from_pem_slice(l.cert.as_bytes()).expect("cert")];
                let key = PrivateKeyDer::from_pem_slice(l.key.as_bytes()).expect("key");
                b.with_client_auth_cert(chain, key).expect("client cert")
            }
        };
        TlsConnector::from(Arc::new(config))
    }
}

/// Files of a server certificate for `files` of `Proxy::start_with_files`.
fn server_files(pki: &Pki, leaf: &Leaf) -> Vec<(&'static str, String)> {
    vec![
        ("server.pem", leaf.cert.clone()),
        ("server.key", leaf.key.clone()),
        ("ca.pem", pki.ca_pem()),
    ]
}

async fn tls_client(p: &Proxy, c: &TlsConnector) -> Result<Client, pproxy::client::ClientError> {
    Client::connect_tls(&p.addr, Protocol::Compact, T, c, "127.0.0.1").await
}

/// A plaintext client whose connection comes from `src` (any 127.0.0.0/8 address works on Linux).
async fn client_from(p: &Proxy, src: &str) -> Client {
    let sock = TcpSocket::new_v4().expect("socket");
    sock.bind(SocketAddr::new(src.parse().expect("ip"), 0))
        .expect("bind source");
    let s = sock
        .connect(p.addr.parse().expect("addr"))
        .await
        .expect("connect");
    s.set_nodelay(true).expect("nodelay");
    Client::over(s, Protocol::Compact, T)
}

fn keyed(topic: &str, key: &str, body: &str) -> Call {
    let mut m = msg(topic, body.as_bytes());
    m.key = Some(key.into());
    Call::SendSync(Some(m), 3000)
}

fn delay_add(topic: &str, uuid: &str, due_ms: i64, body: &str) -> Call {
    Call::SendDelaySync(
        Some(DelayMessage {
            topic: Some(topic.into()),
            body: Some(Bytes::copy_from_slice(body.as_bytes())),
            action: 1,
            timestamp: due_ms,
            dmsgtype: 2,
            uuid: Some(uuid.into()),
            ..Default::default()
        }),
        3000,
    )
}

/// Value of one Prometheus sample (0 when absent).
fn metric(p: &Proxy, line_prefix: &str) -> u64 {
    let (_, page) = p.http_get("/metrics").expect("metrics");
    sample(&page, line_prefix)
}

/// The value of the sample whose line starts with `line_prefix` in a metrics page (0 if none).
fn sample(page: &str, line_prefix: &str) -> u64 {
    page.lines()
        .find(|l| l.starts_with(line_prefix))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse::<f64>().ok())
        .map(|v| v as u64)
        .unwrap_or(0)
}

/// Bodies consumed from `topic`, by key.
fn bodies(kafka: &str, topic: &str, expected: usize) -> BTreeMap<String, String> {
    consume(kafka, topic, expected, T)
        .into_iter()
        .map(|c| {
            (
                String::from_utf8_lossy(&c.key.unwrap_or_default()).into_owned(),
                String::from_utf8_lossy(&c.value).into_owned(),
            )
        })
        .collect()
}

fn tls_yaml(extra: &str) -> String {
    format!("tls:\n  certFile: server.pem\n  keyFile: server.key\n{extra}")
}

#[tokio::test]
async fn tls_and_plaintext_share_the_port() {
    let _stack = STACK.read().await;
    let Some(kafka) = kafka_bootstrap() else {
        return;
    };
    let topic = unique_topic("tls");
    create_topic(&kafka, &topic, 1).await;
    let pki = Pki::new("test ca");
    let mut files = server_files(&pki, &pki.leaf("pproxy"));
    files.push(("local.json", local_config(&kafka, &[(&topic, "")], "")));
    let yaml = format!("localConfig: local.json\n{}", tls_yaml(""));
    let p = Proxy::start_with_files(&yaml, &files);

    let mut tls = tls_client(&p, &pki.connector(None))
        .await
        .expect("TLS client");
    assert_eq!(
        call(&mut tls, &keyed(&topic, "k-tls", "over tls")).await.0,
        0
    );
    let mut plain = p.client().await;
    assert_eq!(
        call(&mut plain, &keyed(&topic, "k-plain", "in clear"))
            .await
            .0,
        0
    );

    // A client that does not trust the server's CA fails its handshake; the server goes on.
    let stranger = Pki::new("other ca");
    assert!(tls_client(&p, &stranger.connector(None)).await.is_err());
    assert_eq!(call(&mut tls, &keyed(&topic, "k-tls2", "still")).await.0, 0);
    assert_eq!(
        call(&mut plain, &keyed(&topic, "k-plain2", "still"))
            .await
            .0,
        0
    );

    let got = bodies(&kafka, &topic, 4);
    let want: BTreeMap<String, String> = [
        ("k-tls", "over tls"),
        ("k-plain", "in clear"),
        ("k-tls2", "still"),
        ("k-plain2", "still"),
    ]
    .iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    assert_eq!(got, want);
    let m = r#"pproxy_tls_connections_total{port="thrift",result="#;
    assert_eq!(metric(&p, &format!("{m}\"tls\"}}")), 1);
    assert_eq!(metric(&p, &format!("{m}\"plaintext\"}}")), 1);
    assert_eq!(metric(&p, &format!("{m}\"handshake_failed\"}}")), 1);
}

#[tokio::test]
async fn tls_required_refuses_plaintext() {
    let _stack = STACK.read().await;
    let pki = Pki::new("test ca");
    let files = server_files(&pki, &pki.leaf("pproxy"));
    let p = Proxy::start_with_files(&tls_yaml("  required: true\n"), &files);
    let mut plain = p.client().await;
    let refused = plain
        .call(&Call::SendSync(Some(msg("t", b"x")), 3000))
        .await;
    assert!(refused.is_err(), "plaintext answered: {refused:?}");
    let mut tls = tls_client(&p, &pki.connector(None))
        .await
        .expect("TLS client");
    assert_eq!(
        call(&mut tls, &Call::SendSync(Some(msg("t", b"x")), 3000))
            .await
            .0,
        0
    );
    let m = r#"pproxy_tls_connections_total{port="thrift",result="plaintext_refused"}"#;
    assert_eq!(metric(&p, m), 1);
}

#[tokio::test]
async fn mutual_tls_subjects_choose_the_principal() {
    let _stack = STACK.read().await;
    let Some(kafka) = kafka_bootstrap() else {
        return;
    };
    let (pay, rep) = (unique_topic("pay"), unique_topic("rep"));
    let pay_delay = format!("{pay}-delay");
    for t in [&pay, &rep, &pay_delay] {
        create_topic(&kafka, t, 1).await;
    }
    let pki = Pki::new("test ca");
    let mut files = server_files(&pki, &pki.leaf("pproxy"));
    let topics = [
        (pay.as_str(), ""),
        (rep.as_str(), ""),
        (pay_delay.as_str(), r#","delayTopic":true"#),
    ];
    files.push(("local.json", local_config(&kafka, &topics, "")));
    let yaml = format!(
        "localConfig: local.json\n{}acl:\n  enabled: true\n  principals:\n\
         \x20   - {{name: payments, subjects: ['CN=payments, O=pproxy tests'], topics: ['{pay}*'], delay: true}}\n\
         \x20   - {{name: reports, subjects: ['CN=reports'], topics: ['{rep}']}}\n",
        tls_yaml("  clientCaFile: ca.pem\n  requireClientCert: true\n")
    );
    let p = Proxy::start_with_files(&yaml, &files);

    let (payments, reports) = (pki.leaf("payments"), pki.leaf("reports"));
    let mut c_pay = tls_client(&p, &pki.connector(Some(&payments)))
        .await
        .expect("payments");
    let mut c_rep = tls_client(&p, &pki.connector(Some(&reports)))
        .await
        .expect("reports");
    assert_eq!(call(&mut c_pay, &keyed(&pay, "p1", "paid")).await.0, 0);
    assert_eq!(call(&mut c_pay, &keyed(&rep, "p2", "not mine")).await.0, 13);
    assert_eq!(call(&mut c_rep, &keyed(&rep, "r1", "report")).await.0, 0);
    assert_eq!(call(&mut c_rep, &keyed(&pay, "r2", "not mine")).await.0, 13);
    let due = chrono::Utc::now().timestamp_millis() + 600_000;
    let (code, _, id) = call(
        &mut c_pay,
        &delay_add(&pay_delay, "b0000000-0000-0000-0000-000000000001", due, "d"),
    )
    .await;
    assert_eq!((code, id.is_some()), (0, true));
    let (code, _, _) = call(
        &mut c_rep,
        &delay_add(&pay_delay, "b0000000-0000-0000-0000-000000000002", due, "d"),
    )
    .await;
    assert_eq!(code, 13);

    // Without a client certificate there is no session: nothing is answered 0.
    let anon = tls_client(&p, &pki.connector(None)).await;
    if let Ok(mut c) = anon {
        let r = c.call(&keyed(&pay, "a1", "anon")).await;
        assert!(r.is_err(), "an anonymous client was answered: {r:?}");
    }
    // A certificate of another CA is refused the same way.
    let other = Pki::new("other ca");
    let forged = other.leaf("payments");
    if let Ok(mut c) = tls_client(&p, &pki.connector(Some(&forged))).await {
        let r = c.call(&keyed(&pay, "f1", "forged")).await;
        assert!(r.is_err(), "a forged certificate was answered: {r:?}");
    }

    let only = |k: &str, v: &str| BTreeMap::from([(k.to_string(), v.to_string())]);
    assert_eq!(bodies(&kafka, &pay, 1), only("p1", "paid"));
    assert_eq!(bodies(&kafka, &rep, 1), only("r1", "report"));
    let m = r#"pproxy_acl_denied_total{method="#;
    assert_eq!(
        metric(
            &p,
            &format!("{m}\"sendSync\",principal=\"payments\",reason=\"topic\"}}")
        ),
        1
    );
    assert_eq!(
        metric(
            &p,
            &format!("{m}\"sendSync\",principal=\"reports\",reason=\"topic\"}}")
        ),
        1
    );
    assert_eq!(
        metric(
            &p,
            &format!("{m}\"sendDelaySync\",principal=\"reports\",reason=\"topic\"}}")
        ),
        1
    );
}

#[tokio::test]
async fn address_acl_refuses_one_client_and_allows_another() {
    let _stack = STACK.read().await;
    let Some(kafka) = kafka_bootstrap() else {
        return;
    };
    let (t1, t2, d) = (
        unique_topic("acl1"),
        unique_topic("acl2"),
        unique_topic("acld"),
    );
    for t in [&t1, &t2, &d] {
        create_topic(&kafka, t, 1).await;
    }
    let topics = [
        (t1.as_str(), ""),
        (t2.as_str(), ""),
        (d.as_str(), r#","delayTopic":true"#),
    ];
    let doc = local_config(&kafka, &topics, "");
    let yaml = format!(
        "localConfig: local.json\nacl:\n  enabled: true\n  principals:\n\
         \x20   - {{name: app, addresses: [127.0.0.2/32], topics: ['{t1}', '{d}']}}\n\
         \x20   - {{name: ops, addresses: [127.0.0.1], topics: ['*'], delay: true}}\n"
    );
    let p = Proxy::start_with_files(&yaml, &[("local.json", doc)]);

    let mut nobody = client_from(&p, "127.0.0.3").await;
    assert_eq!(call(&mut nobody, &keyed(&t1, "n1", "x")).await.0, 13);
    let hb = Call::SendSync(Some(msg("carrera_heartbeat", b"")), 3000);
    assert_eq!(
        call(&mut nobody, &hb).await.0,
        0,
        "the heartbeat is never refused"
    );

    let mut app = client_from(&p, "127.0.0.2").await;
    assert_eq!(call(&mut app, &keyed(&t2, "a0", "x")).await.0, 13);
    // The refused request left the connection usable.
    assert_eq!(call(&mut app, &keyed(&t1, "a1", "from app")).await.0, 0);
    let batch = Call::SendBatchSync(vec![msg(&t1, b"b1"), msg(&t2, b"b2")]);
    assert_eq!(
        call(&mut app, &batch).await.0,
        13,
        "one refused topic refuses the batch"
    );
    let due = chrono::Utc::now().timestamp_millis() + 600_000;
    let add = delay_add(&d, "c0000000-0000-0000-0000-000000000001", due, "d");
    assert_eq!(
        call(&mut app, &add).await.0,
        13,
        "app may not send delay messages"
    );

    let mut ops = client_from(&p, "127.0.0.1").await;
    assert_eq!(call(&mut ops, &keyed(&t2, "o1", "from ops")).await.0, 0);
    assert_eq!(call(&mut ops, &add).await.0, 0);

    let only = |k: &str, v: &str| BTreeMap::from([(k.to_string(), v.to_string())]);
    assert_eq!(bodies(&kafka, &t1, 1), only("a1", "from app"));
    assert_eq!(bodies(&kafka, &t2, 1), only("o1", "from ops"));
    let m = r#"pproxy_acl_denied_total{method="#;
    assert_eq!(
        metric(
            &p,
            &format!("{m}\"sendSync\",principal=\"_none\",reason=\"no_principal\"}}")
        ),
        1
    );
    assert_eq!(
        metric(
            &p,
            &format!("{m}\"sendSync\",principal=\"app\",reason=\"topic\"}}")
        ),
        1
    );
    assert_eq!(
        metric(
            &p,
            &format!("{m}\"sendBatchSync\",principal=\"app\",reason=\"topic\"}}")
        ),
        1
    );
    assert_eq!(
        metric(
            &p,
            &format!("{m}\"sendDelaySync\",principal=\"app\",reason=\"delay\"}}")
        ),
        1
    );
}

#[tokio::test]
async fn delay_cancel_only_by_the_adding_principal() {
    let _stack = STACK.read().await;
    let Some(kafka) = kafka_bootstrap() else {
        return;
    };
    let d = unique_topic("owner");
    create_topic(&kafka, &d, 1).await;
    let doc = local_config(&kafka, &[(&d, r#","delayTopic":true"#)], "");
    let yaml = "localConfig: local.json\nacl:\n  enabled: true\n  principals:\n\
         \x20   - {name: alice, addresses: [127.0.0.1], topics: ['*'], delay: true}\n\
         \x20   - {name: bob, addresses: [127.0.0.2], topics: ['*'], delay: true}\n";
    let p = Proxy::start_with_files(yaml, &[("local.json", doc)]);
    let mut alice = client_from(&p, "127.0.0.1").await;
    let mut bob = client_from(&p, "127.0.0.2").await;
    let due = chrono::Utc::now().timestamp_millis() + 3000;
    let (c1, _, kept) = call(
        &mut alice,
        &delay_add(&d, "d0000000-0000-0000-0000-000000000001", due, "kept"),
    )
    .await;
    let (c2, _, gone) = call(
        &mut alice,
        &delay_add(&d, "d0000000-0000-0000-0000-000000000002", due, "gone"),
    )
    .await;
    assert_eq!((c1, c2), (0, 0));
    let (kept, gone) = (kept.expect("id"), gone.expect("id"));

    let (code, _, echo) = call(&mut bob, &delay_cancel(&d, &kept)).await;
    assert_eq!(
        (code, echo.as_deref()),
        (30, Some(kept.as_str())),
        "bob cancels alice's message"
    );
    assert_eq!(call(&mut alice, &delay_cancel(&d, &gone)).await.0, 0);
    let (_, status) = p.http_get(&format!("/delay/{kept}")).expect("status");
    let v: serde_json::Value = serde_json::from_str(&status).expect("json");
    assert_eq!(
        (v["state"].as_str(), v["owner"].as_str()),
        (Some("pending"), Some("alice"))
    );

    // The one bob could not cancel fires; the one alice cancelled never does.
    let got = consume(&kafka, &d, 1, Duration::from_secs(20));
    let fired: Vec<String> = got
        .iter()
        .map(|c| String::from_utf8_lossy(&c.value).into_owned())
        .collect();
    assert_eq!(fired, vec!["kept".to_string()]);
    assert!(got[0].timestamp_ms >= due, "fired early");
    assert!(p
        .log()
        .contains("delay cancel refused: added by another principal"));
}

#[tokio::test]
async fn certificate_reload_under_load() {
    let _stack = STACK.read().await;
    let Some(kafka) = kafka_bootstrap() else {
        return;
    };
    let topic = unique_topic("reload");
    create_topic(&kafka, &topic, 2).await;
    let pki = Pki::new("test ca");
    let mut files = server_files(&pki, &pki.leaf("pproxy-old"));
    files.push(("local.json", local_config(&kafka, &[(&topic, "")], "")));
    let p = Proxy::start_with_files(
        &format!("localConfig: local.json\n{}", tls_yaml("")),
        &files,
    );
    let connector = pki.connector(None);

    // The certificate a new connection is served.
    let served_cn = |p: &Proxy| {
        let (addr, c) = (p.addr.clone(), connector.clone());
        async move {
            let tcp = TcpStream::connect(&addr).await.expect("connect");
            let name = ServerName::try_from("127.0.0.1").expect("name");
            let tls = c.connect(name, tcp).await.expect("handshake");
            let der = tls.get_ref().1.peer_certificates().expect("certs")[0].clone();
            let subject = pproxy::security::tls::subject_of(&der).expect("subject");
            subject.into_iter().find(|(k, _)| k == "CN").map(|(_, v)| v)
        }
    };
    assert_eq!(served_cn(&p).await.as_deref(), Some("pproxy-old"));

    // Load: senders on connections opened before the reload keep sending through it.
    let stop = Arc::new(AtomicBool::new(false));
    let (acked, failed) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let mut tasks = Vec::new();
    for w in 0..4 {
        let mut c = tls_client(&p, &connector).await.expect("TLS client");
        let (stop, acked, failed, topic) =
            (stop.clone(), acked.clone(), failed.clone(), topic.clone());
        tasks.push(tokio::spawn(async move {
            let mut i = 0u64;
            while !stop.load(Ordering::Relaxed) {
                let key = format!("w{w}-{i}");
                match c.call(&keyed(&topic, &key, &key)).await {
                    Ok(pproxy::proto::types::Reply::Result { code: 0, .. }) => {
                        acked.fetch_add(1, Ordering::Relaxed)
                    }
                    _ => failed.fetch_add(1, Ordering::Relaxed),
                };
                i += 1;
            }
        }));
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let new = pki.leaf("pproxy-new");
    std::fs::write(p.dir.path().join("server.pem"), &new.cert).expect("write cert");
    std::fs::write(p.dir.path().join("server.key"), &new.key).expect("write key");
    p.hup();
    let until = tokio::time::Instant::now() + T;
    while served_cn(&p).await.as_deref() != Some("pproxy-new") {
        assert!(
            tokio::time::Instant::now() < until,
            "new certificate not served"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // A broken certificate file is refused: the running certificate stays.
    std::fs::write(p.dir.path().join("server.pem"), "not a certificate").expect("write");
    p.hup();
    let rejected = r#"pproxy_config_reloads_total{source="sighup",result="rejected"}"#;
    let until = tokio::time::Instant::now() + T;
    while metric(&p, rejected) < 1 {
        assert!(
            tokio::time::Instant::now() < until,
            "broken certificate not rejected"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(served_cn(&p).await.as_deref(), Some("pproxy-new"));
    tokio::time::sleep(Duration::from_millis(500)).await;
    stop.store(true, Ordering::Relaxed);
    for t in tasks {
        t.await.expect("sender");
    }
    let acked = acked.load(Ordering::Relaxed) as usize;
    assert_eq!(
        failed.load(Ordering::Relaxed),
        0,
        "requests failed across the reload"
    );
    assert!(acked > 0);
    assert_eq!(
        consume(&kafka, &topic, acked, T).len(),
        acked,
        "acknowledged messages lost"
    );
}

/// One admin request on a fresh connection (TLS when given): the whole answer.
async fn http(
    addr: SocketAddr,
    tls: Option<&Tls>,
    method: &str,
    path: &str,
    token: Option<&str>,
) -> Answer {
    let auth = token.map(|t| format!("Bearer {t}"));
    let headers: Vec<_> = auth
        .iter()
        .map(|a| (header::AUTHORIZATION, a.as_str()))
        .collect();
    let method = Method::from_bytes(method.as_bytes()).expect("method");
    client::request(method, &addr.to_string(), path, &headers, tls, T)
        .await
        .expect("admin answer")
}

/// This host's first non-loopback IPv4 address, if it has one (no packet is sent).
fn host_ip() -> Option<IpAddr> {
    let s = std::net::UdpSocket::bind("0.0.0.0:0").ok()?;
    s.connect("10.255.255.255:9").ok()?;
    let ip = s.local_addr().ok()?.ip();
    (!ip.is_loopback() && !ip.is_unspecified()).then_some(ip)
}

#[tokio::test]
async fn admin_token_loopback_and_tls() {
    let _stack = STACK.read().await;
    let pki = Pki::new("test ca");
    let files = server_files(&pki, &pki.leaf("pproxy"));
    let base = "server:\n  bindAddr: 127.0.0.1\n  adminBindAddr: 0.0.0.0\n  adminToken: s3cret\n  adminTls: true\n";
    let p = Proxy::start_with_files(&format!("{base}{}", tls_yaml("")), &files);
    let local = SocketAddr::from(([127, 0, 0, 1], p.admin_port));
    // A client that never finishes its request head is cut at the connection's 10 s bound.
    let stuck = tokio::spawn(async move {
        let mut s = TcpStream::connect(local).await.expect("connect");
        s.write_all(b"GET /status HTTP/1.1\r\nHost: x\r\n")
            .await
            .expect("write");
        let start = tokio::time::Instant::now();
        let mut out = Vec::new();
        let _ = tokio::time::timeout(T, s.read_to_end(&mut out)).await;
        start.elapsed()
    });
    let code = |method: &'static str, path: &'static str, token: Option<&'static str>| async move {
        http(local, None, method, path, token).await.status.as_u16()
    };
    let post = "/loglevel?filter=info";

    let refused = http(local, None, "POST", post, None).await;
    assert_eq!(refused.status.as_u16(), 401);
    assert_eq!(refused.header("www-authenticate"), Some("Bearer"));
    assert_eq!(refused.header("content-type"), Some("application/json"));
    assert_eq!(
        refused.text(),
        r#"{"error":"a valid bearer token is required"}"#
    );
    assert_eq!(code("POST", post, Some("wrong")).await, 401);
    assert_eq!(code("POST", post, Some("s3cret")).await, 200);
    assert_eq!(code("GET", "/status", None).await, 200);
    keep_alive_and_head_limit(local).await;

    let tls = Tls {
        connector: pki.connector(None),
        name: ServerName::try_from("127.0.0.1").expect("name"),
    };
    // Loopback over TLS works too.
    assert_eq!(
        http(local, Some(&tls), "GET", "/status", None).await.status,
        200
    );
    match host_ip() {
        None => {
            eprintln!("admin_token_loopback_and_tls: no non-loopback address; remote cases not run")
        }
        Some(ip) => {
            let remote = SocketAddr::new(ip, p.admin_port);
            let a = http(remote, None, "GET", "/status", None).await;
            assert_eq!(a.status, 403, "remote plaintext admin: {}", a.text());
            assert_eq!(
                http(remote, Some(&tls), "GET", "/status", None)
                    .await
                    .status,
                200
            );
            let a = http(remote, Some(&tls), "POST", post, Some("s3cret")).await;
            assert_eq!(a.status, 403, "mutations stay loopback-only, token or not");
        }
    }

    // Reads behind the token after a reload; /health and /ready stay open for probes.
    let conf = p.dir.path().join("carrera.yaml");
    let text = std::fs::read_to_string(&conf).expect("conf");
    let text = text.replace(
        "  adminTls: true\n",
        "  adminTls: true\n  adminTokenForReads: true\n",
    );
    std::fs::write(&conf, text).expect("conf");
    p.hup();
    let until = tokio::time::Instant::now() + T;
    while http(local, None, "GET", "/status", None).await.status != 401 {
        assert!(
            tokio::time::Instant::now() < until,
            "adminTokenForReads not applied"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(code("GET", "/status", Some("s3cret")).await, 200);
    assert_eq!(code("GET", "/health", None).await, 200);
    assert_eq!(code("GET", "/ready", None).await, 200);
    assert!(metric_token(&p) >= 3);
    let took = stuck.await.expect("stuck client");
    assert!(
        took >= Duration::from_secs(9) && took <= Duration::from_millis(11_500),
        "a stuck client was cut after {took:?}"
    );
}

/// Two requests on one connection of the admin port, then a request head over its 16 KiB limit.
async fn keep_alive_and_head_limit(admin: SocketAddr) {
    let mut s = TcpStream::connect(admin).await.expect("connect");
    let mut buf = vec![0u8; 64 * 1024];
    for _ in 0..2 {
        s.write_all(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
            .await
            .expect("write");
        let mut answer = String::new();
        while !answer.ends_with("\r\n\r\nOK") {
            let n = tokio::time::timeout(T, s.read(&mut buf))
                .await
                .expect("answer in time")
                .expect("read");
            assert!(n > 0, "closed after {answer:?}");
            answer.push_str(&String::from_utf8_lossy(&buf[..n]));
        }
        assert!(answer.starts_with("HTTP/1.1 200 OK\r\n"), "{answer}");
        assert!(
            answer
                .to_ascii_lowercase()
                .contains("content-type: text/plain\r\n"),
            "{answer}"
        );
    }
    let mut s = TcpStream::connect(admin).await.expect("connect");
    let big = "a".repeat(20 * 1024);
    let req = format!("GET /status HTTP/1.1\r\nHost: x\r\nX-Big: {big}\r\n\r\n");
    // The server may close before it has read the whole head.
    let _ = s.write_all(req.as_bytes()).await;
    let mut out = Vec::new();
    let _ = tokio::time::timeout(T, s.read_to_end(&mut out)).await;
    let out = String::from_utf8_lossy(&out);
    assert!(
        out.is_empty() || out.starts_with("HTTP/1.1 431 "),
        "head over the limit: {out}"
    );
}

/// `pproxy_admin_denied_total{reason="token"}`, read with the token.
fn metric_token(p: &Proxy) -> u64 {
    let addr = format!("127.0.0.1:{}", p.admin_port);
    let auth = [(header::AUTHORIZATION, "Bearer s3cret")];
    let scrape = client::blocking(client::get(&addr, "/metrics", &auth, None)).expect("scrape");
    sample(
        &scrape.text(),
        r#"pproxy_admin_denied_total{reason="token"}"#,
    )
}
