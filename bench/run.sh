#!/usr/bin/env bash
# Side-by-side benchmarks of undelete against cp -a and restic (where installed),
# on trees generated deterministically. Prints a markdown table of wall time and
# peak resident memory, with ratios. Run as root (cold caches, the XFS loop mount).
#
#   bench/run.sh                 # the full run (400 MB tree, 100,000 deletions, 1,000,000 files)
#   bench/run.sh --quick         # a tenth of every size
#   bench/run.sh --only protect,restore --mb 1000
#   bench/run.sh --help          # every option (sizes also from BENCH_MB, BENCH_DELETE, BENCH_INDEX)
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --quiet
exec python3 bench/bench.py --bin "${CARGO_TARGET_DIR:-target}/release/undelete" "$@"
