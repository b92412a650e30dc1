#!/usr/bin/env python3
"""Times scikit-learn's PLSRegression on the fit that `cargo xtask bench fit --dump DIR` wrote
(bin 0, split 0 of the synthetic protocol) and compares its predictions with ours.

    cargo xtask bench fit --dump /tmp/fit --json > /tmp/fit-ours.json
    python3 benches/sklearn_pls.py /tmp/fit --ours /tmp/fit-ours.json [--components 25] [--bins 20 --splits 10]

Run by hand (needs numpy and scikit-learn); prints one JSON object. With `--ours` (the JSON that
`bench fit --json` printed) it adds our protocol's seconds and the ratios, wall-clock and CPU
(user + system, every thread), so one run of the two commands is the side-by-side comparison.
"""
import argparse
import json
import os
import time

import numpy as np
from sklearn.cross_decomposition import PLSRegression


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("dir")
    ap.add_argument("--components", type=int, default=25)
    ap.add_argument("--bins", type=int, default=20)
    ap.add_argument("--splits", type=int, default=10)
    ap.add_argument("--ours", help="the JSON `cargo xtask bench fit --json` printed")
    a = ap.parse_args()
    load = lambda name: np.load(os.path.join(a.dir, name))
    x, y, train, test, ours = (load(n) for n in ("x.npy", "y.npy", "train.npy", "test.npy", "pred.npy"))
    t, cpu = time.perf_counter(), time.process_time()
    pls = PLSRegression(n_components=a.components, scale=False)
    pls.fit(x[train], y[train])
    pred = pls.predict(x[test])
    seconds = time.perf_counter() - t
    cpu_seconds = time.process_time() - cpu
    scale = np.abs(pred).max()
    out = {
        "stimuli": x.shape[0],
        "features": x.shape[1],
        "neuroids": y.shape[1],
        "train": len(train),
        "one_fit_s": seconds,
        "one_fit_cpu_s": cpu_seconds,
        "protocol_estimate_s": seconds * a.bins * a.splits,
        "protocol_estimate_cpu_s": cpu_seconds * a.bins * a.splits,
        "max_abs_diff_vs_ours": float(np.abs(pred - ours).max()),
        "max_rel_diff_vs_ours": float(np.abs(pred - ours).max() / scale),
        "threads": os.environ.get("OMP_NUM_THREADS", "default"),
    }
    if a.ours:
        with open(a.ours) as f:
            ours = json.load(f)
        out["ours"] = {k: ours.get(k) for k in ("protocol_s", "protocol_cpu_s", "one_fit_s", "cpu", "gemm_kernel")}
        out["speedup_wall"] = out["protocol_estimate_s"] / ours["protocol_s"]
        if ours.get("protocol_cpu_s"):
            out["speedup_cpu"] = out["protocol_estimate_cpu_s"] / ours["protocol_cpu_s"]
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
