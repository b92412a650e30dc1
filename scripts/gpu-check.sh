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
#      * tf-import's parity suite, whose `cuda::` tests run the imported released models on the GPU
#        (`cargo test -p tf-import --features cuda --test parity --no-run`),
#      * the data-parallel tests: collective's `nccl` and trainer's `distributed`
#        (`cargo test -p collective --features cuda --test nccl --no-run`,
#        `cargo test -p trainer --features cuda --test distributed --no-run`),
#      * the xtask binary (`cargo build -p xtask --release --features cuda`),
#    strips their debug info and copies them to target/gpu-check/bin/ as
#    tensor-lib, cuda_parity, cuda_unroll, tf_parity, nccl, distributed and xtask (a few MB each). A first build from scratch
#    takes several minutes on 2 cores (the release build of xtask dominates); later ones reuse
#    target/. target/gpu-check is what has to travel to the GPU machine; it is ignored by git,
#    so name it explicitly when copying: the device runner's `carry: ["target/gpu-check"]`.
#    Nothing else needs carrying: `run` reads benches/ops_shapes.json and the parity fixtures
#    (tf-import/tests/reference) from the (tracked) tree.
#
# 2. On the GPU machine (no Rust there; NVIDIA driver installed, CUDA 13 user-space libraries
#    from a Python environment: nvidia-cublas, nvidia-cuda-nvrtc, nvidia-cudnn-cu13 wheels),
#    from the repository root:
#
#        OUT=/some/dir scripts/gpu-check.sh run
#
#    finds the Python environment's site-packages/nvidia/*/lib directories, exports them as
#    CONVRNN_CUDA_LIB_DIRS (which the backend preloads from) and, after a directory of
#    unversioned links to their libraries (libcudnn.so → libcudnn.so.9, ...), as LD_LIBRARY_PATH:
#    cudarc opens the unversioned names first, and a machine with its own CUDA libraries under
#    those names (the lent H200 has a system cuDNN) would otherwise mix two installations. It
#    records nvidia-smi and the libraries found, then runs, in this order:
#      * the library's CUDA unit tests (`cuda::` filter),
#      * the whole cuda_parity suite (every op through the Tensor API and the raw backend
#        functions, CPU vs CUDA, forward and gradients),
#      * cuda_unroll (compact_rgc_median built from one seed on CPU and cuda:0: last logits and
#        every parameter gradient),
#      * tf_parity `cuda::` (the 20 released architectures, imported from the checkpoints the
#        reference TensorFlow code wrote, unrolled on cuda:0 for the default and the neural
#        presentation: every area at every step, every step's logits and the decoder output
#        against the reference's outputs within 1e-4 · (|reference| + rms of the map), the CPU
#        path's tolerance; one "values within tolerance (worst …)" line per model),
#      * nccl: NCCL with a world of one on cuda:0 (libnccl found, id over the TCP bootstrap,
#        communicator, all-reduce and broadcast of device memory, the time of an all-reduce of
#        rgc_shallow's 24 M gradients); it needs the nvidia-nccl-cu13 wheel (libnccl.so.2),
#      * distributed (when Fashion-MNIST travelled): two ranks at batch 8 on the GPU against one
#        rank at batch 16, 8 steps of compact_rgc_median, parameters compared (the largest
#        difference goes to the summary); with one GPU both ranks share cuda:0 and exchange
#        gradients over TCP, with two or more each rank has its own GPU and NCCL; with two or
#        more GPUs also `xtask train --nproc 2 --device cuda` (NCCL) for TRAIN_STEPS/4 steps,
#      * `xtask bench unroll` beside benches/torch_unroll.py (PyTorch on the same card) for
#        rgc_shallow (96 px, batch 16) and compact_rgc (batch 256),
#      * a short `xtask train` of compact_rgc on Fashion-MNIST on cuda:0 (TRAIN_STEPS steps of
#        batch 128, default 400) when the IDX files are in FMNIST_DIR (default ./.fmnist; carry
#        it: `mkdir .fmnist && cp /usr/share/datasets/fashion-mnist/* .fmnist/`),
#      * `xtask bench ops --device cuda:0 --json` on benches/ops_shapes.json.
#    Output goes to $OUT (default ./gpu-check-out): summary.txt (every step's result),
#    environment.txt, one log per test executable, unroll-{ours,torch}-MODEL.json,
#    bench-unroll.log, train-cuda.log, train-cuda-metrics.jsonl, bench-ops-cuda.json,
#    bench-ops-cuda.log, nccl.log, distributed.log and (two or more GPUs) train-nccl.log. The device runner returns at most 8 files: tar $OUT into one.
#
#    GPU time: the whole run stays within GPU_CHECK_BUDGET_S seconds (default 480); each step
#    also has its own cap (60 s for the unit tests, cuda_unroll and each model benchmark, 100 s
#    for cuda_parity, 120 s for the training, 150 s for the op benchmark) and gets at most what
#    is left of the budget. On the H200 a whole run took 62–80 s. Extra op-benchmark flags can
#    be passed in BENCH_ARGS (e.g. BENCH_ARGS=--quick).
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
        cargo test -p tf-import --features cuda --test parity --no-run \
            --message-format=json >>"$json" &&
        cargo test -p collective --features cuda --test nccl --no-run \
            --message-format=json >>"$json" &&
        cargo test -p trainer --features cuda --test distributed --no-run \
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
    elif target in ("cuda_parity", "cuda_unroll", "nccl", "distributed") and "test" in kind:
        name = target
    elif target == "parity" and "test" in kind and "/tf-import/" in m["target"]["src_path"]:
        name = "tf_parity"
    elif target == "xtask" and "bin" in kind:
        name = "xtask"
    else:
        continue
    shutil.copy(exe, f"{dest}/{name}")
    found[name] = exe
for name in ("tensor-lib", "cuda_parity", "cuda_unroll", "tf_parity", "nccl", "distributed",
             "xtask"):
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
    for exe in tensor-lib cuda_parity cuda_unroll tf_parity nccl distributed xtask; do
        if [ ! -x "$BIN_DIR/$exe" ]; then
            echo "gpu-check: no $exe executable in $BIN_DIR; run 'scripts/gpu-check.sh build' on the build machine and carry target/gpu-check" | tee -a "$summary"
            exit 2
        fi
    done

    local dirs
    dirs="$(nvidia_lib_dirs | paste -sd: -)"
    export CONVRNN_CUDA_LIB_DIRS="${CONVRNN_CUDA_LIB_DIRS:+$CONVRNN_CUDA_LIB_DIRS:}$dirs"
    # cudarc asks for the unversioned names (libcudnn.so, ...) first, and NVIDIA's wheels ship
    # only versioned files: a different copy under the unversioned name elsewhere on the search
    # path would win. Unversioned links to the wheels' files, first on LD_LIBRARY_PATH, pin them.
    local links=/tmp/gpu-check-cuda-links
    rm -rf "$links" && mkdir -p "$links"
    local stem d f
    for stem in libcudnn libcublas libcublasLt libnvrtc libnvJitLink libnccl; do
        for d in $(echo "$CONVRNN_CUDA_LIB_DIRS" | tr ':' ' '); do
            f="$(ls "$d/$stem".so.[0-9]* 2>/dev/null | sort -V | tail -n 1)"
            if [ -n "$f" ]; then
                ln -sf "$f" "$links/$stem.so"
                break
            fi
        done
    done
    export LD_LIBRARY_PATH="$links:$CONVRNN_CUDA_LIB_DIRS${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
    export RUST_BACKTRACE=1

    {
        echo "== date"; date -u
        echo "== nvidia-smi"; nvidia-smi 2>&1 || echo "(nvidia-smi failed)"
        echo "== CONVRNN_CUDA_LIB_DIRS"; echo "$CONVRNN_CUDA_LIB_DIRS" | tr ':' '\n'
        echo "== CUDA libraries there"
        echo "$CONVRNN_CUDA_LIB_DIRS" | tr ':' '\n' | while read -r d; do
            [ -d "$d" ] && ls "$d" | grep -E '^lib(cuda|nvrtc|cublas|cudnn|nvJitLink|nccl)' | sed "s|^|$d/|"
        done
        echo "== libcuda from the system"; ldconfig -p 2>/dev/null | grep -E 'libcuda\.so' || echo "(not in the ldconfig cache)"
        echo "== other CUDA libraries in the ldconfig cache"
        ldconfig -p 2>/dev/null | grep -E 'lib(cudnn|cublas|nvrtc|nvJitLink)' || echo "(none)"
        echo "== unversioned links on LD_LIBRARY_PATH"; ls -l "$links"
    } >"$out/environment.txt" 2>&1
    cat "$out/environment.txt"

    local budget="${GPU_CHECK_BUDGET_S:-480}"
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
        grep -E 'worst relative error|largest parameter difference|NCCL all-reduce of|values within tolerance' "$log" |
            tee -a "$summary"
        grep -E 'skipped: (Fashion-MNIST|MPICH)' "$log" | tee -a "$summary"
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
    # ... the released models, imported from the reference's checkpoints, against its outputs ...
    CONVRNN_PARITY_FIXTURES="$ROOT/tf-import/tests/reference" \
        run_one 120 tf_parity cuda:: --nocapture --test-threads 4
    # ... NCCL with a world of one ...
    run_one 60 nccl --nocapture
    # ... and data-parallel training on the GPU: 2 ranks × batch 8 against 1 × batch 16.
    local fmnist="${FMNIST_DIR:-$ROOT/.fmnist}"
    local gpus
    gpus="$(nvidia-smi -L 2>/dev/null | grep -c '^GPU')"
    if [ -f "$fmnist/train-images-idx3-ubyte.gz" ]; then
        local via_backend=tcp
        [ "${gpus:-0}" -ge 2 ] && via_backend=nccl
        export CONVRNN_DATA_DIR="$fmnist" CONVRNN_TEST_DEVICE=cuda:0 CONVRNN_TEST_VIA=tcp
        export CONVRNN_TEST_BACKEND="$via_backend"
        echo "== data parallel on $gpus GPU(s), gradients over $via_backend" | tee -a "$summary"
        run_one 120 distributed --exact two_mpi_ranks_at_batch_b_match_one_rank_at_2b --nocapture
        unset CONVRNN_TEST_DEVICE CONVRNN_TEST_VIA CONVRNN_TEST_BACKEND
    else
        echo "== distributed: NOT RUN (no Fashion-MNIST in $fmnist)" | tee -a "$summary"
    fi

    # Whole models on the GPU: ours (`xtask bench unroll`) beside plain PyTorch on the same card
    # (benches/torch_unroll.py, with the machine's own python3), the issue-#3 configuration
    # (rgc_shallow, 96 px, batch 16, 16 steps) and compact_rgc at a GPU-sized batch.
    local py="${PYTHON:-python3}"
    bench_model() {
        local name="$1"
        shift
        limit="$(allowance 60)"
        echo "== $name: $* (limit ${limit} s)" | tee -a "$summary"
        [ "$limit" -gt 0 ] || { echo "NOT RUN: budget spent" | tee -a "$summary"; status=1; return; }
        local start=$SECONDS
        timeout "$limit" "$@" >"$out/$name.json" 2>>"$out/bench-unroll.log"
        local rc=$?
        echo "exit status $rc after $((SECONDS - start)) s" | tee -a "$summary"
        tr -d '\n ' <"$out/$name.json" | tee -a "$summary"
        echo | tee -a "$summary"
        [ "$rc" -eq 0 ] || status=1
    }
    : >"$out/bench-unroll.log"
    for m in "rgc_shallow 96 16" "compact_rgc 28 256"; do
        set -- $m
        bench_model "unroll-ours-$1" "$BIN_DIR/xtask" bench unroll --model "$1" --size "$2" \
            --batch "$3" --iters 5 --device cuda:0 --json
        bench_model "unroll-torch-$1" "$py" "$ROOT/benches/torch_unroll.py" --model "$1" \
            --size "$2" --batch "$3" --iters 5 --device cuda:0 --json
    done

    # A short real training run on the GPU (Fashion-MNIST from FMNIST_DIR, when it travelled).
    if [ -f "$fmnist/train-images-idx3-ubyte.gz" ]; then
        limit="$(allowance 120)"
        echo "== xtask train on cuda:0 (limit ${limit} s)" | tee -a "$summary"
        # The machine is offline: a stand-in apt-get keeps xtask from trying to install the
        # Debian build packages it would look for on a developer's machine.
        mkdir -p /tmp/gpu-check-noapt
        printf '#!/bin/sh\necho "apt-get: offline GPU machine" >&2\nexit 1\n' >/tmp/gpu-check-noapt/apt-get
        chmod +x /tmp/gpu-check-noapt/apt-get
        local start=$SECONDS
        PATH="/tmp/gpu-check-noapt:$PATH" timeout "$limit" "$BIN_DIR/xtask" train \
            --model compact_rgc --dataset fashion-mnist --data-dir "$fmnist" --device cuda:0 \
            --batch-size 128 --max-steps "${TRAIN_STEPS:-400}" --out /tmp/gpu-check-train \
            >"$out/train-cuda.log" 2>&1
        local rc=$?
        echo "exit status $rc after $((SECONDS - start)) s" | tee -a "$summary"
        tr '\r' '\n' <"$out/train-cuda.log" | grep -v '^\s*$' | tail -n 25 | tee -a "$summary"
        cp /tmp/gpu-check-train/metrics.jsonl "$out/train-cuda-metrics.jsonl" 2>/dev/null
        [ "$rc" -eq 0 ] || status=1
        if [ "${gpus:-0}" -ge 2 ]; then
            # Two ranks, one GPU each, gradients over NCCL (a TCP rendezvous starts them).
            limit="$(allowance 120)"
            echo "== xtask train --nproc 2 --device cuda (NCCL; limit ${limit} s)" | tee -a "$summary"
            start=$SECONDS
            PATH="/tmp/gpu-check-noapt:$PATH" timeout "$limit" "$BIN_DIR/xtask" train \
                --model compact_rgc --dataset fashion-mnist --data-dir "$fmnist" --device cuda \
                --nproc 2 --batch-size 128 --max-steps "$(( ${TRAIN_STEPS:-400} / 4 ))" \
                --out /tmp/gpu-check-train-nccl >"$out/train-nccl.log" 2>&1
            rc=$?
            echo "exit status $rc after $((SECONDS - start)) s" | tee -a "$summary"
            tr '\r' '\n' <"$out/train-nccl.log" | grep -v '^\s*$' | tail -n 12 | tee -a "$summary"
            [ "$rc" -eq 0 ] || status=1
        fi
    else
        echo "== xtask train on cuda:0: NOT RUN (no Fashion-MNIST in $fmnist)" | tee -a "$summary"
    fi

    # Last, the op benchmark on the GPU (JSON on stdout, the table on stderr).
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
