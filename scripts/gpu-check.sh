#!/usr/bin/env bash
# CUDA checks for the workspace, in two steps on two machines.
#
# 1. On the build machine (has Rust, no GPU needed), from the repository root:
#
#        scripts/gpu-check.sh build
#
#    builds, all with `--features cuda`,
#      * the `tensor` library's unit tests and the `cuda_parity` suite
#        (`cargo test -p tensor --features cuda --no-run`),
#      * topology's end-to-end `cuda_unroll` test
#        (`cargo test -p topology --features cuda --test cuda_unroll --no-run`),
#      * the xtask binary (`cargo build -p xtask --release --features cuda`),
#    strips their debug info and copies them to target/gpu-check/bin/ as
#    tensor-lib, cuda_parity, cuda_unroll and xtask (a few MB each). A first build from scratch
#    takes several minutes on 2 cores (the release build of xtask dominates); later ones reuse
#    target/. target/gpu-check is what has to travel to the GPU machine; it is ignored by git,
#    so name it explicitly when copying: the device runner's `carry: ["target/gpu-check"]`.
#    Nothing else needs carrying: `run` reads benches/ops_shapes.json from the (tracked) tree.
#
# 2. On the GPU machine (no Rust there; NVIDIA driver installed, CUDA 13 user-space libraries
#    from a Python environment: nvidia-cublas, nvidia-cuda-nvrtc, nvidia-cudnn-cu13 wheels),
#    from the repository root:
#
#        OUT=/some/dir scripts/gpu-check.sh run
#
#    finds the Python environment's site-packages/nvidia/*/lib directories, exports them as
#    CONVRNN_CUDA_LIB_DIRS (which the backend preloads from) and LD_LIBRARY_PATH, records
#    nvidia-smi and the libraries found, then runs, in this order:
#      * the library's CUDA unit tests (`cuda::` filter),
#      * the whole cuda_parity suite (every op through the Tensor API and the raw backend
#        functions, CPU vs CUDA, forward and gradients),
#      * cuda_unroll (compact_rgc_median built from one seed on CPU and cuda:0: last logits and
#        every parameter gradient),
#      * `xtask bench ops --device cuda:0 --json` on benches/ops_shapes.json.
#    Output goes to $OUT (default ./gpu-check-out), seven files at most: summary.txt,
#    environment.txt, tensor-lib.log, cuda_parity.log, cuda_unroll.log, bench-ops-cuda.json (the
#    benchmark's JSON) and bench-ops-cuda.log (its table and messages).
#
#    GPU time: the whole run stays within GPU_CHECK_BUDGET_S seconds (default 280, under five
#    minutes); each step also has its own cap (60 s for the unit tests and cuda_unroll, 100 s
#    for cuda_parity, 150 s for the benchmark) and gets at most what is left of the budget. A
#    normal run takes one to two minutes, most of it the one-off NVRTC compile per executable
#    and cuDNN's algorithm search in the benchmark. Give the device runner a timeout of about
#    330 s. Extra benchmark flags can be passed in BENCH_ARGS (e.g. BENCH_ARGS=--quick).
#
#    The exit status is non-zero if a step failed or timed out, if the tests skipped because no
#    GPU was usable, or if the benchmark wrote no valid JSON.
#
#    The executables need glibc >= 2.34 (they are built on Debian 12).

set -uo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
BIN_DIR="$ROOT/target/gpu-check/bin"

build() {
    cd "$ROOT" || exit 1
    rm -rf "$BIN_DIR"
    mkdir -p "$BIN_DIR"
    local json="$ROOT/target/gpu-check/cargo-messages.json"
    : >"$json"
    cargo test -p tensor --features cuda --no-run --message-format=json >>"$json" &&
        cargo test -p topology --features cuda --test cuda_unroll --no-run \
            --message-format=json >>"$json" &&
        cargo build -p xtask --release --features cuda --message-format=json >>"$json" || {
        echo "gpu-check: cargo build failed" >&2
        exit 1
    }
    # One JSON object per line; keep the executables we run on the GPU machine.
    python3 - "$BIN_DIR" "$json" <<'PY' || exit 1
import json, shutil, sys
dest, messages = sys.argv[1], sys.argv[2]
found = {}
for line in open(messages):
    try:
        m = json.loads(line)
    except ValueError:
        continue
    exe = m.get("executable") if m.get("reason") == "compiler-artifact" else None
    if not exe:
        continue
    target, kind = m["target"]["name"], m["target"]["kind"]
    if target == "tensor" and "lib" in kind:
        name = "tensor-lib"
    elif target in ("cuda_parity", "cuda_unroll") and "test" in kind:
        name = target
    elif target == "xtask" and "bin" in kind:
        name = "xtask"
    else:
        continue
    shutil.copy(exe, f"{dest}/{name}")
    found[name] = exe
for name in ("tensor-lib", "cuda_parity", "cuda_unroll", "xtask"):
    if name not in found:
        sys.exit(f"gpu-check: cargo did not report the {name} executable")
    print(f"{name}: {found[name]}")
PY
    rm -f "$json"
    if command -v strip >/dev/null; then
        strip --strip-debug "$BIN_DIR"/*
    fi
    ls -la "$BIN_DIR"
    du -sh "$ROOT/target/gpu-check"
    echo "gpu-check: carry target/gpu-check to the GPU machine and run: scripts/gpu-check.sh run"
}

# site-packages/nvidia/*/lib directories of every Python environment we can find.
nvidia_lib_dirs() {
    {
        for py in python3 python; do
            command -v "$py" >/dev/null || continue
            "$py" - <<'PY' 2>/dev/null
import glob, os
roots = set()
try:
    import nvidia
    roots.update(os.path.abspath(p) for p in nvidia.__path__)
except Exception:
    pass
try:
    import site
    for p in site.getsitepackages() + [site.getusersitepackages()]:
        roots.add(os.path.join(p, "nvidia"))
except Exception:
    pass
for r in roots:
    for d in glob.glob(os.path.join(r, "*", "lib")) + glob.glob(os.path.join(r, "*", "lib64")):
        if os.path.isdir(d):
            print(d)
PY
        done
        for base in "${VIRTUAL_ENV:-}" "${CONDA_PREFIX:-}" "${HOME:-/root}/.local" /usr/local /usr /opt/conda; do
            [ -n "$base" ] || continue
            for d in "$base"/lib/python3*/{site,dist}-packages/nvidia/*/lib; do
                [ -d "$d" ] && echo "$d"
            done
        done
    } | awk '!seen[$0]++'
}

run() {
    local out="${OUT:-$PWD/gpu-check-out}"
    mkdir -p "$out"
    local summary="$out/summary.txt"
    : >"$summary"
    local exe
    for exe in tensor-lib cuda_parity cuda_unroll xtask; do
        if [ ! -x "$BIN_DIR/$exe" ]; then
            echo "gpu-check: no $exe executable in $BIN_DIR; run 'scripts/gpu-check.sh build' on the build machine and carry target/gpu-check" | tee -a "$summary"
            exit 2
        fi
    done

    local dirs
    dirs="$(nvidia_lib_dirs | paste -sd: -)"
    export CONVRNN_CUDA_LIB_DIRS="${CONVRNN_CUDA_LIB_DIRS:+$CONVRNN_CUDA_LIB_DIRS:}$dirs"
    export LD_LIBRARY_PATH="$CONVRNN_CUDA_LIB_DIRS${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
    export RUST_BACKTRACE=1

    {
        echo "== date"; date -u
        echo "== nvidia-smi"; nvidia-smi 2>&1 || echo "(nvidia-smi failed)"
        echo "== CONVRNN_CUDA_LIB_DIRS"; echo "$CONVRNN_CUDA_LIB_DIRS" | tr ':' '\n'
        echo "== CUDA libraries there"
        echo "$CONVRNN_CUDA_LIB_DIRS" | tr ':' '\n' | while read -r d; do
            [ -d "$d" ] && ls "$d" | grep -E '^lib(cuda|nvrtc|cublas|cudnn|nvJitLink)' | sed "s|^|$d/|"
        done
        echo "== libcuda from the system"; ldconfig -p 2>/dev/null | grep -E 'libcuda\.so' || echo "(not in the ldconfig cache)"
    } >"$out/environment.txt" 2>&1
    cat "$out/environment.txt"

    local budget="${GPU_CHECK_BUDGET_S:-280}"
    local began=$SECONDS
    local status=0
    # Seconds a step may run: its cap, or what is left of the budget if that is less.
    allowance() {
        local cap="$1" left=$((budget - (SECONDS - began)))
        [ "$left" -lt "$cap" ] && cap="$left"
        echo "$cap"
    }
    run_one() {
        local cap="$1" name="$2"
        shift 2
        local log="$out/$name.log"
        local limit
        limit="$(allowance "$cap")"
        echo "== $name $* (limit ${limit} s)" | tee -a "$summary"
        if [ "$limit" -le 0 ]; then
            echo "NOT RUN: the ${budget} s budget is spent" | tee -a "$summary"
            status=1
            return
        fi
        local start=$SECONDS
        timeout "$limit" "$BIN_DIR/$name" "$@" >"$log" 2>&1
        local rc=$?
        echo "exit status $rc after $((SECONDS - start)) s" | tee -a "$summary"
        [ "$rc" -eq 124 ] && echo "TIMED OUT" | tee -a "$summary"
        grep -E '^test result:' "$log" | tee -a "$summary"
        grep -E '^test .* FAILED$|panicked at' "$log" | head -40 | tee -a "$summary"
        grep -E 'worst relative error' "$log" | tee -a "$summary"
        if grep -q 'skipped: no CUDA device' "$log"; then
            echo "GPU NOT USED: tests skipped because no CUDA device was usable:" | tee -a "$summary"
            grep -m1 -o 'skipped: no CUDA device.*' "$log" | tee -a "$summary"
            rc=3
        fi
        [ "$rc" -eq 0 ] || status=1
    }
    # The library's CUDA unit tests (loader, allocator reuse, kernel table) ...
    run_one 60 tensor-lib cuda:: --nocapture --test-threads 1
    # ... the parity suite ...
    run_one 100 cuda_parity --nocapture --test-threads 4
    # ... a whole model, unrolled and backpropagated on both devices ...
    run_one 60 cuda_unroll --nocapture

    # ... and the op benchmark on the GPU (JSON on stdout, the table on stderr).
    local limit
    limit="$(allowance 150)"
    echo "== xtask bench ops --device cuda:0 --json ${BENCH_ARGS:-} (limit ${limit} s)" | tee -a "$summary"
    if [ "$limit" -le 0 ]; then
        echo "NOT RUN: the ${budget} s budget is spent" | tee -a "$summary"
        status=1
    else
        local start=$SECONDS
        # shellcheck disable=SC2086 # BENCH_ARGS is a list of flags
        timeout "$limit" "$BIN_DIR/xtask" bench ops --device cuda:0 --json \
            --shapes "$ROOT/benches/ops_shapes.json" ${BENCH_ARGS:-} \
            >"$out/bench-ops-cuda.json" 2>"$out/bench-ops-cuda.log"
        local rc=$?
        echo "exit status $rc after $((SECONDS - start)) s" | tee -a "$summary"
        [ "$rc" -eq 124 ] && echo "TIMED OUT" | tee -a "$summary"
        tail -n 40 "$out/bench-ops-cuda.log" | tee -a "$summary"
        if ! python3 -c 'import json, sys; json.load(open(sys.argv[1]))' \
            "$out/bench-ops-cuda.json" 2>/dev/null; then
            echo "the benchmark wrote no valid JSON" | tee -a "$summary"
            rc=4
        fi
        [ "$rc" -eq 0 ] || status=1
    fi
    echo "total $((SECONDS - began)) s of the ${budget} s budget" | tee -a "$summary"

    if [ "$status" -eq 0 ]; then
        echo "gpu-check: PASSED" | tee -a "$summary"
    else
        echo "gpu-check: FAILED (see $out/*.log)" | tee -a "$summary"
    fi
    exit "$status"
}

case "${1:-run}" in
build) build ;;
run) run ;;
*)
    echo "usage: $0 build|run" >&2
    exit 2
    ;;
esac
