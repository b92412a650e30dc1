#!/usr/bin/env bash
# Data-parallel scaling on this machine's CPU: the same training run (compact_rgc on
# Fashion-MNIST, global batch 64, the same images in the same order) as
#   1 rank  × 1 thread,
#   2 ranks × 1 thread each (TCP, `xtask train --nproc 2`),
#   2 ranks × 1 thread each (MPI, `mpiexec -n 2`, when MPICH is installed),
#   1 rank  × 2 threads,
# and a table of training images/s (rank 0's count of the global batch over its wall time)
# and the final training loss (equal up to rounding: the runs follow one trajectory).
#
#     scripts/bench-distributed.sh            # from the repository root; ~5 min on 2 cores
#
# TRAIN_IMAGES (default 6400 = 100 steps) and MODEL (default compact_rgc) change the work;
# XTASK names an xtask binary to use instead of building the release one. Run
# it on a quiet machine: the numbers are wall-clock throughput. Needs Fashion-MNIST (`cargo
# xtask doctor --install`).

set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
X="${XTASK:-}"
if [ -z "$X" ]; then
    cargo build -q -p xtask --release
    X="$ROOT/target/release/xtask"
fi
IMAGES="${TRAIN_IMAGES:-6400}"
MODEL="${MODEL:-compact_rgc}"
WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT
COMMON=(train --model "$MODEL" --train-limit "$IMAGES" --eval-limit 500 --epochs 1 --quiet --json)

# Prints "img/s final-loss" from a report on stdin.
summarise() {
    python3 -c '
import json, sys
text = sys.stdin.read()
m = json.loads(text[text.index("{"):])["metrics"][-1]
print("%.1f %.5f" % (m["train_img_per_s"], m["train_loss"]))'
}

row() {
    local name="$1"
    shift
    local result
    result="$("$@" | summarise)"
    printf '| %s | %s | %s |\n' "$name" ${result}
}

echo "| configuration | train img/s | train loss |"
echo "|---|---:|---:|"
row "1 rank × 1 thread" env RAYON_NUM_THREADS=1 "$X" "${COMMON[@]}" --batch-size 64 --out "$WORK/a"
row "2 ranks × 1 thread (TCP)" env RAYON_NUM_THREADS=1 "$X" "${COMMON[@]}" --nproc 2 \
    --batch-size 32 --out "$WORK/b"
if command -v mpiexec >/dev/null; then
    row "2 ranks × 1 thread (MPI)" mpiexec -n 2 env RAYON_NUM_THREADS=1 "$X" "${COMMON[@]}" \
        --batch-size 32 --out "$WORK/c"
fi
row "1 rank × 2 threads" env RAYON_NUM_THREADS=2 "$X" "${COMMON[@]}" --batch-size 64 --out "$WORK/d"
