//! Hot reload of a running pproxy: the local config on SIGHUP and on file change, and reloadable
//! carrera.yaml keys on SIGHUP. (embeddedKafka redirects the local config's clusters to the
//! in-process cluster, so no external broker is involved.)

use std::time::Duration;

use crate::common::*;
use pproxy::proto::Call;

fn doc(topics: &[&str]) -> String {
    let t: Vec<(&str, &str)> = topics.iter().map(|t| (*t, "")).collect();
    local_config("127.0.0.1:1", &t, "")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_and_file_change_apply_new_configuration() {
    let p = Proxy::start_with_files(
        "embeddedKafka: true\nlocalConfig: local.json\nlogging:\n  level: info\n",
        &[("local.json", doc(&["t_a"]))],
    );
    assert_eq!(send_code(&p, "t_a").await, 0);
    assert_eq!(send_code(&p, "t_b").await, 13);

    // A changed file is picked up on its own (mtime checked every 2 s).
    std::fs::write(p.dir.path().join("local.json"), doc(&["t_a", "t_b"])).expect("write");
    assert!(
        eventually_code(&p, "t_b", 0, Duration::from_secs(8)).await,
        "t_b admitted after the file changed"
    );

    // SIGHUP applies carrera.yaml's reloadable keys: turn on debug logging.
    let conf = p.dir.path().join("carrera.yaml");
    let yaml = std::fs::read_to_string(&conf)
        .expect("read")
        .replace("level: info", "level: debug");
    std::fs::write(&conf, yaml).expect("write");
    std::fs::write(p.dir.path().join("local.json"), doc(&["t_a"])).expect("write");
    p.hup();
    assert!(
        eventually_code(&p, "t_b", 13, Duration::from_secs(5)).await,
        "t_b removed after SIGHUP"
    );
    assert_eq!(send_code(&p, "t_a").await, 0, "t_a still served");
    let mut c = p.client().await;
    assert_eq!(
        call(&mut c, &Call::SendSync(Some(msg("t_a", b"")), 3000))
            .await
            .0,
        11
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    let main = std::fs::read_to_string(p.dir.path().join("logs/pproxy.log")).unwrap_or_default();
    assert!(
        main.contains("message rejected"),
        "debug lines after logging.level changed"
    );
    let config_log =
        std::fs::read_to_string(p.dir.path().join("logs/config.log")).unwrap_or_default();
    assert!(
        config_log.matches("configuration applied").count() >= 2,
        "{config_log}"
    );

    // A broken file is rejected: the running configuration stays.
    std::fs::write(p.dir.path().join("local.json"), "{ not json").expect("write");
    p.hup();
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(send_code(&p, "t_a").await, 0, "previous configuration kept");
    let (_, metrics) = p.http_get("/metrics").expect("metrics");
    assert!(
        metrics.contains(r#"pproxy_config_reloads_total{source="sighup",result="rejected"} 1"#),
        "{metrics}"
    );
    let (_, status) = p.http_get("/status").expect("status");
    let v: serde_json::Value = serde_json::from_str(&status).expect("json");
    assert!(v["configGeneration"].as_u64().unwrap_or(0) >= 3, "{v}");
}

/// A wrong value in carrera.yaml on SIGHUP is refused with the key's path and the allowed
/// values; the running settings stay (issue 18).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_setting_on_reload_is_refused_with_its_path() {
    let p = Proxy::start("embeddedKafka: true\nscheduler:\n  loopCatchUp: skip\n");
    assert_eq!(send_code(&p, "t_a").await, 0);
    let conf = p.dir.path().join("carrera.yaml");
    let yaml = std::fs::read_to_string(&conf)
        .expect("read")
        .replace("loopCatchUp: skip", "loopCatchUp: skipp");
    std::fs::write(&conf, yaml).expect("write");
    p.hup();
    let mut rejected = String::new();
    for _ in 0..50 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        let log = std::fs::read_to_string(p.dir.path().join("logs/config.log")).unwrap_or_default();
        if let Some(line) = log.lines().find(|l| l.contains("configuration rejected")) {
            rejected = line.to_string();
            break;
        }
    }
    assert!(
        rejected.contains("scheduler.loopCatchUp") && rejected.contains("`skip` or `all`"),
        "{rejected:?}"
    );
    assert_eq!(send_code(&p, "t_a").await, 0, "previous configuration kept");
    let (_, metrics) = p.http_get("/metrics").expect("metrics");
    assert!(
        metrics.contains(r#"pproxy_config_reloads_total{source="sighup",result="rejected"} 1"#),
        "{metrics}"
    );
}
