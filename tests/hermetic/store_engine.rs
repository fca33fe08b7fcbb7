//! The delay store's engine at start: fjall was removed (issue 17), so a data directory it
//! wrote is refused with a message that names it, and nothing is created beside it.

use std::process::Command;
use std::time::{Duration, Instant};

#[test]
fn a_delay_store_written_by_fjall_is_refused_at_start() {
    let dir = tempfile::tempdir().expect("tempdir");
    // What fjall 3 leaves in its directory.
    std::fs::create_dir_all(dir.path().join("data/delay/keyspaces")).expect("fjall dir");
    let conf = dir.path().join("carrera.yaml");
    let free_port = || {
        std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("free port")
            .port()
    };
    std::fs::write(
        &conf,
        format!(
            "host: 127.0.0.1\nport: {}\nadminPort: {}\nserver:\n  bindAddr: 127.0.0.1\n  \
             adminBindAddr: 127.0.0.1\ndataDir: data\n",
            free_port(),
            free_port()
        ),
    )
    .expect("write carrera.yaml");
    let mut child = Command::new(env!("CARGO_BIN_EXE_pproxy"))
        .arg("run")
        .arg("-c")
        .arg(&conf)
        .current_dir(dir.path())
        .env_remove("RUST_LOG")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("spawn pproxy");
    let until = Instant::now() + Duration::from_secs(30);
    let status = loop {
        if let Some(s) = child.try_wait().expect("wait") {
            break s;
        }
        if Instant::now() > until {
            let _ = child.kill();
            panic!("pproxy kept running on a fjall data directory");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let out = child.wait_with_output().expect("output");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!status.success(), "{status:?}: {stderr}");
    assert!(stderr.contains("written by fjall"), "{stderr}");
    assert!(
        !dir.path().join("data/delay/store.redb").exists(),
        "a redb store was created beside it"
    );
}
