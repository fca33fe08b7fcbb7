//! `pproxy status`: a summary of the admin port's /status and /ready.

use std::process::ExitCode;

use crate::admin::admin_get;

use crate::common::{print_admin, Common};

pub fn status(c: Common) -> ExitCode {
    let status = match admin_get(&c.admin, "/status") {
        Ok((200, body)) => body,
        other => return print_admin(other, &c.admin),
    };
    let ready = admin_get(&c.admin, "/ready")
        .map(|(_, b)| b)
        .unwrap_or_default();
    if c.json {
        println!(
            "{{\"status\":{status},\"ready\":{}}}",
            if ready.is_empty() { "null" } else { &ready }
        );
        return ExitCode::SUCCESS;
    }
    let v: serde_json::Value = serde_json::from_str(&status).unwrap_or_default();
    let r: serde_json::Value = serde_json::from_str(&ready).unwrap_or_default();
    let text = |k: &str| v[k].as_str().unwrap_or("?").to_string();
    println!(
        "pproxy {} on {} ({} mode, config {} generation {})",
        text("version"),
        text("node"),
        text("mode"),
        text("configSource"),
        v["configGeneration"]
    );
    println!(
        "ready: {}",
        if r["ready"] == true {
            "yes".to_string()
        } else {
            format!("no {}", r["reasons"])
        }
    );
    println!(
        "uptime {} s, {} connections, {} requests in progress",
        v["uptimeSec"], v["connections"], v["inflightRequests"]
    );
    if let Some(b) = v["embeddedBootstrap"].as_str() {
        println!("embedded Kafka bootstrap: {b}");
    }
    if let Some(s) = v.get("scheduler") {
        println!(
            "delay: {} pending, {} loaded, {} in flight, {} dead, fired-through lag {} ms",
            s["pending"], s["loaded"], s["inflight"], s["dead"], s["firedThroughLagMs"]
        );
    }
    for t in v["topics"].as_array().into_iter().flatten() {
        let clusters: Vec<&str> = t["clusters"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|c| c.as_str())
            .collect();
        let delay = if t["delayTopic"] == true {
            " (delay)"
        } else {
            ""
        };
        println!(
            "topic {} -> {}{delay}",
            t["topic"].as_str().unwrap_or("?"),
            clusters.join(",")
        );
    }
    ExitCode::SUCCESS
}
