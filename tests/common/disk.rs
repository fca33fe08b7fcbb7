//! Filesystems for a pproxy data directory that the tests can break for real: a small tmpfs to
//! fill, an ext4 image on a loop device to abort (read-only) or freeze. Mounting needs root.

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use super::{create_topic, free_port, local_config, unique_topic, Proxy};

/// Root, or a one-line reason to skip (a failure under `PPROXY_REQUIRE_STACK=1`).
pub fn root_or_skip(test: &str) -> bool {
    let uid = std::fs::metadata("/proc/self").map(|m| m.uid()).ok();
    if uid == Some(0) {
        return true;
    }
    super::skip(&format!(
        "{test}: mounting the data directory needs root (uid {uid:?}); CI runs as root"
    ));
    false
}

pub fn run(cmd: &str, args: &[&str]) -> Result<(), String> {
    let out = Command::new(cmd)
        .args(args)
        .output()
        .map_err(|e| format!("{cmd}: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "{cmd} {args:?}: {}: {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

pub fn must(cmd: &str, args: &[&str]) {
    if let Err(e) = run(cmd, args) {
        panic!("{e}");
    }
}

/// Unmounts, retrying while the mount is busy; lazily as a last resort so that nothing stays
/// mounted after the test.
pub fn unmount(path: &Path) {
    let p = path.to_str().unwrap_or_default();
    for _ in 0..50 {
        if run("umount", &[p]).is_ok() || !is_mounted(path) {
            return;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let _ = run("umount", &["-l", p]);
}

pub fn is_mounted(path: &Path) -> bool {
    let target = path.to_string_lossy();
    std::fs::read_to_string("/proc/self/mounts")
        .unwrap_or_default()
        .lines()
        .any(|l| l.split_whitespace().nth(1) == Some(&*target))
}

/// A small filesystem for the data directory, unmounted on drop: a tmpfs, or an ext4 image
/// (held in a tmpfs, so nothing touches the real disk) mounted through a loop device.
pub struct Disk {
    /// Holds the mount points; removed after the unmounts (fields drop after `drop`).
    _base: tempfile::TempDir,
    /// Where pproxy's `dataDir` points.
    pub mnt: PathBuf,
    /// The tmpfs holding the ext4 image, for the ext4 variant.
    image_fs: Option<PathBuf>,
}

impl Disk {
    pub fn tmpfs(size: &str) -> Disk {
        let base = tempfile::tempdir().expect("tempdir");
        let mnt = base.path().join("mnt");
        std::fs::create_dir(&mnt).expect("mkdir");
        must(
            "mount",
            &[
                "-t",
                "tmpfs",
                "-o",
                &format!("size={size}"),
                "tmpfs",
                mnt.to_str().unwrap_or_default(),
            ],
        );
        Disk {
            _base: base,
            mnt,
            image_fs: None,
        }
    }

    pub fn ext4(size_mb: u64) -> Disk {
        let base = tempfile::tempdir().expect("tempdir");
        let img_dir = base.path().join("img");
        let mnt = base.path().join("mnt");
        std::fs::create_dir(&img_dir).expect("mkdir");
        std::fs::create_dir(&mnt).expect("mkdir");
        let d = Disk {
            _base: base,
            mnt,
            image_fs: Some(img_dir.clone()),
        };
        must(
            "mount",
            &[
                "-t",
                "tmpfs",
                "-o",
                &format!("size={}m", size_mb + 8),
                "tmpfs",
                img_dir.to_str().unwrap_or_default(),
            ],
        );
        let img = d.image();
        must(
            "truncate",
            &[
                "-s",
                &format!("{size_mb}M"),
                img.to_str().unwrap_or_default(),
            ],
        );
        must("mkfs.ext4", &["-q", img.to_str().unwrap_or_default()]);
        d.mount_ext4();
        d
    }

    pub fn image(&self) -> PathBuf {
        self.image_fs
            .as_ref()
            .map(|d| d.join("disk.img"))
            .unwrap_or_default()
    }

    /// `errors=remount-ro`: an ext4 error (here a forced abort) makes the filesystem read-only,
    /// as a failing disk does.
    pub fn mount_ext4(&self) {
        must(
            "mount",
            &[
                "-o",
                "loop,errors=remount-ro",
                self.image().to_str().unwrap_or_default(),
                self.mnt.to_str().unwrap_or_default(),
            ],
        );
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.mnt.join(name)
    }
}

impl Drop for Disk {
    fn drop(&mut self) {
        unmount(&self.mnt);
        if let Some(d) = &self.image_fs {
            unmount(d);
        }
    }
}

/// Writes a file until the filesystem is full; returns the bytes written.
pub fn fill(path: &Path) -> u64 {
    use std::io::Write;
    let mut f = std::fs::File::create(path).expect("create filler");
    let chunk = vec![0u8; 64 << 10];
    while f.write_all(&chunk).is_ok() {}
    f.metadata().map(|m| m.len()).unwrap_or(0)
}

/// Thaws the frozen filesystem when dropped, so a failing test never leaves it frozen (a frozen
/// filesystem would also keep the killed pproxy in uninterruptible sleep).
pub struct Frozen(String);

impl Frozen {
    pub fn freeze(mnt: &str) -> Frozen {
        must("fsfreeze", &["-f", mnt]);
        Frozen(mnt.to_string())
    }
}

impl Drop for Frozen {
    fn drop(&mut self) {
        let _ = run("fsfreeze", &["-u", &self.0]);
    }
}

/// Starts pproxy (local mode, the stack's Kafka at `kafka`) with its data directory on `disk`
/// and a fresh delay topic named after `prefix`; `yaml` is added to carrera.yaml.
pub async fn start_on_disk(kafka: &str, disk: &Disk, prefix: &str, yaml: &str) -> (Proxy, String) {
    let topic = unique_topic(prefix);
    create_topic(kafka, &topic, 3).await;
    let doc = local_config(kafka, &[(&topic, r#","delayTopic":true"#)], "");
    let dir = tempfile::tempdir().expect("tempdir");
    // `dataDir: data` (set by the helper) leads to the test's mount.
    std::os::unix::fs::symlink(&disk.mnt, dir.path().join("data")).expect("symlink");
    let proxy = Proxy::start_on(
        free_port(),
        free_port(),
        &format!("localConfig: local.json\n{yaml}"),
        &[("local.json", doc)],
        dir,
    );
    (proxy, topic)
}
