//! The journal probe: after a sync whose durability rests on the file system's journal (a file
//! that grew), one metadata change to a small file of our own, so that a sync the file system
//! only pretended to make fails the flush instead of being acknowledged (docs/RELIABILITY.md,
//! "An fsync that answers 0 and loses the write").
//!
//! On ext4 (Linux 6.18 here), `fsync` answered 0 for appended writes that an abort (an I/O
//! error with `errors=remount-ro`, or `mount -o remount,abort`) then lost: the last record in
//! 13-23 % of aborts (`docs/investigations/fsync-abort-race.py`). Such a record's journal
//! commit was cut
//! short by the abort, and its sync returned only after that commit ended, so after the abort
//! began; an aborted journal refuses every new handle, and a size change needs one. So the
//! size change made after the sync fails exactly when the sync may have lied: 0 of 200 aborts
//! lost a record with it. Overwriting blocks written earlier (the redb engine's redo log)
//! commits no metadata and lost nothing in 100 aborts, so that sync needs no probe.

use std::fs::{File, OpenOptions};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};

use crate::error::StoreError;

/// The probe's file in the store's directory.
pub(crate) const PROBE_FILE: &str = "journal.probe";

/// A file whose size is toggled between 1 and 2 bytes; it never holds data.
pub(crate) struct JournalProbe {
    file: File,
    long: AtomicBool,
}

impl JournalProbe {
    /// Opens (or creates) the probe file in `dir`.
    pub(crate) fn open(dir: &Path) -> Result<JournalProbe, StoreError> {
        let file = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(false)
            .open(dir.join(PROBE_FILE))
            .map_err(StoreError::Probe)?;
        Ok(JournalProbe {
            file,
            long: AtomicBool::new(false),
        })
    }

    /// Changes the file's size: an error means the file system no longer commits metadata, so
    /// a sync that answered just before may not have made anything durable.
    pub(crate) fn check(&self) -> Result<(), StoreError> {
        // The size must change every time: an unchanged size needs no journal handle.
        let long = !self.long.fetch_xor(true, Ordering::Relaxed);
        self.file
            .set_len(if long { 2 } else { 1 })
            .map_err(StoreError::Probe)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn check_changes_the_size_every_time() {
        let dir = tempfile::tempdir().unwrap();
        let p = JournalProbe::open(dir.path()).unwrap();
        let len = || {
            std::fs::metadata(dir.path().join(PROBE_FILE))
                .unwrap()
                .len()
        };
        let mut seen = vec![];
        for _ in 0..4 {
            p.check().unwrap();
            seen.push(len());
        }
        assert_eq!(seen, [2, 1, 2, 1]);
    }

    fn sh(cmd: &str, args: &[&str]) {
        let out = std::process::Command::new(cmd).args(args).output().unwrap();
        assert!(out.status.success(), "{cmd} {args:?}: {out:?}");
    }

    /// What the probe is for: on an ext4 whose journal aborted, the size change fails (the
    /// sync before it may have answered 0 without committing). Needs root for the loop mount;
    /// CI runs as root.
    #[test]
    fn check_fails_once_the_journal_aborted() {
        use std::os::unix::fs::MetadataExt;
        if std::fs::metadata("/proc/self").map(|m| m.uid()).ok() != Some(0) {
            println!("SKIPPED: mounting an ext4 image needs root; CI runs as root");
            return;
        }
        let dir = tempfile::tempdir().unwrap();
        let img = dir.path().join("disk.img");
        let mnt = dir.path().join("mnt");
        std::fs::create_dir(&mnt).unwrap();
        std::fs::File::create(&img)
            .unwrap()
            .set_len(16 << 20)
            .unwrap();
        let (img, mnt) = (img.to_str().unwrap(), mnt.to_str().unwrap());
        sh("mkfs.ext4", &["-q", "-F", img]);
        sh("mount", &["-o", "loop,errors=remount-ro", img, mnt]);
        let p = JournalProbe::open(Path::new(mnt)).unwrap();
        let before = (p.check(), p.check());
        sh("mount", &["-o", "remount,abort", mnt]);
        let after = p.check();
        drop(p);
        sh("umount", &[mnt]);
        assert!(before.0.is_ok() && before.1.is_ok(), "{before:?}");
        assert!(after.is_err(), "the probe passed on an aborted journal");
    }
}
