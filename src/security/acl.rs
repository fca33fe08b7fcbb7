//! Client ACLs: which principal a connection is, and which topics it may write (docs/SECURITY.md).

use std::net::IpAddr;
use std::sync::Arc;

use ipnet::IpNet;

use super::peer::Peer;
use crate::config::settings::AclSettings;
use crate::config::ConfigError;
use crate::proto::Call;
use crate::proto::HEARTBEAT_TOPIC;

/// ACLs compiled from `acl.*`.
#[derive(Debug, Default)]
pub struct Acl {
    enabled: bool,
    principals: Vec<Principal>,
}

/// A principal: who a client is, and what it may do.
#[derive(Debug)]
pub struct Principal {
    /// Name from the configuration; recorded with the delay messages it adds.
    pub name: Arc<str>,
    nets: Vec<IpNet>,
    subjects: Vec<Subject>,
    topics: Vec<TopicPattern>,
    delay: bool,
}

/// A certificate subject as ordered (attribute, value) pairs, attribute upper-case.
pub type SubjectAttrs = Vec<(String, String)>;

/// A configured subject: every attribute it lists must be in the certificate's subject.
#[derive(Debug, PartialEq, Eq)]
struct Subject(SubjectAttrs);

#[derive(Debug, PartialEq, Eq)]
enum TopicPattern {
    Any,
    Exact(String),
    Prefix(String),
}

/// Why a request was refused (metric label `reason`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Denied {
    /// No principal matches the client's address and certificate.
    NoPrincipal,
    /// The principal may not write the topic.
    Topic,
    /// The principal may write the topic but not send delay messages to it.
    Delay,
}

impl Denied {
    /// Metric label.
    pub fn label(self) -> &'static str {
        match self {
            Denied::NoPrincipal => "no_principal",
            Denied::Topic => "topic",
            Denied::Delay => "delay",
        }
    }
}

/// The outcome of an allowed request: the principal's name when ACLs are on.
pub type Allowed = Option<Arc<str>>;

impl Acl {
    /// Compiles and checks `acl.*`.
    pub fn compile(s: &AclSettings) -> Result<Acl, ConfigError> {
        let mut principals: Vec<Principal> = Vec::with_capacity(s.principals.len());
        for (i, p) in s.principals.iter().enumerate() {
            let bad = |why: String| ConfigError::Invalid(format!("acl.principals[{i}]: {why}"));
            let name = p.name.trim();
            if name.is_empty() || name.len() > 128 {
                return Err(bad("`name` must have 1 to 128 characters".into()));
            }
            if principals.iter().any(|q| &*q.name == name) {
                return Err(bad(format!("duplicate name `{name}`")));
            }
            let nets = p
                .addresses
                .iter()
                .map(|a| parse_net(a).ok_or_else(|| bad(format!("bad address `{a}`"))))
                .collect::<Result<Vec<_>, _>>()?;
            let subjects = p
                .subjects
                .iter()
                .map(|t| parse_subject(t).ok_or_else(|| bad(format!("bad subject `{t}`"))))
                .collect::<Result<Vec<_>, _>>()?;
            let topics = p
                .topics
                .iter()
                .map(|t| parse_topic(t).ok_or_else(|| bad(format!("bad topic pattern `{t}`"))))
                .collect::<Result<Vec<_>, _>>()?;
            principals.push(Principal {
                name: name.into(),
                nets,
                subjects,
                topics,
                delay: p.delay,
            });
        }
        if s.enabled && principals.is_empty() {
            return Err(ConfigError::Invalid(
                "acl.enabled needs at least one principal (or every client is refused)".into(),
            ));
        }
        Ok(Acl {
            enabled: s.enabled,
            principals,
        })
    }

    /// Whether ACLs are enforced.
    pub fn enabled(&self) -> bool {
        self.enabled
    }

    /// The first principal matching a client's address and certificate subject.
    pub fn principal(
        &self,
        ip: Option<IpAddr>,
        subject: Option<&SubjectAttrs>,
    ) -> Option<&Principal> {
        self.principals.iter().find(|p| p.matches(ip, subject))
    }

    /// Decides a decoded call: `Ok(principal)` to go on, `Err` to answer 13.
    pub fn check(&self, client: &Peer, call: &Call) -> Result<Allowed, (Option<Arc<str>>, Denied)> {
        if !self.enabled {
            return Ok(None);
        }
        let principal = self.principal(client.ip(), client.subject.as_ref());
        let topics: Vec<&str> = match call {
            // The SDKs' heartbeat probes the node, it writes nothing.
            Call::SendSync(Some(m), _) if m.topic.as_deref() == Some(HEARTBEAT_TOPIC) => {
                return Ok(principal.map(|p| p.name.clone()));
            }
            Call::SendSync(m, _) | Call::SendAsync(m) => {
                m.iter().filter_map(|m| m.topic.as_deref()).collect()
            }
            Call::SendBatchSync(ms) => ms.iter().filter_map(|m| m.topic.as_deref()).collect(),
            Call::SendDelaySync(d, _) => d.iter().filter_map(|d| d.topic.as_deref()).collect(),
        };
        let Some(p) = principal else {
            return Err((None, Denied::NoPrincipal));
        };
        let delay = matches!(call, Call::SendDelaySync(..));
        for t in topics {
            if !p.may_write(t) {
                return Err((Some(p.name.clone()), Denied::Topic));
            }
            if delay && !p.delay {
                return Err((Some(p.name.clone()), Denied::Delay));
            }
        }
        Ok(Some(p.name.clone()))
    }

    /// Names of the principals (metric labels are bounded by them).
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.principals.iter().map(|p| &*p.name)
    }
}

impl Principal {
    fn matches(&self, ip: Option<IpAddr>, subject: Option<&SubjectAttrs>) -> bool {
        let addr_ok = self.nets.is_empty()
            || ip.is_some_and(|ip| {
                let ip = ip.to_canonical();
                self.nets.iter().any(|n| n.contains(&ip))
            });
        let subject_ok = self.subjects.is_empty()
            || subject.is_some_and(|s| self.subjects.iter().any(|want| want.matched_by(s)));
        addr_ok && subject_ok
    }

    /// Whether this principal may write `topic`.
    pub fn may_write(&self, topic: &str) -> bool {
        self.topics.iter().any(|p| match p {
            TopicPattern::Any => true,
            TopicPattern::Exact(t) => t == topic,
            TopicPattern::Prefix(t) => topic.starts_with(t.as_str()),
        })
    }
}

impl Subject {
    fn matched_by(&self, have: &SubjectAttrs) -> bool {
        self.0.iter().all(|w| have.iter().any(|h| h == w))
    }
}

fn parse_net(s: &str) -> Option<IpNet> {
    let s = s.trim();
    if let Ok(n) = s.parse::<IpNet>() {
        return Some(n.trunc());
    }
    s.parse::<IpAddr>().ok().map(IpNet::from)
}

/// Parses `CN=a, O=b` into attributes. Values with commas or escapes are not supported.
fn parse_subject(s: &str) -> Option<Subject> {
    let mut attrs = Vec::new();
    for part in s.split(',') {
        let (k, v) = part.split_once('=')?;
        let (k, v) = (k.trim(), v.trim());
        if k.is_empty() || v.is_empty() || !k.chars().all(|c| c.is_ascii_alphanumeric() || c == '.')
        {
            return None;
        }
        attrs.push((k.to_ascii_uppercase(), v.to_string()));
    }
    (!attrs.is_empty()).then_some(Subject(attrs))
}

fn parse_topic(s: &str) -> Option<TopicPattern> {
    let s = s.trim();
    match s {
        "" => None,
        "*" => Some(TopicPattern::Any),
        _ => match s.strip_suffix('*') {
            Some(p) if !p.contains('*') => Some(TopicPattern::Prefix(p.to_string())),
            Some(_) => None,
            None if s.contains('*') => None,
            None => Some(TopicPattern::Exact(s.to_string())),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::settings::PrincipalSettings;
    use crate::proto::types::{DelayMessage, Message};

    fn acl(principals: Vec<PrincipalSettings>) -> Acl {
        Acl::compile(&AclSettings {
            enabled: true,
            principals,
        })
        .expect("valid acl")
    }

    fn principal(
        name: &str,
        addrs: &[&str],
        subjects: &[&str],
        topics: &[&str],
        delay: bool,
    ) -> PrincipalSettings {
        PrincipalSettings {
            name: name.into(),
            addresses: addrs.iter().map(|s| s.to_string()).collect(),
            subjects: subjects.iter().map(|s| s.to_string()).collect(),
            topics: topics.iter().map(|s| s.to_string()).collect(),
            delay,
        }
    }

    fn client(ip: &str, subject: Option<&str>) -> Peer {
        Peer {
            addr: Some(std::net::SocketAddr::new(ip.parse().expect("ip"), 4000)),
            tls: subject.is_some(),
            subject: subject.map(|s| parse_subject(s).expect("subject").0),
        }
    }

    fn send(topic: &str) -> Call {
        Call::SendSync(
            Some(Message {
                topic: Some(topic.into()),
                ..Message::default()
            }),
            0,
        )
    }

    fn delay(topic: &str) -> Call {
        Call::SendDelaySync(
            Some(DelayMessage {
                topic: Some(topic.into()),
                ..DelayMessage::default()
            }),
            0,
        )
    }

    #[test]
    fn disabled_allows_everything() {
        let a = Acl::compile(&AclSettings::default()).expect("default");
        assert_eq!(a.check(&client("10.0.0.1", None), &send("t")), Ok(None));
    }

    #[test]
    fn address_topics_and_delay() {
        let a = acl(vec![
            principal(
                "orders",
                &["10.1.0.0/16"],
                &[],
                &["orders", "orders-*"],
                false,
            ),
            principal("ops", &["127.0.0.1"], &[], &["*"], true),
        ]);
        let orders = client("10.1.2.3", None);
        assert_eq!(a.check(&orders, &send("orders")), Ok(Some("orders".into())));
        assert_eq!(
            a.check(&orders, &send("orders-eu")),
            Ok(Some("orders".into()))
        );
        assert_eq!(
            a.check(&orders, &send("ordersx")),
            Err((Some("orders".into()), Denied::Topic))
        );
        assert_eq!(
            a.check(&orders, &delay("orders")),
            Err((Some("orders".into()), Denied::Delay))
        );
        assert_eq!(
            a.check(&client("10.2.0.1", None), &send("orders")),
            Err((None, Denied::NoPrincipal))
        );
        assert_eq!(
            a.check(&client("127.0.0.1", None), &delay("x")),
            Ok(Some("ops".into()))
        );
        // An IPv4-mapped IPv6 peer is its IPv4 address.
        assert_eq!(
            a.check(&client("::ffff:10.1.0.9", None), &send("orders")),
            Ok(Some("orders".into()))
        );
        // The heartbeat is never refused.
        assert!(a
            .check(&client("10.9.9.9", None), &send(HEARTBEAT_TOPIC))
            .is_ok());
    }

    #[test]
    fn batch_needs_every_topic() {
        let a = acl(vec![principal("p", &[], &[], &["a"], false)]);
        let m = |t: &str| Message {
            topic: Some(t.into()),
            ..Message::default()
        };
        let c = client("10.0.0.1", None);
        assert!(a
            .check(&c, &Call::SendBatchSync(vec![m("a"), m("a")]))
            .is_ok());
        assert_eq!(
            a.check(&c, &Call::SendBatchSync(vec![m("a"), m("b")])),
            Err((Some("p".into()), Denied::Topic))
        );
    }

    #[test]
    fn subjects_match_as_subsets() {
        let a = acl(vec![principal(
            "pay",
            &[],
            &["CN=pay, O=Example"],
            &["*"],
            true,
        )]);
        let ok = client("10.0.0.1", Some("C=DE,O=Example,CN=pay"));
        assert!(a.check(&ok, &send("t")).is_ok());
        assert!(a
            .check(&client("10.0.0.1", Some("O=Example,CN=payx")), &send("t"))
            .is_err());
        assert!(a.check(&client("10.0.0.1", None), &send("t")).is_err());
    }

    #[test]
    fn bad_settings_are_refused() {
        for p in [
            principal("", &[], &[], &["*"], false),
            principal("a", &["10.0.0.0/33"], &[], &["*"], false),
            principal("a", &[], &["CN"], &["*"], false),
            principal("a", &[], &[], &["a*b"], false),
        ] {
            assert!(Acl::compile(&AclSettings {
                enabled: true,
                principals: vec![p]
            })
            .is_err());
        }
        assert!(Acl::compile(&AclSettings {
            enabled: true,
            principals: vec![]
        })
        .is_err());
    }
}
