#!/usr/bin/env python3
"""Times scikit-learn's PLSRegression on the fit that `cargo xtask bench fit --dump DIR` wrote
(bin 0, split 0 of the synthetic protocol) and compares its predictions with ours.

    cargo xtask bench fit --dump /tmp/fit
    python3 benches/sklearn_pls.py /tmp/fit [--components 25] [--bins 20 --splits 10]

Run by hand (needs numpy and scikit-learn); prints one JSON object.
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
    a = ap.parse_args()
    load = lambda name: np.load(os.path.join(a.dir, name))
    x, y, train, test, ours = (load(n) for n in ("x.npy", "y.npy", "train.npy", "test.npy", "pred.npy"))
    t = time.perf_counter()
    pls = PLSRegression(n_components=a.components, scale=False)
    pls.fit(x[train], y[train])
    pred = pls.predict(x[test])
    seconds = time.perf_counter() - t
    scale = np.abs(pred).max()
    print(json.dumps({
        "stimuli": x.shape[0],
        "features": x.shape[1],
        "neuroids": y.shape[1],
        "train": len(train),
        "one_fit_s": seconds,
        "protocol_estimate_s": seconds * a.bins * a.splits,
        "max_abs_diff_vs_ours": float(np.abs(pred - ours).max()),
        "max_rel_diff_vs_ours": float(np.abs(pred - ours).max() / scale),
        "threads": os.environ.get("OMP_NUM_THREADS", "default"),
    }, indent=2))


if __name__ == "__main__":
    main()
