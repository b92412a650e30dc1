#!/usr/bin/env python3
"""PyTorch peer of `cargo xtask bench ops`: times the same cases (benches/ops_shapes.json) on the
CPU with autograd, NCHW and 2 threads, forward and forward+backward, with the same FLOP and byte
formulas (the file's `doc` field) and the median of repetitions, and prints a table or JSON in
the same schema as the Rust command.

Run by hand where PyTorch is installed; nothing in the build or the tests needs it.

    python3 benches/torch_ops.py [--quick] [--json] [--filter conv3x3] [--threads 2]

The Rust command uses every core (or RAYON_NUM_THREADS); compare at equal thread counts, e.g.
`RAYON_NUM_THREADS=2 cargo xtask bench ops` against this script's default of 2 threads.
Measure on a quiet machine: another busy process on a 2-core machine slows everything severalfold.
"""

import argparse
import datetime
import json
import os
import platform
import statistics
import sys
import time

import torch
import torch.nn.functional as F

HERE = os.path.dirname(os.path.abspath(__file__))
SLOW_RUN_S = 1.0  # as in the Rust command: slower cases get at most three repetitions


def conv_out(c):
    kh, kw = c["kernel"]
    sh, sw = c["stride"]
    top, bottom, left, right = c["padding"]
    return (c["h"] + top + bottom - kh) // sh + 1, (c["w"] + left + right - kw) // sw + 1


def numel(shape):
    n = 1
    for d in shape:
        n *= d
    return n


def work(c):
    """(unit, forward work, forward+backward work): FLOPs or bytes, see the shape file's doc."""
    k = c["kind"]
    if k == "conv2d":
        ho, wo = conv_out(c)
        f = 2.0 * c["n"] * c["o"] * (c["c"] // c["groups"]) * c["kernel"][0] * c["kernel"][1] * ho * wo
        return "GFLOP/s", f, 3.0 * f
    if k == "matmul":
        f = 2.0 * c["m"] * c["k"] * c["n"]
        return "GFLOP/s", f, 3.0 * f
    b = 4.0 * numel(c["shape"])
    if k == "unary":
        return "GB/s", 2 * b, 5 * b
    if k == "binary":
        bwd = 3 if c["op"] in ("add", "sub") else 5
        return "GB/s", 3 * b, (3 + bwd) * b
    raise ValueError(f"unknown kind {k!r} in case {c['name']}")


def describe(c):
    k = c["kind"]
    if k == "conv2d":
        g = "" if c["groups"] == 1 else (" depthwise" if c["groups"] == c["c"] == c["o"] else f" g{c['groups']}")
        return f"{c['n']}x{c['c']}x{c['h']}x{c['w']}→{c['o']} {c['kernel'][0]}x{c['kernel'][1]} s{c['stride'][0]}{g}"
    if k == "matmul":
        return f"{c['m']}x{c['k']} · {c['k']}x{c['n']}"
    return f"{c['op']} " + "x".join(map(str, c["shape"]))


def var(gen, shape, fn=None):
    t = torch.randn(*shape, generator=gen)
    if fn is not None:
        t = fn(t)
    return t.requires_grad_(True)


def build(c):
    """(inputs, f) where f(*inputs) computes the case's op."""
    gen = torch.Generator().manual_seed(7)
    k = c["kind"]
    if k == "conv2d":
        g = c["groups"]
        kh, kw = c["kernel"]
        x = var(gen, (c["n"], c["c"], c["h"], c["w"]))
        scale = (c["c"] // g * kh * kw) ** -0.5
        w = var(gen, (c["o"], c["c"] // g, kh, kw), lambda t: t * scale)
        b = var(gen, (c["o"],), lambda t: t * 0.1)
        top, bottom, left, right = c["padding"]
        stride = tuple(c["stride"])
        if top == bottom and left == right:
            f = lambda x, w, b: F.conv2d(x, w, b, stride=stride, padding=(top, left), groups=g)
        else:  # asymmetric (TF "SAME"-like) padding needs an explicit pad
            f = lambda x, w, b: F.conv2d(F.pad(x, (left, right, top, bottom)), w, b, stride=stride, groups=g)
        return [x, w, b], f
    if k == "matmul":
        return [var(gen, (c["m"], c["k"])), var(gen, (c["k"], c["n"]))], torch.matmul
    if k == "unary":
        op = {"sigmoid": torch.sigmoid, "tanh": torch.tanh, "elu": F.elu, "relu": F.relu, "exp": torch.exp}[c["op"]]
        return [var(gen, c["shape"])], op
    if k == "binary":
        op = {"add": torch.add, "sub": torch.sub, "mul": torch.mul, "div": torch.div}[c["op"]]
        return [var(gen, c["shape"]), var(gen, c["shape"], lambda t: t.abs() + 0.5)], op
    raise ValueError(f"unknown kind {k!r}")


def median_secs(fn, warmup, reps):
    slowest = 0.0
    for _ in range(max(warmup, 1)):
        t0 = time.perf_counter()
        fn()
        slowest = max(slowest, time.perf_counter() - t0)
    if slowest > SLOW_RUN_S:
        reps = min(reps, 3)
    times = []
    for _ in range(max(reps, 1)):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def measure(c, warmup, reps):
    inputs, f = build(c)
    ones = torch.ones_like(f(*inputs))

    def fwd():
        f(*inputs)

    def fwd_bwd():
        # autograd.grad returns fresh gradients (no accumulation into .grad), like the engine.
        torch.autograd.grad(f(*inputs), inputs, ones)

    return median_secs(fwd, warmup, reps), median_secs(fwd_bwd, warmup, reps)


def cpu_model():
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                key, _, value = line.partition(":")
                if key.strip() == "model name":
                    return value.strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def table(rows):
    header = ["case", "shape", "fwd ms", "fwd", "fwd+bwd ms", "fwd+bwd"]
    body = [
        [r["name"], r["shape"], f"{r['fwd_ms']:.2f}", f"{r['fwd_rate']:.1f} {r['unit']}",
         f"{r['fwd_bwd_ms']:.2f}", f"{r['fwd_bwd_rate']:.1f} {r['unit']}"]
        for r in rows
    ]
    width = [max(len(x[i]) for x in [header] + body) for i in range(len(header))]

    def line(cells):
        return "  ".join(c.ljust(w) if i < 2 else c.rjust(w) for i, (c, w) in enumerate(zip(cells, width))).rstrip()

    return "\n".join(line(x) for x in [header] + body) + "\n"


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--json", action="store_true", help="JSON on stdout (the table goes to stderr)")
    ap.add_argument("--quick", action="store_true", help="1 warm-up and 3 timed runs instead of 2 and 7")
    ap.add_argument("--filter", help="only cases whose name contains this text")
    ap.add_argument("--threads", type=int, default=2, help="torch.set_num_threads (default 2)")
    ap.add_argument("--shapes", default=os.path.join(HERE, "ops_shapes.json"))
    args = ap.parse_args()

    torch.set_num_threads(args.threads)
    with open(args.shapes) as fh:
        cases = json.load(fh)["cases"]
    cases = [c for c in cases if args.filter is None or args.filter in c["name"]]
    if not cases:
        sys.exit(f"no case of {args.shapes} matches the filter")
    warmup, reps = (1, 3) if args.quick else (2, 7)

    rows = []
    for c in cases:
        print(f"{c['name']:<24} ", end="", file=sys.stderr, flush=True)
        t0 = time.perf_counter()
        fwd_s, fwd_bwd_s = measure(c, warmup, reps)
        print(f"{time.perf_counter() - t0:.1f} s", file=sys.stderr)
        unit, wf, wfb = work(c)
        rows.append(dict(
            name=c["name"], kind=c["kind"], shape=describe(c), unit=unit,
            fwd_work=wf, fwd_bwd_work=wfb, fwd_ms=fwd_s * 1e3, fwd_bwd_ms=fwd_bwd_s * 1e3,
            fwd_rate=wf / fwd_s / 1e9, fwd_bwd_rate=wfb / fwd_bwd_s / 1e9, skipped=None,
        ))

    machine = dict(cpu=cpu_model(), cores=os.cpu_count(), threads=torch.get_num_threads())
    text = table(rows)
    if args.json:
        print("\n" + text, file=sys.stderr, end="")
        report = dict(
            implementation=f"pytorch-{torch.__version__}",
            command="python3 " + " ".join(sys.argv),
            device="cpu",
            date=datetime.datetime.now(datetime.timezone.utc).date().isoformat(),
            quick=args.quick,
            machine=machine,
            results=rows,
        )
        print(json.dumps(report, indent=2, ensure_ascii=False))
    else:
        print(f"\nPyTorch {torch.__version__}, {machine['cpu']} ({machine['cores']} logical CPUs, "
              f"{machine['threads']} threads)\n\n{text}", end="")


if __name__ == "__main__":
    main()
