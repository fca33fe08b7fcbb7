//! Log files of a running pproxy (operations.md §6): pproxy.log, error.log, access.log, no
//! per-request INFO line, sampled failure lines, and a filter changed at run time.

use crate::common::*;
use pproxy::proto::Call;

fn read(p: &Proxy, name: &str) -> String {
    std::fs::read_to_string(p.dir.path().join("logs").join(name)).unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn files_access_log_sampling_and_filter_reload() {
    let p = Proxy::start("logging:\n  accessLog: true\n  failureLogsPerSec: 3\n  format: text\n");
    let mut c = p.client().await;
    for _ in 0..20 {
        assert_eq!(
            call(&mut c, &Call::SendSync(Some(msg("log_ok", b"x")), 3000))
                .await
                .0,
            0
        );
    }
    for _ in 0..20 {
        assert_eq!(
            call(&mut c, &Call::SendSync(Some(msg("bad name", b"x")), 3000))
                .await
                .0,
            13
        );
    }
    std::thread::sleep(std::time::Duration::from_millis(200));
    let main = read(&p, "pproxy.log");
    assert!(
        main.contains("serving"),
        "start-up lines in pproxy.log:\n{main}"
    );
    assert!(
        !main.contains("log_ok"),
        "no line per successful request in pproxy.log"
    );
    let failures = main.matches("request failed").count();
    assert!(
        (1..=6).contains(&failures),
        "failure lines sampled at 3/s per code, got {failures}"
    );
    let access = read(&p, "access.log");
    assert_eq!(
        access.lines().count(),
        40,
        "one access line per request:\n{access}"
    );
    assert!(access.contains("topic=log_ok") && access.contains("code=13"));
    assert!(read(&p, "error.log")
        .lines()
        .all(|l| l.contains("WARN") || l.contains("ERROR")));

    // Turn debug on for one module at run time.
    let (status, _) = pproxy_cli::admin::admin_request(
        &format!("http://127.0.0.1:{}", p.admin_port),
        "POST",
        "/loglevel?filter=info,pproxy::forward=debug",
    )
    .expect("post");
    assert_eq!(status, 200);
    assert_eq!(
        call(&mut c, &Call::SendSync(Some(msg("log_ok", b"")), 3000))
            .await
            .0,
        11
    );
    std::thread::sleep(std::time::Duration::from_millis(200));
    assert!(
        read(&p, "pproxy.log").contains("message rejected"),
        "debug line after the filter change"
    );
}
