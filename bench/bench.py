#!/usr/bin/env python3
"""Side-by-side benchmarks of undelete against cp -a and restic.

Run through bench/run.sh, which builds the release binary first. Every tree is
generated from fixed seeds, so two runs measure the same bytes. Each row gives
wall time and peak resident memory; where an alternative exists, the ratio
undelete / alternative. Times are taken with cold caches where it says so
(`echo 3 > /proc/sys/vm/drop_caches`, root only).

Sections (all by default, or pick with --only):
  protect   start-up capture of a mixed tree (photos + documents) vs cp -a, restic backup
  restore   rm -rf of that tree, then restore it vs cp -a back, restic restore
  xfs       capture and restore on a loop-mounted XFS, where the vault and restores clone
  btrfs     the same on a loop-mounted btrfs
  catchup   rm -rf of many small files: from the end of rm until `undelete sync` returns
  window    the loss window: files deleted N ms after they are written
  bigwindow the loss window of one 1 GB file, on ext4 and on a loop-mounted XFS
  big       daemon memory and idle CPU with a million files indexed, and index queries
  mount     listing a point in time of a 10,000-file folder through `undelete mount`
            (what Samba's Previous Versions asks for), vs listing the live folder
  sources   the two event sources side by side (--events inotify, --events fanotify):
            start-up protection of a big tree, catch-up after rm -rf, the loss window,
            idle CPU, the daemon's memory and the kernel's memory for its watches
"""

import argparse
import json
import os
import random
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time

SECTIONS = [
    "protect", "restore", "xfs", "btrfs", "catchup", "window", "bigwindow", "big", "mount", "sources",
]


def log(msg):
    print(f"[bench] {msg}", file=sys.stderr, flush=True)


# --- deterministic trees ------------------------------------------------------


def make_mixed_tree(root, total_mb, seed=42):
    """Large 'photos' (2-8 MB) and many small 'documents' (1-16 KiB), ~total_mb MB.

    A fifth of the bytes are documents, which at 400 MB is about 10,000 files;
    the rest are photos. Content is random, so nothing deduplicates or compresses.
    """
    rng = random.Random(seed)
    budget = total_mb * 1_000_000
    written = 0

    def fill(until, folder, per_folder, name, sizes):
        """Writes files of random sizes in `sizes` until `until` bytes are written in all."""
        nonlocal written
        n = 0
        while written < until:
            d = os.path.join(root, folder.format(n // per_folder))
            os.makedirs(d, exist_ok=True)
            size = rng.randint(*sizes)
            with open(os.path.join(d, name.format(n)), "wb") as f:
                f.write(rng.randbytes(size))
            written += size
            n += 1
        return n

    files = fill(budget // 5, "documents/project{:03d}", 200, "doc{:05d}.odt", (1024, 16384))
    files += fill(budget, "photos/shoot{:02d}", 20, "IMG_{:04d}.CR2", (2_000_000, 8_000_000))
    return files, written


def make_small_tree(root, count, per_dir=1000, seed=7):
    """`count` distinct files of 100-1000 bytes in folders of `per_dir`."""
    rng = random.Random(seed)
    for i in range(count):
        d = os.path.join(root, f"dir{i // per_dir:04d}")
        if i % per_dir == 0:
            os.makedirs(d, exist_ok=True)
        with open(os.path.join(d, f"f{i:06d}.txt"), "wb") as f:
            f.write(rng.randbytes(rng.randint(100, 1000)))


def make_empty_tree(root, count, dirs):
    """`count` empty files spread over `dirs` folders (two levels, 100 per level)."""
    per_dir = max(1, count // dirs)
    for d in range(dirs):
        path = os.path.join(root, f"a{d // 100:04d}", f"b{d % 100:02d}")
        os.makedirs(path, exist_ok=True)
        for f in range(per_dir):
            os.close(os.open(os.path.join(path, f"e{f:03d}"), os.O_CREAT | os.O_WRONLY, 0o644))


# --- measuring ----------------------------------------------------------------


def settle():
    """Waits out ext4's memory of the inodes just freed (a minute once written; see
    docs/benchmarks.md), so the next section's measurements do not pay for them."""
    subprocess.run(["sync"], check=True)
    log("waiting a minute for the inodes just freed to settle")
    time.sleep(61)


def drop_caches():
    subprocess.run(["sync"], check=True)
    try:
        with open("/proc/sys/vm/drop_caches", "w") as f:
            f.write("3\n")
    except OSError:
        pass


def timed(cmd, cold=False, env=None, check=True, stdout=subprocess.DEVNULL):
    """Runs `cmd`; returns (seconds, peak RSS in KiB) as measured by GNU time."""
    if cold:
        drop_caches()
    with tempfile.NamedTemporaryFile("r") as out:
        full = ["/usr/bin/time", "-f", "%e %M", "-o", out.name] + cmd
        t0 = time.monotonic()
        r = subprocess.run(full, env=env, stdout=stdout, stderr=subprocess.PIPE)
        wall = time.monotonic() - t0
        if check and r.returncode != 0:
            raise RuntimeError(f"{cmd} failed: {r.stderr.decode(errors='replace')[-2000:]}")
        fields = out.read().split()
        rss = int(fields[-1]) if fields else 0
    return wall, rss


def proc_status(pid, key):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1])
    return 0


def cpu_ticks(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])  # utime + stime (fields 14 and 15)


class Daemon:
    def __init__(self, bin_path, vault, protect, log_path, extra=()):
        self.bin, self.vault = bin_path, vault
        self.log = open(log_path, "wb")
        self.started = time.monotonic()
        self.proc = subprocess.Popen(
            [bin_path, "--vault", vault, "daemon", "--protect", protect, *extra],
            stdout=subprocess.DEVNULL,
            stderr=self.log,
        )
        sock = os.path.join(vault, "daemon.sock")
        while not os.path.exists(sock):
            if self.proc.poll() is not None:
                raise RuntimeError(f"the daemon exited; see {log_path}")
            time.sleep(0.005)

    def sync(self):
        self.cli("sync", "--timeout", "7200")

    def cli(self, *args, capture=False):
        r = subprocess.run(
            [self.bin, "--vault", self.vault, *args],
            check=True,
            stdout=subprocess.PIPE if capture else subprocess.DEVNULL,
        )
        return r.stdout

    def peak_kib(self):
        return proc_status(self.proc.pid, "VmHWM")

    def rss_kib(self):
        return proc_status(self.proc.pid, "VmRSS")

    def stop(self):
        self.proc.send_signal(signal.SIGTERM)
        self.proc.wait(timeout=600)
        self.log.close()


# --- the table ----------------------------------------------------------------


class Table:
    def __init__(self):
        self.rows = []

    def add(self, task, ours, cp=None, restic=None, note=""):
        self.rows.append((task, ours, cp, restic, note))

    @staticmethod
    def cell(m):
        if m is None:
            return "—"
        if isinstance(m, str):
            return m
        secs, kib = m
        return f"{secs:.2f} s, {mib(kib)}"

    @staticmethod
    def ratio(a, b):
        if not isinstance(a, tuple) or not isinstance(b, tuple) or b[0] <= 0:
            return "—"
        return f"{a[0] / b[0]:.2f}×"

    def markdown(self):
        lines = [
            "| task | undelete | cp -a | ratio | restic | ratio |",
            "|---|---|---|---|---|---|",
        ]
        for task, ours, cp, restic, note in self.rows:
            ours_cell = self.cell(ours) + (f" ({note})" if note else "")
            lines.append(
                f"| {task} | {ours_cell} | {self.cell(cp)} | {self.ratio(ours, cp)} "
                f"| {self.cell(restic)} | {self.ratio(ours, restic)} |"
            )
        return "\n".join(lines)


def mib(kib):
    return f"{kib / 1024:.0f} MiB"


def kib_text(kib):
    return f"{kib / 1024:.1f} MiB" if abs(kib) >= 1024 else f"{kib:.0f} KiB"


def ratio(a, b):
    """fanotify / inotify, or a dash where the second is nothing."""
    return f"{a / b:.2f}×" if b > 0 else "—"


# The slab cache that holds the kernel's notification marks. The kernel merges
# caches of one size, so `inotify_inode_mark` and `fanotify_mark` share one with
# others (`sigqueue`); its object count still moves by the marks a daemon adds.
MARKS_CACHE = "/sys/kernel/slab/inotify_inode_mark"


def kernel_slabs():
    """The marks cache's objects (and their size) and the whole machine's Slab, in KiB."""
    with open("/proc/meminfo") as f:
        slab = next(int(line.split()[1]) for line in f if line.startswith("Slab:"))
    try:
        with open(os.path.join(MARKS_CACHE, "objects")) as f:
            marks = int(f.read().split()[0])
        with open(os.path.join(MARKS_CACHE, "object_size")) as f:
            size = int(f.read())
    except OSError:
        marks, size = 0, 0
    return {"Slab": slab, "marks": marks, "mark_size": size}


def inotify_watches(pid):
    """The inotify watches each descriptor of `pid` holds (its fdinfo's `inotify wd:` lines)."""
    counts = []
    for fd in os.listdir(f"/proc/{pid}/fdinfo"):
        try:
            with open(f"/proc/{pid}/fdinfo/{fd}") as f:
                counts.append(sum(1 for line in f if line.startswith("inotify wd:")))
        except OSError:
            pass
    return counts


class Pairs:
    """Rows of the two event sources side by side, with fanotify / inotify."""

    def __init__(self):
        self.rows = []

    def add(self, task, inotify, fanotify, ratio_text):
        self.rows.append((task, inotify, fanotify, ratio_text))

    def markdown(self):
        lines = [
            "| task | --events inotify | --events fanotify | fanotify / inotify |",
            "|---|---|---|---|",
        ]
        lines += [f"| {t} | {i} | {f} | {r} |" for t, i, f, r in self.rows]
        return "\n".join(lines)


# --- sections -----------------------------------------------------------------


class Bench:
    def __init__(self, args):
        self.args = args
        self.bin = os.path.abspath(args.bin)
        self.work = tempfile.mkdtemp(prefix="undelete-bench.", dir=args.work)
        self.table = Table()
        self.pairs = Pairs()
        self.restic = shutil.which("restic")
        self.notes = []
        self.mixed = None  # (tree, files, bytes, daemon) shared by protect and restore

    def restic_env(self, repo):
        return dict(os.environ, RESTIC_PASSWORD="bench", RESTIC_REPOSITORY=repo)

    def path(self, *parts):
        return os.path.join(self.work, *parts)

    def protect(self):
        share = self.path("share")
        tree = os.path.join(share, "tree")
        files, size = make_mixed_tree(tree, self.args.mb)
        log(f"mixed tree: {files} files, {size / 1e6:.0f} MB")
        label = f"protect {files:,} files, {size / 1e6:.0f} MB (cold cache)"
        cp = timed(["cp", "-a", tree, self.path("cp-copy")], cold=True)
        cp_sync = timed(["sh", "-c", f"cp -a '{tree}' '{self.path('cp-copy2')}' && sync"], cold=True)
        restic = "not installed"
        if self.restic:
            env = self.restic_env(self.path("restic"))
            subprocess.run(["restic", "init", "--quiet"], env=env, check=True)
            restic = timed(["restic", "backup", "--quiet", tree], cold=True, env=env)
        drop_caches()
        daemon = Daemon(self.bin, self.path("vault"), share, self.path("daemon.log"))
        daemon.sync()
        ours = (time.monotonic() - daemon.started, daemon.peak_kib())
        self.table.add(label, ours, cp, restic)
        self.table.add("…against cp -a then sync (durable, as the vault is)", ours, cp_sync)
        self.mixed = (tree, files, size, daemon)

    def restore(self):
        if self.mixed is None:
            self.protect()
        tree, files, size, daemon = self.mixed
        subprocess.run(["rm", "-rf", tree], check=True)
        daemon.sync()
        label = f"restore {files:,} files, {size / 1e6:.0f} MB (cold cache)"
        cp = timed(["cp", "-a", self.path("cp-copy"), self.path("cp-back")], cold=True)
        cp_sync = timed(
            ["sh", "-c", f"cp -a '{self.path('cp-copy')}' '{self.path('cp-back2')}' && sync"],
            cold=True,
        )
        restic = "not installed"
        if self.restic:
            env = self.restic_env(self.path("restic"))
            restic = timed(
                ["restic", "restore", "latest", "--target", self.path("restic-back")],
                cold=True,
                env=env,
            )
        ours = timed(
            [self.bin, "--vault", self.path("vault"), "restore", "--under", tree],
            cold=True,
        )
        # How long after the restore the daemon (at nice 10) had recorded all of it.
        t0 = time.monotonic()
        daemon.sync()
        behind = time.monotonic() - t0
        restored = sum(len(f) for _, _, f in os.walk(tree))
        note = "" if restored == files else f"only {restored} of {files} back!"
        with open(self.path("daemon.log"), errors="replace") as f:
            trusted = sum(
                int(m.group(1))
                for m in re.finditer(r"recorded (\d+) restored files as their restore announced", f.read())
            )
        note = ", ".join(
            n
            for n in [
                note,
                f"the daemon took {trusted:,} as announced, without reading them, "
                f"and had recorded them all {behind:.2f} s after the restore",
            ]
            if n
        )
        self.table.add(label, ours, cp, restic, note)
        self.table.add("…against cp -a then sync (durable, as a restore is)", ours, cp_sync)
        daemon.stop()
        self.mixed = None
        # The durable copies too only now: on ext4 without a journal, new files skip
        # over inodes freed in the last minute, and a deletion just before a measured
        # step would slow whatever that step creates.
        for p in ["cp-copy", "cp-copy2", "cp-back", "cp-back2", "restic-back", "restic",
                  "share", "vault"]:
            shutil.rmtree(self.path(p), ignore_errors=True)
        settle()

    def loop_mount(self, name, mkfs, size_mb):
        """Mounts a fresh sparse image made by `mkfs` at a folder of the work dir;
        returns (mount point, image), or None where this machine cannot."""
        mnt = self.path(name)
        img = self.path(f"{name}.img")
        os.makedirs(mnt)
        with open(img, "wb") as f:
            f.truncate(size_mb * 1_000_000)
        ok = subprocess.run([*mkfs, img], capture_output=True)
        mounted = ok.returncode == 0 and (
            subprocess.run(["mount", "-o", "loop", img, mnt], capture_output=True).returncode == 0
        )
        if not mounted:
            os.remove(img)
            return None
        return mnt, img

    def clones(self, name, label, mkfs):
        """Capture and restore of the mixed tree on a filesystem that shares blocks,
        against cp -a (which clones there too) and a durable real copy."""
        mounted = self.loop_mount(name, mkfs, self.args.mb * 4 + 600)
        if mounted is None:
            self.table.add(f"protect on {label} (reflinks)", f"not run: cannot mount a loop {label} here")
            return
        mnt, img = mounted
        try:
            share = os.path.join(mnt, "share")
            tree = os.path.join(share, "tree")
            files, size = make_mixed_tree(tree, self.args.mb)
            at = lambda p: os.path.join(mnt, p)
            cp = timed(["cp", "-a", tree, at("cp-copy")], cold=True)
            cp_sync = timed(["sh", "-c", f"cp -a '{tree}' '{at('cp-copy2')}' && sync"], cold=True)
            full = timed(
                ["sh", "-c", f"cp -a --reflink=never '{tree}' '{at('cp-full')}' && sync"], cold=True
            )
            drop_caches()
            daemon = Daemon(self.bin, at("vault"), share, self.path(f"{name}-daemon.log"))
            daemon.sync()
            ours = (time.monotonic() - daemon.started, daemon.peak_kib())
            # Files over 1 MiB are recorded as clones at once and hashed in the
            # background (nice 19, idle I/O): how long until every one has its hash.
            daemon.cli("sync", "--hashed", "--timeout", "7200")
            hashed = (time.monotonic() - daemon.started, daemon.peak_kib())
            self.table.add(f"protect {files:,} files, {size / 1e6:.0f} MB on {label} (cold)", ours, cp,
                           note="reflinked, hashed later")
            self.table.add(f"…against cp -a then sync on {label}", ours, cp_sync)
            self.table.add(f"…against a real copy (cp -a --reflink=never, then sync) on {label}", ours, full)
            self.table.add(f"…until every clone is hashed, in the background, on {label}", hashed, cp_sync)
            subprocess.run(["rm", "-rf", tree], check=True)
            daemon.sync()
            daemon.stop()
            cp = timed(["cp", "-a", at("cp-copy"), at("cp-back")], cold=True)
            cp_sync = timed(["sh", "-c", f"cp -a '{at('cp-copy')}' '{at('cp-back2')}' && sync"], cold=True)
            full = timed(
                ["sh", "-c", f"cp -a --reflink=never '{at('cp-copy')}' '{at('cp-full-back')}' && sync"],
                cold=True,
            )
            ours = timed([self.bin, "--vault", at("vault"), "restore", "--under", tree], cold=True)
            restored = sum(len(f) for _, _, f in os.walk(tree))
            note = "cloned, every file hash-checked" + ("" if restored == files else f"; only {restored} of {files} back!")
            self.table.add(f"restore {files:,} files, {size / 1e6:.0f} MB on {label} (cold)", ours, cp, note=note)
            self.table.add(f"…against cp -a then sync on {label}", ours, cp_sync)
            self.table.add(f"…against a real copy (cp -a --reflink=never, then sync) on {label}", ours, full)
        finally:
            subprocess.run(["umount", mnt], check=False)
            os.remove(img)

    def xfs(self):
        self.clones("xfs", "XFS", ["mkfs.xfs", "-q", "-m", "reflink=1"])

    def btrfs(self):
        self.clones("btrfs", "btrfs", ["mkfs.btrfs", "-q"])

    def window_1g(self, label, share, vault):
        """The loss window of one big file: written, closed, deleted N ms later; the
        smallest N at which it comes back whole."""
        os.makedirs(share, exist_ok=True)
        daemon = Daemon(self.bin, vault, share, self.path(f"window-1g-{label}.log"))
        daemon.sync()
        size = self.args.window_mb * 1_000_000
        chunk = random.Random(1).randbytes(1 << 20)
        results, smallest = [], None
        for ms in [0, 10, 100, 500, 1000, 2000, 5000]:
            p = os.path.join(share, f"after{ms}ms.bin")
            with open(p, "wb") as f:
                written = 0
                while written < size:
                    # Each step's file differs from the others, so none is already kept.
                    part = f"{ms}:{written}".encode() + chunk
                    f.write(part[: size - written])
                    written += len(part[: size - written])
            time.sleep(ms / 1000)
            os.remove(p)
            daemon.sync()
            rows = json.loads(daemon.cli("list", "--json", "--under", p, capture=True))
            ok = any(r["recoverable"] and r["size"] == size for r in rows)
            results.append(f"{ms} ms: {'back' if ok else 'lost'}")
            log(f"loss window ({label}): {size / 1e6:.0f} MB deleted after {ms} ms -> {results[-1]}")
            if ok:
                smallest = ms
                break
        daemon.stop()
        verdict = f"{smallest} ms" if smallest is not None else "over 5 s"
        self.table.add(
            f"loss window of a {size / 1e6:.0f} MB file on {label}", verdict, note="; ".join(results)
        )

    def bigwindow(self):
        self.window_1g("ext4", self.path("window-1g"), self.path("window-1g-vault"))
        shutil.rmtree(self.path("window-1g"), ignore_errors=True)
        shutil.rmtree(self.path("window-1g-vault"), ignore_errors=True)
        mounted = self.loop_mount("window-xfs", ["mkfs.xfs", "-q", "-m", "reflink=1"],
                                  self.args.window_mb * 10 + 600)
        if mounted is None:
            self.table.add("loss window on XFS", "not run: cannot mount a loop XFS here")
            return
        mnt, img = mounted
        try:
            self.window_1g("XFS", os.path.join(mnt, "share"), os.path.join(mnt, "vault"))
        finally:
            subprocess.run(["umount", mnt], check=False)
            os.remove(img)

    def catchup(self):
        share = self.path("catchup")
        tree = os.path.join(share, "small")
        n = self.args.delete_files
        make_small_tree(tree, n)
        cp = timed(["cp", "-a", tree, self.path("small-copy")], cold=True)
        drop_caches()
        daemon = Daemon(self.bin, self.path("catchup-vault"), share, self.path("catchup.log"))
        daemon.sync()
        ours = (time.monotonic() - daemon.started, daemon.peak_kib())
        # Removed only now, for the same reason as the copies in `restore`.
        shutil.rmtree(self.path("small-copy"))
        self.table.add(f"protect {n:,} small files (cold cache)", ours, cp)
        t_rm = time.monotonic()
        subprocess.run(["rm", "-rf", tree], check=True)
        t0 = time.monotonic()
        daemon.sync()
        catch = (time.monotonic() - t0, daemon.peak_kib())
        status = json.loads(daemon.cli("status", "--json", capture=True))
        found = status["deleted_recoverable"]
        note = f"rm took {t0 - t_rm:.2f} s; {found:,} recorded deleted"
        self.table.add(f"catch up after rm -rf of {n:,} files (daemon running)", catch, note=note)
        # The worst case: the daemon is stopped (SIGSTOP) during the rm, so the kernel's
        # queue overflows and a rescan must find the deletions.
        make_small_tree(tree, n, seed=8)
        daemon.sync()
        daemon.proc.send_signal(signal.SIGSTOP)
        t_rm = time.monotonic()
        subprocess.run(["rm", "-rf", tree], check=True)
        t0 = time.monotonic()
        daemon.proc.send_signal(signal.SIGCONT)
        daemon.sync()
        catch = (time.monotonic() - t0, daemon.peak_kib())
        status = json.loads(daemon.cli("status", "--json", capture=True))
        found = status["deleted_recoverable"] - found
        note = f"rm took {t0 - t_rm:.2f} s; {found:,} more recorded deleted"
        self.table.add("…the same with the daemon stopped during rm (queue overflow)", catch, note=note)
        daemon.stop()
        shutil.rmtree(share, ignore_errors=True)
        shutil.rmtree(self.path("catchup-vault"), ignore_errors=True)
        settle()

    def window(self):
        smallest, results = self.loss_window("window")
        per = self.args.window_files
        verdict = f"{smallest} ms" if smallest is not None else "over 500 ms"
        self.table.add(
            f"loss window: smallest N with {per}/{per} recoverable",
            verdict,
            note="; ".join(results),
        )

    def loss_window(self, name, extra=()):
        """Writes `--window-files` 4 KiB files per step and deletes each N ms after
        closing it; returns the smallest N at which every one came back (confirmed by
        the next step), or None, and the counts of each step."""
        share = self.path(name)
        os.makedirs(share)
        vault = self.path(f"{name}-vault")
        daemon = Daemon(self.bin, vault, share, self.path(f"{name}.log"), extra)
        daemon.sync()
        per = self.args.window_files
        smallest = None
        results = []
        for ms in [0, 1, 2, 5, 10, 20, 50, 100, 200, 500]:
            d = os.path.join(share, f"after{ms}ms")
            os.makedirs(d)
            rng = random.Random(ms)
            for i in range(per):
                p = os.path.join(d, f"f{i:04d}")
                with open(p, "wb") as f:
                    f.write(rng.randbytes(4096))
                time.sleep(ms / 1000)
                os.remove(p)
            daemon.sync()
            rows = json.loads(daemon.cli("list", "--json", "--under", d, capture=True))
            ok = sum(1 for r in rows if r["recoverable"])
            results.append(f"{ms} ms: {ok}/{per}")
            log(f"loss window ({name}): deleted after {ms} ms -> {ok}/{per} recoverable")
            if ok == per and smallest is None:
                smallest = ms
                # One more step confirms it is not luck.
            elif ok == per and smallest is not None:
                break
            elif ok < per:
                smallest = None
        daemon.stop()
        shutil.rmtree(share, ignore_errors=True)
        shutil.rmtree(vault, ignore_errors=True)
        return smallest, results

    def big(self):
        share = self.path("big")
        n, dirs = self.args.index_files, self.args.index_dirs
        log(f"creating {n:,} empty files in {dirs:,} folders")
        t = time.monotonic()
        make_empty_tree(os.path.join(share, "tree"), n, dirs)
        log(f"created in {time.monotonic() - t:.0f} s")
        daemon = Daemon(self.bin, self.path("big-vault"), share, self.path("big.log"))
        daemon.sync()
        capture = (time.monotonic() - daemon.started, daemon.peak_kib())
        self.table.add(f"protect {n:,} empty files in {dirs:,} folders", capture)
        time.sleep(2)  # let the allocator settle after the start-up scan
        before = cpu_ticks(daemon.proc.pid)
        time.sleep(10)
        ticks = cpu_ticks(daemon.proc.pid) - before
        hz = os.sysconf("SC_CLK_TCK")
        rss = daemon.rss_kib()
        self.table.add(
            f"daemon idle with {n:,} files indexed, {dirs:,} folders watched",
            f"{mib(rss)} resident (peak {mib(daemon.peak_kib())}); "
            f"CPU {ticks / hz:.2f} s over 10 s",
        )
        # Index queries: 1,000 deleted files in one folder, among a million rows.
        target = os.path.join(share, "tree", "a0000")
        subprocess.run(["rm", "-rf", target], check=True)
        daemon.sync()
        live = os.path.join(share, "tree", "a0001")
        queries = [
            ("list --under (deleted folder)", ["list", "--json", "--under", target]),
            ("list --all --under (live folder)", ["list", "--json", "--all", "--under", live]),
            ("restore --dry-run --under", ["restore", "--dry-run", "--json", "--under", target]),
            ("incidents", ["incidents", "--json"]),
            ("status", ["status", "--json"]),
        ]
        for name, argv in queries:
            runs = [
                timed([self.bin, "--vault", self.path("big-vault"), *argv], check=False)
                for _ in range(5)
            ]
            best = min(runs)
            med = statistics.median(r[0] for r in runs)
            rows = subprocess.run(
                [self.bin, "--vault", self.path("big-vault"), *argv], capture_output=True
            ).stdout
            count = rows.count(b'"path"')
            self.table.add(
                f"index of {n:,} rows: {name}",
                (med, best[1]),
                note=f"{count:,} files listed; median of 5",
            )
        daemon.stop()
        shutil.rmtree(share, ignore_errors=True)
        shutil.rmtree(self.path("big-vault"), ignore_errors=True)

    def mount(self):
        """`ls -l` (a name and a stat of each entry, as Samba asks) of one folder of
        10,000 files at a point in time, on a fresh mount: the first listing, from the
        index, then the second, from the mount's cache. Beside it the live folder."""
        share = self.path("mount")
        n = self.args.mount_files
        folder = os.path.join(share, "big-folder")
        make_small_tree(folder, n, per_dir=n)
        folder = os.path.join(folder, "dir0000")
        # One more deletion, so there is a point in time (just before it) to list.
        with open(os.path.join(share, "gone.txt"), "w") as f:
            f.write("gone")
        vault = self.path("mount-vault")
        daemon = Daemon(self.bin, vault, share, self.path("mount.log"))
        daemon.sync()
        time.sleep(1.1)  # the point names a whole second: the deletion must be in a later one
        os.remove(os.path.join(share, "gone.txt"))
        daemon.sync()
        live = timed(["ls", "-l", "--", folder], cold=True)
        mnt = self.path("mnt")
        os.makedirs(mnt)
        runs = []
        for _ in range(3):
            proc = subprocess.Popen(
                [self.bin, "--vault", vault, "mount", mnt],
                stdout=subprocess.DEVNULL,
                stderr=open(self.path("mount-fs.log"), "ab"),
            )
            while not os.path.ismount(mnt):
                if proc.poll() is not None:
                    raise RuntimeError("undelete mount exited; see mount-fs.log")
                time.sleep(0.01)
            point = sorted(p for p in os.listdir(mnt) if p.startswith("@GMT-"))[-1]
            inside = os.path.join(mnt, point, folder.lstrip("/"))
            first = timed(["ls", "-l", "--", inside], cold=True)
            again = timed(["ls", "-l", "--", inside])
            listed = len(os.listdir(inside))
            proc.send_signal(signal.SIGTERM)
            proc.wait(timeout=60)
            runs.append((first, again))
        if listed != n:
            raise RuntimeError(f"the point in time lists {listed:,} files, not {n:,}")
        first = min(r[0] for r in runs)
        again = min(r[1] for r in runs)
        # The live folder's own `ls -l` goes in the comparison column.
        self.table.add(
            f"ls -l of a point in time of a {n:,}-file folder (mount, first listing)",
            first,
            live,
            note="best of 3 fresh mounts, cold cache; beside it `ls -l` of the live folder",
        )
        self.table.add("…the same listed again (kept by the mount)", again)
        daemon.stop()
        shutil.rmtree(share, ignore_errors=True)
        shutil.rmtree(vault, ignore_errors=True)

    def sources(self):
        """The two event sources side by side, on the same trees in one run: inotify
        (a watch per folder) and fanotify (one mark per filesystem). Each gets a
        fresh vault; the tree stays, and what a source's catch-up deletes is made
        again (same seed) before the other starts."""
        share = self.path("sources")
        n, dirs = self.args.sources_files, max(1, self.args.sources_files // 10)
        d = self.args.delete_files
        log(f"creating {n:,} empty files in {dirs:,} folders, and {d:,} small files")
        make_empty_tree(os.path.join(share, "tree"), n, dirs)
        small = os.path.join(share, "small")
        make_small_tree(small, d)
        settle()
        hz = os.sysconf("SC_CLK_TCK")
        got = {}
        for events in ["inotify", "fanotify"]:
            vault = self.path(f"sources-vault-{events}")
            drop_caches()
            slab_before = kernel_slabs()
            daemon = Daemon(self.bin, vault, share, self.path(f"sources-{events}.log"),
                            ["--events", events])
            daemon.sync()
            startup = time.monotonic() - daemon.started
            status = json.loads(daemon.cli("status", "--json", capture=True))
            protected = status["files_protected"]
            source = (status.get("event_source") or {}).get("source")
            if source != events:
                raise RuntimeError(f"asked for {events}, the daemon uses {source}")
            time.sleep(2)  # let the allocator settle after the start-up scan
            before = cpu_ticks(daemon.proc.pid)
            time.sleep(10)
            idle = (cpu_ticks(daemon.proc.pid) - before) / hz
            rss, peak = daemon.rss_kib(), daemon.peak_kib()
            slab_after = kernel_slabs()
            watches = sum(inotify_watches(daemon.proc.pid))
            t_rm = time.monotonic()
            subprocess.run(["rm", "-rf", small], check=True)
            t0 = time.monotonic()
            daemon.sync()
            catch = time.monotonic() - t0
            deleted = json.loads(daemon.cli("status", "--json", capture=True))["deleted_recoverable"]
            daemon.stop()
            slab_stopped = kernel_slabs()
            got[events] = dict(
                startup=startup, protected=protected, idle=idle, rss=rss, peak=peak,
                marks=slab_after["marks"] - slab_before["marks"],
                slab=slab_after["Slab"] - slab_before["Slab"],
                freed=slab_after["marks"] - slab_stopped["marks"],
                watches=watches, catch=catch, rm=t0 - t_rm, deleted=deleted,
            )
            log(f"sources ({events}): {got[events]}")
            shutil.rmtree(vault, ignore_errors=True)
            make_small_tree(small, d)
            settle()
        for events in ["inotify", "fanotify"]:
            smallest, results = self.loss_window(f"sources-window-{events}", ["--events", events])
            got[events]["window"] = smallest
            got[events]["window_steps"] = "; ".join(results)
        shutil.rmtree(share, ignore_errors=True)
        i, f = got["inotify"], got["fanotify"]
        # The share, tree/ and small/, the folders of both trees and those above them.
        folders = 3 + dirs + (dirs + 99) // 100 + (d + 999) // 1000
        mark_size = kernel_slabs()["mark_size"]
        pairs = self.pairs
        pairs.add(
            f"start-up protection of {n + d:,} files in {folders:,} folders",
            f"{i['startup']:.2f} s ({i['protected']:,} protected)",
            f"{f['startup']:.2f} s ({f['protected']:,} protected)",
            ratio(f["startup"], i["startup"]),
        )
        pairs.add(
            f"catch up after rm -rf of {d:,} files (from the end of rm to sync)",
            f"{i['catch']:.2f} s (rm {i['rm']:.2f} s; {i['deleted']:,} recorded deleted)",
            f"{f['catch']:.2f} s (rm {f['rm']:.2f} s; {f['deleted']:,} recorded deleted)",
            ratio(f["catch"] + f["rm"], i["catch"] + i["rm"]) + " (rm and catch-up together)",
        )
        per = self.args.window_files
        pairs.add(
            f"loss window: smallest N ms with {per}/{per} recoverable",
            f"{i['window']} ms ({i['window_steps']})" if i["window"] is not None else f"over 500 ms ({i['window_steps']})",
            f"{f['window']} ms ({f['window_steps']})" if f["window"] is not None else f"over 500 ms ({f['window_steps']})",
            "—",
        )
        pairs.add(
            "daemon CPU while idle, over 10 s",
            f"{i['idle']:.2f} s",
            f"{f['idle']:.2f} s",
            ratio(f["idle"], i["idle"]),
        )
        pairs.add(
            "daemon resident memory, idle (peak)",
            f"{mib(i['rss'])} ({mib(i['peak'])})",
            f"{mib(f['rss'])} ({mib(f['peak'])})",
            ratio(f["rss"], i["rss"]),
        )
        pairs.add(
            "kernel: watches held (inotify wd in fdinfo)",
            f"{i['watches']:,}",
            f"{f['watches']:,}",
            "—",
        )
        pairs.add(
            f"kernel: mark objects added ({mark_size}-byte slab of inotify_inode_mark and fanotify_mark)",
            f"{i['marks']:,} = {kib_text(i['marks'] * mark_size / 1024)} ({i['freed']:,} freed at stop)",
            f"{f['marks']:,} = {kib_text(f['marks'] * mark_size / 1024)} ({f['freed']:,} freed at stop)",
            ratio(f["marks"], i["marks"]),
        )
        pairs.add(
            "kernel: Slab in /proc/meminfo, growth from before start to idle (whole machine)",
            kib_text(i["slab"]),
            kib_text(f["slab"]),
            ratio(f["slab"], i["slab"]),
        )

    def machine(self):
        fs = subprocess.run(
            ["df", "-T", self.work], capture_output=True, text=True
        ).stdout.splitlines()[-1].split()[1]
        mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
        return (
            f"{os.cpu_count()} cores, {mem:.0f} GiB RAM, {fs} at {self.work}, "
            f"kernel {os.uname().release}, load average at the start {os.getloadavg()[0]:.1f}"
        )


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--bin", required=True, help="the undelete binary")
    p.add_argument("--mb", type=int, default=int(os.environ.get("BENCH_MB", 400)),
                   help="size of the mixed tree in MB (default 400)")
    p.add_argument("--delete-files", type=int, default=int(os.environ.get("BENCH_DELETE", 100_000)),
                   help="small files deleted at once (default 100000)")
    p.add_argument("--index-files", type=int, default=int(os.environ.get("BENCH_INDEX", 1_000_000)),
                   help="files in the big index (default 1000000)")
    p.add_argument("--index-dirs", type=int, default=None,
                   help="folders they are in (default: a tenth of --index-files)")
    p.add_argument("--sources-files", type=int,
                   default=int(os.environ.get("BENCH_SOURCES", 1_000_000)),
                   help="empty files (in a tenth as many folders) the sources section protects\n"
                        "beside the --delete-files it deletes (default 1000000)")
    p.add_argument("--mount-files", type=int, default=10_000,
                   help="files in the folder listed through the mount (default 10000)")
    p.add_argument("--window-mb", type=int, default=1000,
                   help="size of the loss window's big file in MB (default 1000)")
    p.add_argument("--window-files", type=int, default=50,
                   help="files written and deleted per loss-window step (default 50)")
    p.add_argument("--quick", action="store_true",
                   help="a tenth of every size, for a check in a minute or two")
    p.add_argument("--only", default=",".join(SECTIONS),
                   help=f"comma-separated sections (default: {','.join(SECTIONS)})")
    p.add_argument("--work", default="/var/tmp", help="where to make the trees (default /var/tmp)")
    p.add_argument("--keep", action="store_true", help="keep the work folder")
    args = p.parse_args()
    if args.quick:
        args.mb //= 10
        args.delete_files //= 10
        args.index_files //= 10
        args.sources_files //= 10
        args.window_files = 20
        args.window_mb //= 10
    if args.index_dirs is None:
        args.index_dirs = max(1, args.index_files // 10)
    bench = Bench(args)
    machine = bench.machine()
    log(f"working in {bench.work}")
    try:
        for section in args.only.split(","):
            log(f"section {section}")
            getattr(bench, section)()
    finally:
        if bench.mixed:
            bench.mixed[3].stop()
        if not args.keep:
            shutil.rmtree(bench.work, ignore_errors=True)
    print()
    print(f"machine: {machine}; load average at the end {os.getloadavg()[0]:.1f}")
    print(f"undelete: {subprocess.run([bench.bin, '--version'], capture_output=True, text=True).stdout.strip()}")
    print()
    if bench.table.rows:
        print(bench.table.markdown())
    if bench.pairs.rows:
        print()
        print(bench.pairs.markdown())


if __name__ == "__main__":
    main()
