//! Logging (operations.md §6): `pproxy.log`, `error.log`, `config.log` and `access.log` in the
//! log directory, rotated hourly as `<name>.<YYYYmmddHH>` (UTC), text or JSON lines, a filter
//! that can be changed at run time, and failure lines sampled per result code.

use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};

use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{filter, fmt, reload, EnvFilter, Layer, Registry};

use crate::config::settings::LoggingSettings;

/// Target of access-log events.
pub const ACCESS_TARGET: &str = "access";
/// Target of configuration events (also written to `config.log`).
pub use crate::config::LOG_TARGET as CONFIG_TARGET;

/// An append-only file that rotates when the UTC hour changes or it reaches its size bound.
pub struct RotatingFile {
    dir: PathBuf,
    name: String,
    retain: std::time::Duration,
    max_bytes: u64,
    state: Mutex<(File, String, u64)>,
}

fn hour_stamp() -> String {
    chrono::Utc::now().format("%Y%m%d%H").to_string()
}

impl RotatingFile {
    /// Opens (appending) `dir/name`; it rotates at each UTC hour and at `max_bytes`.
    pub fn open(
        dir: &Path,
        name: &str,
        retain: std::time::Duration,
        max_bytes: u64,
    ) -> std::io::Result<RotatingFile> {
        std::fs::create_dir_all(dir)?;
        let f = OpenOptions::new()
            .create(true)
            .append(true)
            .open(dir.join(name))?;
        let size = f.metadata().map(|m| m.len()).unwrap_or(0);
        Ok(RotatingFile {
            dir: dir.to_path_buf(),
            name: name.into(),
            retain,
            max_bytes: max_bytes.max(1),
            state: Mutex::new((f, hour_stamp(), size)),
        })
    }

    fn rotate(&self, state: &mut (File, String, u64), now: String) -> std::io::Result<()> {
        let _ = state.0.flush();
        let current = self.dir.join(&self.name);
        // `<name>.<hour>`, then `<name>.<hour>.1`, `.2`, ... when size rotates within an hour.
        let mut rotated = self.dir.join(format!("{}.{}", self.name, state.1));
        let mut n = 1;
        while rotated.exists() {
            rotated = self.dir.join(format!("{}.{}.{n}", self.name, state.1));
            n += 1;
        }
        std::fs::rename(&current, rotated)?;
        state.0 = OpenOptions::new().create(true).append(true).open(current)?;
        state.1 = now;
        state.2 = 0;
        self.prune();
        Ok(())
    }

    /// Deletes rotated files older than the retention.
    fn prune(&self) {
        // Whole hours: rotated files are named by the hour. A retention longer than the
        // calendar reaches back keeps everything.
        let hours = i64::try_from(self.retain.as_secs() / 3600).unwrap_or(i64::MAX);
        let Some(cutoff) = chrono::Duration::try_hours(hours)
            .and_then(|d| chrono::Utc::now().checked_sub_signed(d))
        else {
            return;
        };
        let cutoff = cutoff.format("%Y%m%d%H").to_string();
        let prefix = format!("{}.", self.name);
        let Ok(entries) = std::fs::read_dir(&self.dir) else {
            return;
        };
        for e in entries.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            if let Some(rest) = name.strip_prefix(&prefix) {
                // `<stamp>` or `<stamp>.<n>`
                let stamp = rest.split('.').next().unwrap_or("");
                if stamp.len() == 10
                    && stamp.bytes().all(|b| b.is_ascii_digit())
                    && stamp < cutoff.as_str()
                {
                    let _ = std::fs::remove_file(e.path());
                }
            }
        }
    }
}

impl Write for &RotatingFile {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let mut st = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let now = hour_stamp();
        if now != st.1 || st.2 + buf.len() as u64 > self.max_bytes {
            // A failed rotation keeps writing to the current file.
            let _ = self.rotate(&mut st, now);
        }
        let n = st.0.write(buf)?;
        st.2 += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.state
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .0
            .flush()
    }
}

type FilterHandle = reload::Handle<EnvFilter, Registry>;
static FILTER: OnceLock<FilterHandle> = OnceLock::new();

/// Replaces the main log filter (`POST /loglevel`, SIGHUP).
pub fn set_filter(spec: &str) -> Result<(), String> {
    let f = EnvFilter::try_new(spec).map_err(|e| e.to_string())?;
    FILTER
        .get()
        .ok_or_else(|| "logging not initialised".to_string())?
        .reload(f)
        .map_err(|e| e.to_string())
}

fn layer_for<S>(json: bool, writer: Arc<RotatingFile>) -> Box<dyn Layer<S> + Send + Sync>
where
    S: tracing::Subscriber + for<'a> tracing_subscriber::registry::LookupSpan<'a>,
{
    let base = fmt::layer().with_ansi(false).with_writer(writer);
    if json {
        base.json().boxed()
    } else {
        base.boxed()
    }
}

/// Sets up the files in `s.dir` (console output keeps warnings and errors only). `RUST_LOG`
/// overrides `s.level` for the main log.
pub fn init(s: &LoggingSettings) -> std::io::Result<()> {
    let json = s.format == crate::config::settings::LogFormat::Json;
    let max = s.max_file_mb.max(1) << 20;
    let open = |name: &str| RotatingFile::open(&s.dir, name, s.retain_hours, max).map(Arc::new);
    let (main, errors, config, access) = (
        open("pproxy.log")?,
        open("error.log")?,
        open("config.log")?,
        open("access.log")?,
    );
    let spec = std::env::var("RUST_LOG").unwrap_or_else(|_| s.level.to_string());
    let (main_filter, handle) =
        reload::Layer::new(EnvFilter::try_new(&spec).unwrap_or_else(|_| EnvFilter::new("info")));
    let not_access = filter::filter_fn(|m| m.target() != ACCESS_TARGET);
    let only = |t: &'static str| filter::filter_fn(move |m| m.target().starts_with(t));
    let registry = tracing_subscriber::registry()
        .with(main_filter)
        .with(layer_for(json, main).with_filter(not_access.clone()))
        .with(
            layer_for(json, errors)
                .with_filter(filter::LevelFilter::WARN)
                .with_filter(not_access),
        )
        .with(layer_for(json, config).with_filter(only(CONFIG_TARGET)))
        .with(layer_for(json, access).with_filter(only(ACCESS_TARGET)))
        .with(
            fmt::layer()
                .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
                .with_writer(std::io::stderr)
                .with_filter(filter::LevelFilter::WARN),
        );
    let _ = FILTER.set(handle);
    registry.try_init().map_err(std::io::Error::other)
}

/// Per-code sampling of failure lines: at most `per_sec` a second, the rest counted and
/// reported as `suppressed=N` with the next line written.
#[derive(Default)]
pub struct FailureSampler {
    windows: Mutex<HashMap<i32, (i64, u32, u64)>>,
}

impl FailureSampler {
    /// Whether to write a failure line for `code` now; returns the count suppressed since the
    /// last written line.
    pub fn admit(&self, code: i32, per_sec: u32) -> Option<u64> {
        let sec = chrono::Utc::now().timestamp();
        let mut w = self.windows.lock().unwrap_or_else(|e| e.into_inner());
        let e = w.entry(code).or_insert((sec, 0, 0));
        if e.0 != sec {
            e.0 = sec;
            e.1 = 0;
        }
        if e.1 < per_sec {
            e.1 += 1;
            let suppressed = e.2;
            e.2 = 0;
            Some(suppressed)
        } else {
            e.2 += 1;
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HOURS_2: std::time::Duration = std::time::Duration::from_secs(2 * 3600);

    #[test]
    fn sampler_limits_per_code() {
        let s = FailureSampler::default();
        assert_eq!(s.admit(10, 2), Some(0));
        assert_eq!(s.admit(10, 2), Some(0));
        let third = s.admit(10, 2);
        assert_eq!(s.admit(12, 2), Some(0), "codes are independent");
        if third.is_none() {
            // Same second: the next admitted line reports what was suppressed.
            std::thread::sleep(std::time::Duration::from_millis(1100));
            assert_eq!(s.admit(10, 2), Some(1));
        }
    }

    #[test]
    fn rotating_file_appends_and_prunes() {
        let dir = tempfile::tempdir().unwrap();
        let f = RotatingFile::open(dir.path(), "x.log", HOURS_2, 1 << 20).unwrap();
        let prev = (chrono::Utc::now() - chrono::Duration::hours(1))
            .format("%Y%m%d%H")
            .to_string();
        std::fs::write(dir.path().join("x.log.2000010100"), "old").unwrap();
        (&f).write_all(b"line\n").unwrap();
        {
            let mut st = f.state.lock().unwrap();
            st.1 = prev.clone(); // as if the file was opened an hour ago
        }
        (&f).write_all(b"next\n").unwrap();
        let rotated = std::fs::read_to_string(dir.path().join(format!("x.log.{prev}"))).unwrap();
        assert_eq!(
            rotated, "line\n",
            "the previous hour's lines moved to the rotated file"
        );
        assert!(!dir.path().join("x.log.2000010100").exists(), "pruned");
        assert_eq!(
            std::fs::read_to_string(dir.path().join("x.log")).unwrap(),
            "next\n"
        );
    }

    #[test]
    fn rotates_by_size_within_the_hour() {
        let dir = tempfile::tempdir().unwrap();
        let f = RotatingFile::open(dir.path(), "s.log", HOURS_2, 10).unwrap();
        for _ in 0..3 {
            (&f).write_all(b"12345678\n").unwrap();
        }
        let stamp = hour_stamp();
        assert!(dir.path().join(format!("s.log.{stamp}")).exists());
        assert!(dir.path().join(format!("s.log.{stamp}.1")).exists());
        let current = std::fs::read_to_string(dir.path().join("s.log")).unwrap();
        assert_eq!(current, "12345678\n");
    }
}
