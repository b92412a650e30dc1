"""PyTorch peer of `cargo xtask bench unroll`: the same models, batch and steps, timed in plain
PyTorch (CPU or `--device cuda:0`, autograd, NCHW, the plain time loop every area at every step, as the PyTorch port of
the reference does). Run by hand where PyTorch is installed; never needed by the build or tests.

    python3 benches/torch_unroll.py --model rgc_shallow --size 96 --batch 16 --steps 16 [--json]
    python3 benches/torch_unroll.py --model compact_rgc            (28 px grey, 10 classes, 8 steps)
    python3 benches/torch_unroll.py --model feedforward_intermediate --size 96   (17 steps)

Models (mirroring topology::zoo): rgc_shallow (conv1 7x7/2 64 + pool, conv2 3x3 128 + pool,
conv3-5 3x3 conv + ELU -> hand-designed RGC -> pool, readout 2x2 VALID conv + mean),
compact_rgc and compact_feedforward (conv1 5x5 32 + pool, conv2/conv3 3x3 -> cell -> pool, GAP+FC),
feedforward_intermediate (the 11-area ResNet-18-like base: conv1 7x7/2 64 + pool, then blocks
conv2-conv10 of 3x3 conv + ELU -> 3x3 conv -> + input (1x1 no-bias projection where the channels
change) -> ELU, pools after conv4, conv6, conv7, conv10, GAP+FC to 1000; 224 px by default).
TF "SAME" pooling on odd sizes is emulated by padding bottom/right with -inf. The parameter count
must equal topology::zoo's (ZOO_PARAMS; the script stops otherwise), so both sides run one model.
"""
import argparse
import json
import math
import resource
import sys
import time

import torch
import torch.nn as nn
import torch.nn.functional as F


# Parameter counts of the same presets in topology::zoo (README's table; pinned by
# topology/tests/zoo_counts.rs). A model here with another count is not the same model.
ZOO_PARAMS = {
    "rgc_shallow": 23_956_840,
    "compact_rgc": 287_850,
    "compact_feedforward": 316_954,
    "feedforward_intermediate": 16_403_432,
}

# Input size and steps when not given: the sizes the comparisons use for rgc_shallow and the
# compact presets, the model's own (224 px, 17 steps) for the intermediate base.
DEFAULTS = {"rgc_shallow": (96, 16), "feedforward_intermediate": (224, 17)}


def same_pool(x):
    h, w = x.shape[-2:]
    return F.max_pool2d(F.pad(x, (0, w % 2, 0, h % 2), value=-math.inf), 2, 2)


class RGC(nn.Module):
    """c' = ELU((1-σ(Wcc*c))∘c + (1-σ(Whc*h))∘(Wxc*x)); h' = ELU((1-σ(Whh*h))∘h + (1-σ(Wch*c + Wuh*u))∘x)."""

    def __init__(self, c, u, bias):
        super().__init__()
        # rgc_shallow's cell convs carry no bias, as the reference's (compact_rgc's do).
        conv = lambda i, o: nn.Conv2d(i, o, 3, padding=1, bias=bias)
        self.cc, self.hc, self.xc = conv(c, c), conv(c, c), conv(c, c)
        self.hh, self.ch, self.uh = conv(c, c), conv(c, c), conv(u, c)

    def forward(self, x, u, state):
        c, h = state
        c2 = F.elu((1 - torch.sigmoid(self.cc(c))) * c + (1 - torch.sigmoid(self.hc(h))) * self.xc(x))
        h2 = F.elu((1 - torch.sigmoid(self.hh(h))) * h + (1 - torch.sigmoid(self.ch(c) + self.uh(u))) * x)
        return h2, (c2, h2)


class Area(nn.Module):
    def __init__(self, cin, cout, k, stride, cell, cell_bias=True):
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, k, stride, padding=k // 2)
        self.cell = RGC(cout, cin, cell_bias) if cell else None

    def forward(self, u, state):
        x = F.elu(self.conv(u))
        if self.cell is None:
            return same_pool(x), state
        if state is None:
            state = (torch.zeros_like(x), torch.zeros_like(x))
        h, state = self.cell(x, u, state)
        return same_pool(h), state


class Block(nn.Module):
    """An intermediate-zoo block with the identity cell: ELU(conv(u)) -> 3x3 conv -> + u (or its
    1x1 no-bias projection) -> ELU -> optional pool."""

    def __init__(self, cin, cout, pool):
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, 3, padding=1)
        self.post = nn.Conv2d(cout, cout, 3, padding=1)
        self.proj = nn.Conv2d(cin, cout, 1, bias=False) if cin != cout else None
        self.pool = pool

    def forward(self, u, state):
        x = F.elu(self.conv(u))
        y = F.elu(self.post(x) + (u if self.proj is None else self.proj(u)))
        return (same_pool(y) if self.pool else y), state


def build(model, size):
    if model == "feedforward_intermediate":
        channels = [64, 64, 128, 128, 256, 256, 512, 512, 512]
        pools = [False, False, True, False, True, True, False, False, True]
        areas, cin = [Area(3, 64, 7, 2, False)], 64
        for ch, pool in zip(channels, pools):
            areas.append(Block(cin, ch, pool))
            cin = ch
        return nn.ModuleList(areas), nn.Linear(512, 1000), 3, 1000, "fc"
    if model == "rgc_shallow":
        areas = [Area(3, 64, 7, 2, False), Area(64, 128, 3, 1, False), Area(128, 256, 3, 1, True, False),
                 Area(256, 256, 3, 1, True, False), Area(256, 512, 3, 1, True, False)]
        readout = nn.Conv2d(512, 1000, 2)
        return nn.ModuleList(areas), readout, 3, 1000, "conv"
    if model not in ("compact_rgc", "compact_feedforward"):
        sys.exit(f"unknown model {model}: one of {', '.join(ZOO_PARAMS)}")
    cell = model == "compact_rgc"
    ch = (32, 32, 64) if cell else (32, 128, 240)
    areas = [Area(1, ch[0], 5, 1, False), Area(ch[0], ch[1], 3, 1, cell), Area(ch[1], ch[2], 3, 1, cell)]
    return nn.ModuleList(areas), nn.Linear(ch[2], 10), 1, 10, "fc"


def unroll(areas, readout, kind, image, steps):
    outs = [None] * len(areas)
    states = [None] * len(areas)
    logits = None
    for t in range(steps):
        new = []
        for i, a in enumerate(areas):
            if i == 0:
                u = image
            elif outs[i - 1] is None:
                u = torch.zeros_like(prev_shape[i - 1])
            else:
                u = outs[i - 1]
            y, states[i] = a(u, states[i])
            new.append(y)
        last = outs[-1] if outs[-1] is not None else torch.zeros_like(new[-1])
        logits = readout(last).mean((2, 3)) if kind == "conv" else readout(last.mean((2, 3)))
        outs = new
    return logits


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--model", default="rgc_shallow")
    p.add_argument("--size", type=int, default=None)
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--steps", type=int, default=None)
    p.add_argument("--iters", type=int, default=3)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--json", action="store_true")
    p.add_argument("--device", default="cpu", help="cpu or cuda:N")
    a = p.parse_args()
    dev = torch.device(a.device)
    torch.backends.cudnn.benchmark = True  # as our backend, which searches cuDNN algorithms
    sync = (lambda: torch.cuda.synchronize(dev)) if dev.type == "cuda" else (lambda: None)
    torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    size = a.size or DEFAULTS.get(a.model, (28, 8))[0]
    steps = a.steps or DEFAULTS.get(a.model, (28, 8))[1]
    areas, readout, cin, classes, kind = build(a.model, size)
    n_params = sum(p.numel() for p in list(areas.parameters()) + list(readout.parameters()))
    if n_params != ZOO_PARAMS[a.model]:
        sys.exit(f"{a.model}: {n_params} parameters here, {ZOO_PARAMS[a.model]} in topology::zoo: "
                 "not the same model")
    areas, readout = areas.to(dev), readout.to(dev)
    image = torch.randn(a.batch, cin, size, size, device=dev)
    labels = torch.randint(0, classes, (a.batch,), device=dev)
    global prev_shape
    with torch.no_grad():
        prev_shape, u = [], image
        for ar in areas:
            u, _ = ar(u, None)
            prev_shape.append(u)
    params = list(areas.parameters()) + list(readout.parameters())
    opt = torch.optim.SGD(params, lr=1e-3)

    def fwd():
        with torch.no_grad():
            sync()
            t = time.perf_counter()
            unroll(areas, readout, kind, image, steps)
            sync()
            return time.perf_counter() - t

    def train():
        sync()
        t = time.perf_counter()
        opt.zero_grad()
        F.cross_entropy(unroll(areas, readout, kind, image, steps), labels).backward()
        opt.step()
        sync()
        return time.perf_counter() - t

    fwd(); tf = sorted(fwd() for _ in range(a.iters))[a.iters // 2]
    train(); tt = sorted(train() for _ in range(a.iters))[a.iters // 2]
    r = {
        "model": a.model, "size": size, "batch": a.batch, "steps": steps, "torch": torch.__version__,
        "threads": a.threads, "device": str(dev), "params": n_params, "zoo_params": ZOO_PARAMS[a.model],
        "forward_img_per_s": a.batch / tf, "train_img_per_s": a.batch / tt,
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }
    print(json.dumps(r, indent=1) if a.json else
          f"{a.model} {size}px b{a.batch} T{steps}: forward {r['forward_img_per_s']:.2f} img/s, "
          f"train {r['train_img_per_s']:.2f} img/s, params {r['params']} (topology::zoo: "
          f"{r['zoo_params']}), peak RSS {r['peak_rss_mb']:.0f} MB")


if __name__ == "__main__":
    main()
