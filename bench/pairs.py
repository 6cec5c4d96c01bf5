#!/usr/bin/env python3
"""Two undelete binaries, A and B, alternating on the same task in one run.

On a machine whose speed drifts (other work, the disk's own moods), a ratio is
only worth quoting between runs made side by side: each round runs A then B
(B then A in every other round), and the ratio A/B is taken round by round.
The load average is printed beside every pair.

Tasks:
  restore   the mixed tree of bench.py is captured once (binary A, no daemon
            left running); each run removes the tree and restores it with
            `restore --under`, the vault's files evicted from the page cache first
  protect   each run captures the tree into a fresh vault: a daemon is started
            on it and timed until `undelete sync` returns (then until
            `sync --hashed`), the tree evicted from the page cache first

`--fs xfs` or `--fs btrfs` puts tree and vault on a loop-mounted image (where
copies clone). Caches are emptied file by file (POSIX_FADV_DONTNEED on every
file of the tree, the vault, and the image under a loop mount), never with
drop_caches, so other work on the machine keeps its cache.

    sudo python3 bench/pairs.py --a /tmp/undelete-a --b /tmp/undelete-b --task restore
"""

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bench import Daemon, log, make_mixed_tree  # noqa: E402

MKFS = {
    "xfs": ["mkfs.xfs", "-q", "-m", "reflink=1"],
    "btrfs": ["mkfs.btrfs", "-q"],
}


def files_under(top):
    if os.path.isfile(top):
        yield top
        return
    for folder, _, names in os.walk(top):
        for name in names:
            yield os.path.join(folder, name)


def evict(*paths):
    """Drops the clean pages of every file under `paths` from the page cache."""
    subprocess.run(["sync"], check=True)
    for top in paths:
        for path in files_under(top):
            try:
                fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
            except OSError:
                continue
            try:
                os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
            finally:
                os.close(fd)


def count_files(tree):
    return sum(len(f) for _, _, f in os.walk(tree))


def load():
    return os.getloadavg()[0]


class Place:
    """Where the tree and the vault are: a folder of the work dir, or a loop mount."""

    def __init__(self, work, fs, mb):
        self.image = None
        self.mnt = os.path.join(work, "disk")
        os.makedirs(self.mnt)
        if fs != "ext4":
            self.image = os.path.join(work, "disk.img")
            with open(self.image, "wb") as f:
                f.truncate(mb * 6 * 1_000_000 + 600_000_000)
            subprocess.run([*MKFS[fs], self.image], check=True, capture_output=True)
            subprocess.run(["mount", "-o", "loop", self.image, self.mnt], check=True)
        self.share = os.path.join(self.mnt, "share")
        self.tree = os.path.join(self.share, "tree")

    def vault(self, name):
        return os.path.join(self.mnt, name)

    def evict(self, *paths):
        evict(*paths, *([self.image] if self.image else []))

    def close(self):
        if self.image:
            subprocess.run(["umount", self.mnt], check=False)


def restore_run(binary, place, vault, files):
    place.evict(vault)
    t0 = time.monotonic()
    subprocess.run(
        [binary, "--vault", vault, "restore", "--under", place.tree],
        check=True, stdout=subprocess.DEVNULL,
    )
    took = time.monotonic() - t0
    back = count_files(place.tree)
    if back != files:
        raise RuntimeError(f"{binary} brought back {back} of {files} files")
    # Removed with no daemon watching: the index still has every file deleted.
    shutil.rmtree(place.tree)
    return {"wall": took}


def protect_run(binary, place, work, files):
    vault = place.vault("vault-run")
    shutil.rmtree(vault, ignore_errors=True)
    place.evict(place.tree)
    daemon = Daemon(binary, vault, place.share, os.path.join(work, "daemon.log"))
    daemon.sync()
    synced = time.monotonic() - daemon.started
    daemon.cli("sync", "--hashed", "--timeout", "7200")
    hashed = time.monotonic() - daemon.started
    daemon.stop()
    shutil.rmtree(vault)
    return {"wall": synced, "hashed": hashed}


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--a", required=True, help="binary A")
    p.add_argument("--b", required=True, help="binary B")
    p.add_argument("--task", choices=["restore", "protect"], default="restore")
    p.add_argument("--fs", choices=["ext4", "xfs", "btrfs"], default="ext4",
                   help="ext4: the work folder's own disk; xfs, btrfs: a loop-mounted image")
    p.add_argument("--mb", type=int, default=400, help="size of the mixed tree in MB (default 400)")
    p.add_argument("--rounds", type=int, default=5, help="rounds of A and B (default 5)")
    p.add_argument("--work", default="/var/tmp", help="where to make the tree (default /var/tmp)")
    args = p.parse_args()
    work = tempfile.mkdtemp(prefix="undelete-pairs.", dir=args.work)
    place = Place(work, args.fs, args.mb)
    try:
        files, size = make_mixed_tree(place.tree, args.mb)
        log(f"mixed tree: {files} files, {size / 1e6:.0f} MB on {args.fs}")
        if args.task == "restore":
            vault = place.vault("vault")
            daemon = Daemon(args.a, vault, place.share, os.path.join(work, "daemon.log"))
            daemon.cli("sync", "--hashed", "--timeout", "7200")
            shutil.rmtree(place.tree)
            daemon.sync()
            daemon.stop()
            run = lambda binary: restore_run(binary, place, vault, files)  # noqa: E731
        else:
            run = lambda binary: protect_run(binary, place, work, files)  # noqa: E731
        print(f"{args.task} {files:,} files, {size / 1e6:.0f} MB on {args.fs}; "
              f"A = {args.a}, B = {args.b}; load average at the start {load():.1f}")
        print()
        print("| round | load before | A | B | A/B |")
        print("|---|---|---|---|---|")
        ratios, hashed_ratios = [], []
        for n in range(args.rounds):
            before = load()
            order = ["a", "b"] if n % 2 == 0 else ["b", "a"]
            got = {who: run(getattr(args, who)) for who in order}
            a, b = got["a"], got["b"]
            ratios.append(a["wall"] / b["wall"])
            cell = lambda m: f"{m['wall']:.2f} s" + (  # noqa: E731
                f" (hashed {m['hashed']:.2f} s)" if "hashed" in m else "")
            if "hashed" in a:
                hashed_ratios.append(a["hashed"] / b["hashed"])
            print(f"| {n + 1} ({''.join(order).upper()}) | {before:.1f} | {cell(a)} | {cell(b)} "
                  f"| {ratios[-1]:.2f}× |", flush=True)
        print()
        print(f"A/B: median {statistics.median(ratios):.2f}×, "
              f"range {min(ratios):.2f}–{max(ratios):.2f}× over {len(ratios)} rounds"
              + (f"; until hashed: median {statistics.median(hashed_ratios):.2f}×" if hashed_ratios else "")
              + f"; load average at the end {load():.1f}")
    finally:
        place.close()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
