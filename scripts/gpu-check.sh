#!/usr/bin/env bash
# CUDA parity check for the `tensor` crate, in two steps on two machines.
#
# 1. On the build machine (has Rust, no GPU needed):
#
#        scripts/gpu-check.sh build
#
#    builds the test executables with `--features cuda`
#    (`cargo test -p tensor --features cuda --no-run --message-format=json` names them), strips
#    their debug info and copies them to target/gpu-check/bin/ (about 3 MB each). That directory
#    is what has to travel to the GPU machine; it is ignored by git, so name it explicitly when
#    copying (e.g. the device runner's `carry: ["target/gpu-check"]`).
#
# 2. On the GPU machine (no Rust there; NVIDIA driver installed, CUDA 13 user-space libraries
#    from a Python environment: nvidia-cublas, nvidia-cuda-nvrtc, nvidia-cudnn-cu13 wheels):
#
#        OUT=/some/dir scripts/gpu-check.sh run
#
#    finds the Python environment's site-packages/nvidia/*/lib directories, exports them as
#    CONVRNN_CUDA_LIB_DIRS (which the backend preloads from) and LD_LIBRARY_PATH, records
#    nvidia-smi and the libraries found, then runs the library's CUDA unit tests
#    (`cuda::` filter) and the whole cuda_parity suite. Output and a summary go to $OUT
#    (default ./gpu-check-out). The exit status is non-zero if a test failed or if the tests
#    skipped because no GPU was usable. Each executable gets at most 150 s; a normal run takes
#    well under a minute of GPU time after the one-off NVRTC compile.
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
    cargo test -p tensor --features cuda --no-run --message-format=json >"$json" || {
        echo "gpu-check: cargo build failed" >&2
        exit 1
    }
    # One JSON object per line; keep the executables of the lib unit tests and cuda_parity.
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
    if not exe or m["target"]["name"] not in ("tensor", "cuda_parity"):
        continue
    name = "tensor-lib" if "lib" in m["target"]["kind"] else "cuda_parity"
    shutil.copy(exe, f"{dest}/{name}")
    found[name] = exe
for name in ("tensor-lib", "cuda_parity"):
    if name not in found:
        sys.exit(f"gpu-check: cargo did not report the {name} test executable")
    print(f"{name}: {found[name]}")
PY
    rm -f "$json"
    if command -v strip >/dev/null; then
        strip --strip-debug "$BIN_DIR"/*
    fi
    ls -la "$BIN_DIR"
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
    if [ ! -x "$BIN_DIR/cuda_parity" ] || [ ! -x "$BIN_DIR/tensor-lib" ]; then
        echo "gpu-check: no test executables in $BIN_DIR; run 'scripts/gpu-check.sh build' on the build machine and carry target/gpu-check" | tee -a "$summary"
        exit 2
    fi

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

    local status=0
    run_one() {
        local name="$1"
        shift
        local log="$out/$name.log"
        echo "== $name $*" | tee -a "$summary"
        local start=$SECONDS
        timeout 150 "$BIN_DIR/$name" "$@" >"$log" 2>&1
        local rc=$?
        echo "exit status $rc after $((SECONDS - start)) s" | tee -a "$summary"
        grep -E '^test result:' "$log" | tee -a "$summary"
        grep -E '^test .* FAILED$|panicked at' "$log" | head -40 | tee -a "$summary"
        if grep -q 'skipped: no CUDA device' "$log"; then
            echo "GPU NOT USED: tests skipped because no CUDA device was usable:" | tee -a "$summary"
            grep -m1 -o 'skipped: no CUDA device.*' "$log" | tee -a "$summary"
            rc=3
        fi
        [ "$rc" -eq 0 ] || status=1
    }
    # The library's CUDA unit tests (loader, allocator reuse, kernel table) ...
    run_one tensor-lib cuda:: --nocapture --test-threads 1
    # ... and the parity suite.
    run_one cuda_parity --nocapture --test-threads 4

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
