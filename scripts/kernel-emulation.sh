#!/usr/bin/env bash
# Runs the CUDA kernels of tensor/src/cuda/kernels.cu on the CPU (scripts/kernel-emulation/)
# against double-precision references. Needs only g++ with C++20; no GPU, no CUDA toolkit.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
OUT_DIR="${TMPDIR:-/tmp}/convrnn-kernel-emulation"
mkdir -p "$OUT_DIR"
g++ -std=c++20 -O1 -pthread -Wall -Wno-unused-parameter -Wno-unknown-pragmas \
    -o "$OUT_DIR/kernel-emulation" "$ROOT/scripts/kernel-emulation/test.cpp"
"$OUT_DIR/kernel-emulation"
