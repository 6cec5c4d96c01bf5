#!/usr/bin/env bash
# Side-by-side timings of undelete against cp -a (and restic, where installed),
# on trees generated deterministically. Prints a table of seconds and ratios.
#
#   bench/run.sh [FILES] [RESTORE_FILES]      (defaults: 20000 10000)
#
# Measures: protecting a tree (daemon start until `undelete sync` returns) and
# the daemon's resident memory afterwards; restoring RESTORE_FILES deleted files
# in place; each against cp -a of the same files.
set -euo pipefail
FILES=${1:-20000}
RESTORE_FILES=${2:-10000}
cd "$(dirname "$0")/.."
cargo build --release --quiet
BIN=$PWD/target/release/undelete
WORK=$(mktemp -d /var/tmp/undelete-bench.XXXXXX)
trap 'kill $DAEMON 2>/dev/null || true; rm -rf "$WORK"' EXIT
DAEMON=

# A deterministic tree: FILES files of 1–64 KiB in folders of 100.
make_tree() {
    python3 - "$1" "$2" <<'PY'
import os, random, sys
root, n = sys.argv[1], int(sys.argv[2])
rng = random.Random(42)
for i in range(n):
    d = os.path.join(root, f"dir{i // 100:04d}")
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, f"file{i:06d}.dat"), "wb") as f:
        f.write(rng.randbytes(rng.randint(1024, 65536)))
PY
}

now() { date +%s.%N; }
secs() { python3 -c "print(f'{$2 - $1:.2f}')"; }
ratio() { python3 -c "print(f'{$1 / $2:.2f}x')"; }
cold() { sync; echo 3 > /proc/sys/vm/drop_caches 2>/dev/null || true; }

mkdir -p "$WORK/share"
make_tree "$WORK/share/tree" "$FILES"
BYTES=$(du -sb "$WORK/share/tree" | cut -f1)

cold; t0=$(now); cp -a "$WORK/share/tree" "$WORK/cp-copy"; t1=$(now)
CP_PROTECT=$(secs "$t0" "$t1")

cold; t0=$(now)
"$BIN" --vault "$WORK/vault" daemon --protect "$WORK/share" 2>"$WORK/daemon.log" &
DAEMON=$!
until [ -S "$WORK/vault/daemon.sock" ]; do sleep 0.01; done
"$BIN" --vault "$WORK/vault" sync --timeout 3600
t1=$(now)
UD_PROTECT=$(secs "$t0" "$t1")
RSS_KB=$(awk '/VmRSS/ {print $2}' "/proc/$DAEMON/status")
HWM_KB=$(awk '/VmHWM/ {print $2}' "/proc/$DAEMON/status")

RESTIC_PROTECT=-
if command -v restic >/dev/null; then
    export RESTIC_PASSWORD=bench RESTIC_REPOSITORY="$WORK/restic"
    restic init --quiet
    cold; t0=$(now); restic backup --quiet "$WORK/share/tree"; t1=$(now)
    RESTIC_PROTECT=$(secs "$t0" "$t1")
fi

# Restore: delete RESTORE_FILES files, then bring them back in place.
SUBSET=$((RESTORE_FILES / 100))
mkdir -p "$WORK/cp-src"
for d in $(ls "$WORK/share/tree" | head -n "$SUBSET"); do cp -a "$WORK/share/tree/$d" "$WORK/cp-src/"; done
for d in $(ls "$WORK/share/tree" | head -n "$SUBSET"); do rm -rf "${WORK:?}/share/tree/$d"; done
"$BIN" --vault "$WORK/vault" sync --timeout 3600
cold; t0=$(now); cp -a "$WORK/cp-src" "$WORK/cp-back"; t1=$(now)
CP_RESTORE=$(secs "$t0" "$t1")
cold; t0=$(now)
"$BIN" --vault "$WORK/vault" restore --under "$WORK/share/tree" >"$WORK/restore.txt"
t1=$(now)
UD_RESTORE=$(secs "$t0" "$t1")
head -1 "$WORK/restore.txt"

echo
echo "machine: $(nproc) cores, $(free -g | awk '/Mem/ {print $2}') GiB RAM, $(df -T "$WORK" | awk 'NR==2 {print $2}') at $WORK"
echo "tree: $FILES files, $((BYTES / 1000000)) MB; restore: $RESTORE_FILES files"
printf '%-34s %10s %10s %10s\n' "task" "undelete" "cp -a" "ratio"
printf '%-34s %9ss %9ss %10s\n' "protect $FILES files (cold cache)" "$UD_PROTECT" "$CP_PROTECT" "$(ratio "$UD_PROTECT" "$CP_PROTECT")"
printf '%-34s %9ss %9ss %10s\n' "restore $RESTORE_FILES files (cold)" "$UD_RESTORE" "$CP_RESTORE" "$(ratio "$UD_RESTORE" "$CP_RESTORE")"
[ "$RESTIC_PROTECT" != - ] && printf '%-34s %9ss\n' "restic backup of the same tree" "$RESTIC_PROTECT"
echo "daemon resident memory after protecting: $((RSS_KB / 1024)) MB (peak $((HWM_KB / 1024)) MB)"
