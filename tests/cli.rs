//! The operator CLI end to end against a pproxy process in embedded mode.

mod common;

use std::process::Command;
use std::time::Duration;

use common::*;

fn cli(p: &Proxy, args: &[&str]) -> (i32, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_pproxy"))
        .args(args)
        .arg("--addr")
        .arg(&p.addr)
        .args(if args[0] == "delay" {
            vec![
                "--admin".to_string(),
                format!("http://127.0.0.1:{}", p.admin_port),
            ]
        } else {
            vec![]
        })
        .output()
        .expect("run cli");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).trim().to_string(),
    )
}

#[test]
fn send_and_delay_commands() {
    let p = Proxy::start("embeddedDelayTopics: [reminders]\n");
    assert_eq!(
        cli(
            &p,
            &[
                "send",
                "--topic",
                "orders",
                "--body",
                "x",
                "--key",
                "k",
                "--hash-id",
                "4"
            ]
        ),
        (0, "0 OK".into())
    );
    assert_eq!(
        cli(&p, &["send", "--topic", "bad topic", "--body", "x"]),
        (1, "13 FAILED: Topic is not in the proxy white list".into())
    );
    let (code, out) = cli(
        &p,
        &[
            "delay",
            "add",
            "--topic",
            "reminders",
            "--in",
            "1500ms",
            "--body",
            "hello",
            "--uuid",
            "order-17",
        ],
    );
    assert_eq!(code, 0, "{out}");
    let id = out
        .split_whitespace()
        .nth(2)
        .expect("id printed")
        .to_string();
    let (code, status) = cli(&p, &["delay", "status", &id]);
    assert_eq!(code, 0);
    let v: serde_json::Value = serde_json::from_str(&status).expect("json");
    assert_eq!(v["state"], "pending", "{v}");
    std::thread::sleep(Duration::from_millis(2500));
    let (_, status) = cli(&p, &["delay", "status", &id]);
    let v: serde_json::Value = serde_json::from_str(&status).expect("json");
    assert_eq!(v["state"], "fired", "{v}");
    let (code, out) = cli(
        &p,
        &[
            "delay",
            "add",
            "--topic",
            "reminders",
            "--in",
            "10m",
            "--body",
            "b",
        ],
    );
    assert_eq!(code, 0);
    let id2 = out.split_whitespace().nth(2).expect("id").to_string();
    assert_eq!(
        cli(
            &p,
            &["delay", "cancel", "--topic", "reminders", "--id", &id2]
        )
        .0,
        0
    );
    let (_, status) = cli(&p, &["delay", "status", &id2]);
    assert!(status.contains("\"state\":\"cancelled\""), "{status}");
    assert_eq!(
        cli(&p, &["delay", "add", "--topic", "reminders", "--body", "b"]).0,
        2,
        "usage error without a time"
    );
}
