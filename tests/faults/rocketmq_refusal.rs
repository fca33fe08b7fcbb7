//! A RocketMQ broker that refuses puts because its disk is full (issue 20 part 5): a CI disk at
//! 94 % made the broker refuse every put, and pproxy said only "10 FAILED: unknown reason".
//! The wire message of 10 is fixed (wire.md §6), so the failure log line names the cause.

use std::time::Duration;

use crate::common::rmq;
use crate::common::*;

/// The lowest disk-full threshold RocketMQ 5.3.3 accepts (it raises anything lower to 35 %).
const LOWEST_WARNING_RATIO: u32 = 35;
/// The value scripts/stack.sh runs the broker with (the 5.3.3 cap).
const STACK_WARNING_RATIO: &str = "90";

/// Changes one setting of the running broker; whether that worked.
fn broker_config(key: &str, value: &str) -> bool {
    std::process::Command::new(repo_path("scripts/stack.sh"))
        .args(["rocketmq-broker-config", key, value])
        .status()
        .is_ok_and(|st| st.success())
}

/// Puts the stack's threshold back, also when an assertion failed.
struct Restore;

impl Drop for Restore {
    fn drop(&mut self) {
        // No panic here: it may run while a failed assertion unwinds.
        if !broker_config("diskSpaceWarningLevelRatio", STACK_WARNING_RATIO) {
            eprintln!("could not restore diskSpaceWarningLevelRatio={STACK_WARNING_RATIO}");
        }
    }
}

/// Used % of the file system under the stack's RocketMQ store, as df (and the broker) count it.
fn store_disk_used_percent() -> Option<u32> {
    let home = std::env::var("PPROXY_STACK_HOME").ok().or_else(|| {
        std::env::var("HOME")
            .ok()
            .map(|h| format!("{h}/.cache/pproxy-stack"))
    })?;
    let out = std::process::Command::new("df")
        .args(["--output=pcent", &format!("{home}/data/rocketmq/store")])
        .output()
        .ok()?;
    let text = String::from_utf8_lossy(&out.stdout);
    text.lines()
        .last()?
        .trim()
        .trim_end_matches('%')
        .parse()
        .ok()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_broker_disk_is_named_in_the_failure_log() {
    // Changes the shared broker: no other test of this binary runs meanwhile.
    let _stack = STACK.write().await;
    let Some(ns) = rmq::namesrv() else {
        return;
    };
    // The broker can only be told the disk is full below what it really is; it also deletes
    // commit-log files other than the newest while it thinks so (older tests' data only).
    let used = store_disk_used_percent().unwrap_or(0);
    if used <= LOWEST_WARNING_RATIO + 1 {
        println!("not run: the store's disk is {used}% used, the broker's lowest threshold is {LOWEST_WARNING_RATIO}%");
        return;
    }
    let topic = unique_topic("rdiskfull");
    rmq::create_topic(&topic, 1);
    let doc = rmq::local_config(&ns, &[(&topic, "")], "");
    let p = Proxy::start_with_files("localConfig: local.json\n", &[("local.json", doc)]);
    assert_eq!(send_code(&p, &topic).await, 0, "before: {}", p.log());

    let restore = Restore;
    assert!(
        broker_config(
            "diskSpaceWarningLevelRatio",
            &LOWEST_WARNING_RATIO.to_string()
        ),
        "stack.sh rocketmq-broker-config"
    );
    // The broker looks at its disk every 10 s (the first time 60 s after it started).
    assert!(
        eventually_code(&p, &topic, 10, Duration::from_secs(90)).await,
        "the broker never refused (disk {used}%)"
    );
    let log = p.log();
    let line = log
        .lines()
        .find(|l| l.contains("request failed") && l.contains("code=10"))
        .unwrap_or_else(|| panic!("no failure line for 10:\n{log}"));
    assert!(
        line.contains("disk is full") && line.contains("broker code 14"),
        "the failure line does not name the full disk: {line}"
    );
    println!("refused while the broker saw a full disk: {line}");

    drop(restore);
    assert!(
        eventually_code(&p, &topic, 0, Duration::from_secs(60)).await,
        "service did not return after the threshold was restored:\n{}",
        p.log()
    );
}
