//! The operator console (docs/CONSOLE.md): one HTML shell, one script and one style sheet
//! embedded in the binary and served under `/ui/`, plus `/ui/api/summary`, the metric totals
//! the page turns into rates. Everything else the page shows comes from the admin JSON
//! endpoints, fetched by the script.

use std::collections::BTreeMap;
use std::sync::LazyLock;

use serde_json::{json, Value};

use super::Admin;
use crate::http::{header, json, respond, with_header, HeaderValue, Response, StatusCode};
use crate::metrics::scrape::{render, Format};

const SHELL: &str = include_str!("ui/index.html");
const SCRIPT: &[u8] = include_bytes!("ui/console.js");
const STYLE: &[u8] = include_bytes!("ui/console.css");

/// No inline script or style, nothing from another origin, never framed.
const CSP: &str = "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
                   connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'";

/// 64-bit FNV-1a, computed at compile time so an asset's name changes with its content.
const fn fnv1a(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    let mut i = 0;
    while i < bytes.len() {
        h ^= bytes[i] as u64;
        h = h.wrapping_mul(0x0100_0000_01b3);
        i += 1;
    }
    h
}

/// One embedded asset under `/ui/assets/`.
struct Asset {
    name: String,
    content_type: &'static str,
    body: &'static [u8],
}

/// The assets, named by their content hash: a cached copy can never be a stale one.
static ASSETS: LazyLock<[Asset; 2]> = LazyLock::new(|| {
    [
        Asset {
            name: format!("console.{:016x}.js", fnv1a(SCRIPT)),
            content_type: "text/javascript; charset=utf-8",
            body: SCRIPT,
        },
        Asset {
            name: format!("console.{:016x}.css", fnv1a(STYLE)),
            content_type: "text/css; charset=utf-8",
            body: STYLE,
        },
    ]
});

/// The one HTML escaper of server-rendered markup.
pub(super) fn escape_html(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// Whether `path` is a console page or asset: they hold no data, so they are served without the
/// token even when reads need one (a browser cannot add a bearer header to a navigation); the
/// data the page fetches follows the read rules.
pub(super) fn is_public(path: &str) -> bool {
    path == "/ui" || (path.starts_with("/ui/") && !path.starts_with("/ui/api/"))
}

/// `GET /ui`, `/ui/...`: a page, an asset or the summary.
pub(super) fn get(app: &Admin, path: &str) -> Response {
    let rest = match path.strip_prefix("/ui/") {
        Some(rest) => rest,
        // `ui/` relative to `/ui` is `/ui/`, behind any path prefix a reverse proxy adds.
        None => {
            let r = respond(StatusCode::PERMANENT_REDIRECT, crate::http::TEXT, "");
            return secure(with_header(
                r,
                header::LOCATION,
                HeaderValue::from_static("ui/"),
            ));
        }
    };
    let r = if let Some(name) = rest.strip_prefix("assets/") {
        asset(name)
    } else if rest == "api/summary" {
        let r = json(StatusCode::OK, &summary(app));
        with_header(
            r,
            header::CACHE_CONTROL,
            HeaderValue::from_static("no-store"),
        )
    } else if is_page(rest) {
        shell(rest)
    } else {
        respond(StatusCode::NOT_FOUND, crate::http::TEXT, "not found")
    };
    secure(r)
}

/// The pages the script knows: overview, delay lookup (with or without an id), dead letters,
/// cluster partitions.
fn is_page(rest: &str) -> bool {
    matches!(rest, "" | "delay" | "dead" | "cluster") || rest.starts_with("delay/")
}

/// The shell, with asset links relative to the page so a path prefix in front of the admin
/// port keeps working; the message id of a deep link never enters the markup (the script reads
/// it from the address).
fn shell(rest: &str) -> Response {
    let up = "../".repeat(rest.matches('/').count());
    let [js, css] = &*ASSETS;
    let html = SHELL
        .replace(
            "{{ui}}",
            &escape_html(if up.is_empty() { "./" } else { &up }),
        )
        .replace("{{js}}", &escape_html(&format!("{up}assets/{}", js.name)))
        .replace("{{css}}", &escape_html(&format!("{up}assets/{}", css.name)))
        .replace("{{version}}", &escape_html(env!("CARGO_PKG_VERSION")));
    let r = respond(StatusCode::OK, "text/html; charset=utf-8", html);
    with_header(
        r,
        header::CACHE_CONTROL,
        HeaderValue::from_static("no-cache"),
    )
}

/// An embedded asset; only the current hashed names exist.
fn asset(name: &str) -> Response {
    match ASSETS.iter().find(|a| a.name == name) {
        Some(a) => {
            let r = respond(StatusCode::OK, a.content_type, a.body);
            let immutable = HeaderValue::from_static("public, max-age=31536000, immutable");
            with_header(r, header::CACHE_CONTROL, immutable)
        }
        None => respond(StatusCode::NOT_FOUND, crate::http::TEXT, "not found"),
    }
}

/// The headers every console response carries.
fn secure(r: Response) -> Response {
    let r = with_header(
        r,
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CSP),
    );
    let r = with_header(
        r,
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    with_header(r, header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"))
}

/// `GET /ui/api/summary`: the counters the overview turns into rates (two samples, divided by
/// the time between their `atMs`), and the lateness histogram, summed over the labels the page
/// does not show. Read from the rendered registry so every collector counts, however it stores
/// its values.
fn summary(app: &Admin) -> Value {
    let text = render(&app.registry, Format::Prometheus);
    let now_ms = chrono::Utc::now().timestamp_millis();
    summarize(&text, now_ms)
}

/// One sample line of the text format: name, labels, value.
#[derive(Debug, PartialEq)]
struct Sample<'a> {
    name: &'a str,
    labels: Vec<(&'a str, String)>,
    value: f64,
}

impl Sample<'_> {
    fn label(&self, name: &str) -> Option<&str> {
        self.labels
            .iter()
            .find(|(k, _)| *k == name)
            .map(|(_, v)| v.as_str())
    }
}

/// Parses one line of the Prometheus text format; comments and anything malformed are `None`.
fn parse_line(line: &str) -> Option<Sample<'_>> {
    let line = line.trim();
    if line.is_empty() || line.starts_with('#') {
        return None;
    }
    let name_end = line.find(['{', ' '])?;
    let name = &line[..name_end];
    let mut rest = &line[name_end..];
    let mut labels = Vec::new();
    if let Some(body) = rest.strip_prefix('{') {
        let mut chars = body.char_indices();
        loop {
            // label name up to '=', then a quoted value with \\, \" and \n escapes
            let (start, c) = chars.next()?;
            if c == '}' {
                rest = &body[start + 1..];
                break;
            }
            if c == ',' || c == ' ' {
                continue;
            }
            let eq = body[start..].find('=')? + start;
            let key = &body[start..eq];
            while chars.next()?.0 < eq {}
            if chars.next()?.1 != '"' {
                return None;
            }
            let mut value = String::new();
            loop {
                match chars.next()?.1 {
                    '"' => break,
                    '\\' => match chars.next()?.1 {
                        'n' => value.push('\n'),
                        other => value.push(other),
                    },
                    other => value.push(other),
                }
            }
            labels.push((key, value));
        }
    }
    let value = rest.split_whitespace().next()?.parse().ok()?;
    Some(Sample {
        name,
        labels,
        value,
    })
}

/// The summary of a rendered registry at `now_ms`.
fn summarize(text: &str, now_ms: i64) -> Value {
    let mut requests: BTreeMap<String, f64> = BTreeMap::new();
    let mut messages: BTreeMap<String, f64> = BTreeMap::new();
    let mut topics: BTreeMap<String, f64> = BTreeMap::new();
    let mut fires: BTreeMap<String, f64> = BTreeMap::new();
    let mut buckets: Vec<(f64, f64)> = Vec::new();
    let (mut late_count, mut late_sum, mut dead, mut adds) = (0.0, 0.0, 0.0, 0.0);
    let add = |m: &mut BTreeMap<String, f64>, k: Option<&str>, v: f64| {
        *m.entry(k.unwrap_or("?").to_string()).or_insert(0.0) += v;
    };
    for s in text.lines().filter_map(parse_line) {
        match s.name {
            "pproxy_requests_total" => add(&mut requests, s.label("code"), s.value),
            "pproxy_messages_total" => {
                add(&mut messages, s.label("code"), s.value);
                add(&mut topics, s.label("topic"), s.value);
            }
            "pproxy_delay_fired_total" => add(&mut fires, s.label("result"), s.value),
            "pproxy_delay_adds_total" => adds += s.value,
            "pproxy_delay_dead_letters" => dead += s.value,
            "pproxy_delay_fire_lateness_seconds_count" => late_count += s.value,
            "pproxy_delay_fire_lateness_seconds_sum" => late_sum += s.value,
            "pproxy_delay_fire_lateness_seconds_bucket" => {
                let le = match s.label("le") {
                    Some("+Inf") => f64::INFINITY,
                    Some(le) => le.parse().unwrap_or(f64::NAN),
                    None => f64::NAN,
                };
                if le.is_nan() {
                    continue;
                }
                match buckets.iter_mut().find(|(b, _)| *b == le) {
                    Some((_, c)) => *c += s.value,
                    None => buckets.push((le, s.value)),
                }
            }
            _ => {}
        }
    }
    buckets.sort_by(|a, b| a.0.total_cmp(&b.0));
    // JSON has no infinity: the last bucket's bound is null.
    let le: Vec<Value> = buckets
        .iter()
        .map(|(b, _)| if b.is_finite() { json!(b) } else { Value::Null })
        .collect();
    let counts: Vec<f64> = buckets.iter().map(|(_, c)| *c).collect();
    json!({
        "atMs": now_ms,
        "requestsByCode": requests,
        "messagesByCode": messages,
        "messagesByTopic": topics,
        "firesByResult": fires,
        "delayAdds": adds,
        "deadLetters": dead,
        "lateness": {"le": le, "cumulative": counts, "count": late_count, "sum": late_sum},
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escape_html_escapes_markup_and_quotes() {
        assert_eq!(
            escape_html(r#"<img src=x onerror="alert(1)">&'"#),
            "&lt;img src=x onerror=&quot;alert(1)&quot;&gt;&amp;&#39;"
        );
    }

    #[test]
    fn parses_text_format_lines() {
        let s = parse_line(r#"pproxy_requests_total{method="sendSync",topic="a\"b",code="0"} 7"#);
        let s = s.expect("a sample");
        assert_eq!(s.name, "pproxy_requests_total");
        assert_eq!(s.label("topic"), Some("a\"b"));
        assert_eq!(s.label("code"), Some("0"));
        assert_eq!(s.value, 7.0);
        assert_eq!(
            parse_line("pproxy_delay_dead_letters 3").map(|s| s.value),
            Some(3.0)
        );
        assert_eq!(parse_line("# HELP x y"), None);
        assert_eq!(parse_line(r#"x{a="unterminated} 1"#), None);
    }

    #[test]
    fn summary_sums_over_hidden_labels() {
        let text = "\
pproxy_requests_total{method=\"sendSync\",topic=\"a\",code=\"0\"} 2
pproxy_requests_total{method=\"sendAsync\",topic=\"b\",code=\"0\"} 3
pproxy_requests_total{method=\"sendSync\",topic=\"a\",code=\"15\"} 1
pproxy_delay_fired_total{topic=\"d\",result=\"ok\"} 4
pproxy_delay_fire_lateness_seconds_bucket{le=\"0.01\"} 1
pproxy_delay_fire_lateness_seconds_bucket{le=\"+Inf\"} 4
pproxy_delay_fire_lateness_seconds_count 4
";
        let v = summarize(text, 42);
        assert_eq!(v["atMs"], 42);
        assert_eq!(v["requestsByCode"]["0"], 5.0);
        assert_eq!(v["requestsByCode"]["15"], 1.0);
        assert_eq!(v["firesByResult"]["ok"], 4.0);
        assert_eq!(v["lateness"]["le"], json!([0.01, null]));
        assert_eq!(v["lateness"]["cumulative"], json!([1.0, 4.0]));
    }

    #[test]
    fn pages_assets_and_api_are_told_apart() {
        assert!(is_public("/ui/") && is_public("/ui/delay/x") && is_public("/ui"));
        assert!(!is_public("/ui/api/summary") && !is_public("/status"));
        assert!(is_page("") && is_page("delay/a%2Fb") && is_page("dead"));
        assert!(!is_page("etc/passwd"));
        let [js, css] = &*ASSETS;
        assert!(js.name.starts_with("console.") && js.name.ends_with(".js"));
        assert!(css.name.ends_with(".css"));
    }
}
