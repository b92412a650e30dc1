#!/usr/bin/env bash
# Training throughput on the CPU against PyTorch's, side by side (issue #18). For each model and
# pair: PyTorch (benches/torch_unroll.py), then ours with the convolution paths tuned on first use
# (a fresh path cache, so the first pair's warm-up does the timing and later pairs reuse it), then
# ours with the fixed thresholds (CONVRNN_CONV_CACHE=off); a table at the end. Run it on a quiet
# machine, nothing else running:
#
#   scripts/bench-cpu-vs-torch.sh [PYTHON]      PYTHON: an interpreter with torch (default python3)
#
# Environment: PAIRS (default 2), MODELS (default "rgc_shallow compact_rgc compact_feedforward
# feedforward_intermediate"), THREADS (default 2), KEEP=1 keeps the JSON results (printed path),
# XTASK=path times that xtask binary instead of building target/release/xtask.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
PY=${1:-${PYTHON:-python3}}
PAIRS=${PAIRS:-2}
THREADS=${THREADS:-2}
MODELS=${MODELS:-rgc_shallow compact_rgc compact_feedforward feedforward_intermediate}
"$PY" -c 'import torch' || { echo "$PY has no torch: pass an interpreter that has it" >&2; exit 1; }
if [ -z "${XTASK:-}" ]; then
    (cd "$ROOT" && cargo build --release -p xtask)
fi
XT=${XTASK:-$ROOT/target/release/xtask}
OUT=$(mktemp -d)
[ "${KEEP:-0}" = 1 ] || trap 'rm -rf "$OUT"' EXIT
CACHE=$OUT/conv-paths.json
export RAYON_NUM_THREADS=$THREADS

# The sizes, steps and iterations of BENCHMARKS.md's comparisons.
args() {
    case $1 in
        rgc_shallow) echo "--size 96 --steps 16 --iters 2" ;;
        feedforward_intermediate) echo "--size 96 --steps 17 --iters 2" ;;
        *) echo "--iters 3" ;;
    esac
}

for pair in $(seq 1 "$PAIRS"); do
    for m in $MODELS; do
        a=$(args "$m")
        echo "pair $pair, $m: PyTorch ..." >&2
        # shellcheck disable=SC2086
        "$PY" "$ROOT/benches/torch_unroll.py" --model "$m" $a --batch 16 --threads "$THREADS" --json \
            > "$OUT/$m-$pair-torch.json"
        echo "pair $pair, $m: ours, tuned paths ..." >&2
        # shellcheck disable=SC2086
        CONVRNN_CONV_CACHE=$CACHE "$XT" bench unroll --model "$m" $a --batch 16 --json \
            > "$OUT/$m-$pair-tuned.json"
        echo "pair $pair, $m: ours, thresholds ..." >&2
        # shellcheck disable=SC2086
        CONVRNN_CONV_CACHE=off "$XT" bench unroll --model "$m" $a --batch 16 --json \
            > "$OUT/$m-$pair-thresholds.json"
    done
done

"$PY" - "$OUT" "$PAIRS" $MODELS <<'PYEOF'
import json, os, sys, datetime, platform
out, pairs, models = sys.argv[1], int(sys.argv[2]), sys.argv[3:]
cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), platform.processor())
flags = next((l.split(":", 1)[1].split() for l in open("/proc/cpuinfo") if l.startswith("flags")), [])
isa = "+".join(f for f in ("avx512f", "avx512bw", "avx512vl", "avx2", "fma") if f in flags)
load = lambda m, p, k: json.load(open(os.path.join(out, f"{m}-{p}-{k}.json")))
first = load(models[0], 1, "torch")
print(f"{cpu} ({isa}), {first['threads']} threads, PyTorch {first['torch']}, "
      f"{datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC\n")
print("| model | px | steps | pair | params (ours / PyTorch) | PyTorch train img/s | ours tuned | ours thresholds "
      "| tuned / PyTorch | thresholds / PyTorch | forward: PyTorch / ours tuned |")
print("|---|---:|---:|---:|---|---:|---:|---:|---:|---:|---:|")
for m in models:
    for p in range(1, pairs + 1):
        t, u, h = load(m, p, "torch"), load(m, p, "tuned"), load(m, p, "thresholds")
        tt = t["train_img_per_s"]
        print(f"| {m} | {u['size']} | {u['steps']} | {p} | {u['params']} / {t['params']} | {tt:.3g} "
              f"| {u['train_img_per_s']:.3g} | {h['train_img_per_s']:.3g} | {u['train_img_per_s'] / tt:.2f}x "
              f"| {h['train_img_per_s'] / tt:.2f}x | {t['forward_img_per_s']:.3g} / {u['forward_img_per_s']:.3g} |")
PYEOF
[ "${KEEP:-0}" != 1 ] || echo "results kept in $OUT" >&2
