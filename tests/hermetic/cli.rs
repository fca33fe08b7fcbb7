//! The operator CLI end to end against a pproxy process in embedded mode.

use std::process::Command;
use std::time::Duration;

use crate::common::*;

fn cli(p: &Proxy, args: &[&str]) -> (i32, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_pproxy"))
        .args(args)
        .arg("--addr")
        .arg(&p.addr)
        .arg("--admin")
        .arg(format!("http://127.0.0.1:{}", p.admin_port))
        .output()
        .expect("run cli");
    let code = out.status.code().unwrap_or(-1);
    if code == 3 {
        eprintln!("stderr: {}", String::from_utf8_lossy(&out.stderr));
    }
    (
        code,
        String::from_utf8_lossy(&out.stdout).trim().to_string(),
    )
}

/// Writes `c.yaml` into `dir` and runs `pproxy <args>` there.
fn run_with_yaml(dir: &std::path::Path, yaml: &str, args: &[&str]) -> std::process::Output {
    std::fs::write(dir.join("c.yaml"), yaml).expect("write");
    Command::new(env!("CARGO_BIN_EXE_pproxy"))
        .args(args)
        .current_dir(dir)
        .output()
        .expect("run")
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
    // Poll (bounded) until it has fired: a loaded machine may hand it off a little late.
    let until = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        let (_, status) = cli(&p, &["delay", "status", &id]);
        let v: serde_json::Value = serde_json::from_str(&status).expect("json");
        if v["state"] == "fired" {
            break;
        }
        assert!(std::time::Instant::now() < until, "never fired: {v}");
        std::thread::sleep(Duration::from_millis(200));
    }
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

#[test]
fn batch_bodies_repeat_status_check_config_and_version() {
    let p = Proxy::start("embeddedDelayTopics: [reminders]\n");
    let batch = p.dir.path().join("batch.jsonl");
    std::fs::write(
        &batch,
        "{\"topic\":\"b\",\"key\":\"k1\",\"body\":\"one\",\"partitionId\":0}\n\
         {\"topic\":\"b\",\"bodyHex\":\"00ff\",\"hashId\":-3,\"partitionId\":-1,\"properties\":{\"a\":\"b\"}}\n",
    )
    .expect("write");
    assert_eq!(
        cli(&p, &["send", "--batch", batch.to_str().expect("path")]),
        (0, "0 OK".into())
    );
    assert_eq!(
        cli(&p, &["send", "--topic", "b", "--body-hex", "0001ff"]),
        (0, "0 OK".into())
    );
    assert_eq!(cli(&p, &["send", "--topic", "b", "--body-hex", "0g"]).0, 2);
    let (code, out) = cli(
        &p,
        &[
            "send",
            "--topic",
            "b",
            "--body",
            "x",
            "--count",
            "50",
            "--concurrency",
            "4",
        ],
    );
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("code 0: 50") && out.contains("p99"), "{out}");
    let (code, out) = cli(&p, &["send", "--topic", "b", "--body", "x", "--json"]);
    assert_eq!(code, 0);
    assert!(out.contains("\"code\":0"), "{out}");
    let (code, out) = cli(&p, &["status"]);
    assert_eq!(code, 0);
    assert!(
        out.contains("embedded mode")
            && out.contains("ready: yes")
            && out.contains("delay: 0 pending"),
        "{out}"
    );
    assert_eq!(cli(&p, &["delay", "dead", "list"]), (0, "[]".into()));
    drop(p);

    let dir = tempfile::tempdir().expect("tmp");
    std::fs::write(
        dir.path().join("local.json"),
        local_config("127.0.0.1:9092", &[("orders", "")], ""),
    )
    .expect("write");
    let local_yaml = "host: 127.0.0.1\nlocalConfig: local.json\n";
    let out = run_with_yaml(dir.path(), local_yaml, &["check-config", "-c", "c.yaml"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{text}");
    assert!(
        text.contains("cluster K_test: kafka 127.0.0.1:9092")
            && text.contains("topic orders -> K_test"),
        "{text}"
    );
    std::fs::write(dir.path().join("local.json"), "{}").expect("write");
    let out = run_with_yaml(dir.path(), local_yaml, &["check-config", "-c", "c.yaml"]);
    assert_eq!(out.status.code(), Some(2), "invalid proxy config");
    let out = Command::new(env!("CARGO_BIN_EXE_pproxy"))
        .arg("version")
        .output()
        .expect("run");
    assert!(String::from_utf8_lossy(&out.stdout).starts_with("pproxy 0.1.0 ("));
}

/// A wrong value in carrera.yaml is refused at start with the key's path and the allowed
/// values (exit 2); an unknown key is only a warning naming its path (issue 18).
#[test]
fn wrong_setting_is_refused_at_start_with_its_path() {
    let dir = tempfile::tempdir().expect("tmp");
    let yaml = "scheduler:\n  loopCatchUp: skipp\n";
    let out = run_with_yaml(dir.path(), yaml, &["run", "-c", "c.yaml"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.contains("`scheduler.loopCatchUp`") && err.contains("`skip` or `all`"),
        "{err}"
    );

    let yaml = "host: 127.0.0.1\nserver:\n  bindAdr: 127.0.0.1\n";
    let out = run_with_yaml(dir.path(), yaml, &["check-config", "-c", "c.yaml"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{err}");
    assert!(
        err.contains("warning: unknown key `server.bindAdr` in c.yaml ignored"),
        "{err}"
    );
}
