#!/usr/bin/env python3
"""Can fsync answer 0 for a write that an ext4 abort then loses? (docs/RELIABILITY.md)

Usage (root: it mounts a loop device): docs/investigations/fsync-abort-race.py MODE RUNS [--no-flusher]

Each run makes a small ext4 image in a tmpfs, mounts it with errors=remount-ro and starts a
writer that writes 4 KiB records (the sequence number repeated) and counts a record as
acknowledged once its sync answered 0. A second thread fsyncs the same file in a loop, as sled's
background flusher does (--no-flusher leaves it out). After 0.3-0.7 s the file system is
aborted (mount -o remount,abort: what ext4 does on an I/O error), then unmounted, checked with
e2fsck -fy and mounted again; every acknowledged record must be there.

MODE:
  append     write at the end, fsync
  sfr        write at the end, sync_file_range, up to 1 ms later fsync (what sled + pproxy do)
  overwrite  the file is zero-filled and synced first; records overwrite it, fdatasync (the
             redb engine's redo log)
  probe, sfrprobe
             append / sfr, then change the size of a second file (scheduler/src/probe.rs):
             a record is acknowledged only if that succeeds too
"""
import ctypes
import os
import random
import subprocess
import sys
import tempfile
import threading
import time

REC = 4096
PREALLOC = 64 << 20
SYNC_FILE_RANGE_ALL = 7  # WAIT_BEFORE | WRITE | WAIT_AFTER
libc = ctypes.CDLL("libc.so.6", use_errno=True)


def sh(*a, check=True):
    return subprocess.run(a, check=check, capture_output=True, text=True)


def one(mode, base, flusher_on):
    img = os.path.join(base, "disk.img")
    mnt = os.path.join(base, "mnt")
    os.makedirs(mnt, exist_ok=True)
    with open(img, "wb") as f:
        f.truncate(96 << 20)
    sh("mkfs.ext4", "-q", "-F", img)
    sh("mount", "-o", "loop,errors=remount-ro", img, mnt)
    path = os.path.join(mnt, "log")
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    limit = None
    if mode == "overwrite":
        zeros = b"\0" * (1 << 20)
        for i in range(PREALLOC // len(zeros)):
            os.pwrite(fd, zeros, i * len(zeros))
        os.fsync(fd)
        limit = PREALLOC // REC
    marker = os.open(os.path.join(mnt, "probe"), os.O_RDWR | os.O_CREAT, 0o644)
    os.fsync(marker)
    acked = []
    stop = threading.Event()

    def writer():
        seq = 0
        size = 1
        while not stop.is_set() and (limit is None or seq < limit):
            rec = seq.to_bytes(8, "little") * (REC // 8)
            try:
                os.pwrite(fd, rec, seq * REC)
                if mode in ("sfr", "sfrprobe"):
                    if libc.sync_file_range(fd, ctypes.c_int64(seq * REC), ctypes.c_int64(REC),
                                            SYNC_FILE_RANGE_ALL) != 0:
                        return
                    time.sleep(random.random() * 0.001)
                if mode == "overwrite":
                    os.fdatasync(fd)
                else:
                    os.fsync(fd)
                if mode in ("probe", "sfrprobe"):
                    size = 3 - size
                    os.ftruncate(marker, size)
            except OSError:
                return
            acked.append(seq)
            seq += 1

    def flusher():
        while not stop.is_set():
            try:
                os.fsync(fd)
            except OSError:
                return
            time.sleep(random.random() * 0.002)

    ts = [threading.Thread(target=writer)]
    if flusher_on:
        ts.append(threading.Thread(target=flusher))
    for t in ts:
        t.start()
    time.sleep(0.3 + random.random() * 0.4)
    sh("mount", "-o", "remount,abort", mnt)
    time.sleep(0.2)
    stop.set()
    for t in ts:
        t.join()
    os.close(fd)
    os.close(marker)
    for _ in range(100):
        if sh("umount", mnt, check=False).returncode == 0:
            break
        time.sleep(0.1)
    fsck = sh("e2fsck", "-fy", img, check=False)
    sh("mount", "-o", "loop", img, mnt)
    with open(path, "rb") as f:
        data = f.read()
    sh("umount", mnt)
    os.remove(img)
    lost = [s for s in acked
            if data[s * REC:(s + 1) * REC] != s.to_bytes(8, "little") * (REC // 8)]
    return len(acked), lost, fsck.returncode


def main():
    if len(sys.argv) < 3 or sys.argv[1] not in ("append", "sfr", "overwrite", "probe", "sfrprobe"):
        sys.exit(__doc__)
    mode, n = sys.argv[1], int(sys.argv[2])
    flusher_on = "--no-flusher" not in sys.argv
    base = tempfile.mkdtemp()
    sh("mount", "-t", "tmpfs", "-o", "size=160m", "tmpfs", base)
    runs_lost = 0
    try:
        for i in range(n):
            k, lost, rc = one(mode, base, flusher_on)
            runs_lost += bool(lost)
            print(f"{mode} run {i}: {k} acknowledged, {len(lost)} lost {lost[:5]} "
                  f"(e2fsck exit {rc})", flush=True)
    finally:
        sh("umount", base, check=False)
        os.rmdir(base)
    flusher = "with" if flusher_on else "without"
    print(f"{mode} ({flusher} a second fsync thread): {runs_lost} of {n} aborts lost "
          f"acknowledged records")


main()
