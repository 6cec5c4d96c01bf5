#!/usr/bin/env bash
# Side-by-side benchmarks of undelete against cp -a and restic (where installed),
# on trees generated deterministically. Prints a markdown table of wall time and
# peak resident memory, with ratios. Run as root (cold caches, the XFS loop mount).
#
#   bench/run.sh                 # the full run (400 MB tree, 100,000 deletions, 1,000,000 files)
#   bench/run.sh --quick         # a tenth of every size
#   bench/run.sh --only protect,restore --mb 1000
#   bench/run.sh --only sources --sources-files 100000   # inotify against fanotify
#   bench/run.sh --help          # every option (sizes also from BENCH_MB, BENCH_DELETE, BENCH_INDEX,
#                                # BENCH_SOURCES)
set -euo pipefail
cd "$(dirname "$0")/.."
# The clone rows need loop-mounted XFS and btrfs.
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    for tool in mkfs.xfs mkfs.btrfs; do
        if ! command -v "$tool" >/dev/null && [ ! -x "/usr/sbin/$tool" ]; then
            apt-get update -qq
            DEBIAN_FRONTEND=noninteractive apt-get install -y -qq xfsprogs btrfs-progs
            break
        fi
    done
fi
cargo build --release --quiet
exec python3 bench/bench.py --bin "${CARGO_TARGET_DIR:-target}/release/undelete" "$@"
