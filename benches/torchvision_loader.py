"""torchvision peer of `cargo xtask bench loader`: the same decoded-and-augmented images per
second, on the same files, with torchvision's ImageFolder + DataLoader (PIL decoding) and the
standard ImageNet transforms. Run by hand where PyTorch and torchvision are installed; never
needed by the build or tests.

    cargo xtask bench loader                      # writes target/bench-loader/folder once
    python3 benches/torchvision_loader.py --data target/bench-loader/folder --workers 1

--workers 0 decodes in this process; --workers N in N worker processes (torchvision's usual
set-up), whose CPU time is counted through RUSAGE_CHILDREN once they have exited (the
DataLoader is not persistent, so they exit at the end of each epoch). Reported: wall-clock
images/s, images/s per worker, and images per CPU-second (this process plus its children), the
figure to compare on a shared machine.
"""
import argparse
import json
import resource
import time

import torch
from torch.utils.data import DataLoader
from torchvision import datasets, transforms

MEAN = [0.485, 0.456, 0.406]
STD = [0.229, 0.224, 0.225]


def cpu_seconds():
    own = resource.getrusage(resource.RUSAGE_SELF)
    kids = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--data", default="target/bench-loader/folder")
    p.add_argument("--transform", choices=["train", "eval"], default="train")
    p.add_argument("--workers", type=int, default=1)
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--epochs", type=int, default=2)
    p.add_argument("--json", action="store_true")
    a = p.parse_args()
    torch.set_num_threads(1)
    if a.transform == "train":
        t = transforms.Compose([
            transforms.RandomResizedCrop(224),
            transforms.RandomHorizontalFlip(),
            transforms.ToTensor(),
            transforms.Normalize(MEAN, STD),
        ])
    else:
        t = transforms.Compose([
            transforms.Resize(256),
            transforms.CenterCrop(224),
            transforms.ToTensor(),
            transforms.Normalize(MEAN, STD),
        ])
    ds = datasets.ImageFolder(a.data, transform=t)
    loader = DataLoader(ds, batch_size=a.batch, shuffle=a.transform == "train",
                        num_workers=a.workers, drop_last=False)
    cpu0, t0 = cpu_seconds(), time.perf_counter()
    images = 0
    for _ in range(a.epochs):
        for x, _y in loader:
            images += x.shape[0]
    seconds = time.perf_counter() - t0
    cpu = cpu_seconds() - cpu0
    r = {
        "transform": a.transform,
        "workers": a.workers,
        "batch": a.batch,
        "images": images,
        "seconds": seconds,
        "cpu_seconds": cpu,
        "img_per_s": images / seconds,
        "img_per_s_per_worker": images / seconds / max(a.workers, 1),
        "img_per_cpu_s": images / cpu,
        "cpu_ms_per_image": 1e3 * cpu / images,
        "torch": torch.__version__,
        "torchvision": __import__("torchvision").__version__,
        "pillow": __import__("PIL").__version__,
    }
    if a.json:
        print(json.dumps(r, indent=2))
    else:
        print(f"torchvision {a.transform}, {a.workers} worker(s): {images} images in "
              f"{seconds:.2f} s = {r['img_per_s']:.1f} img/s ({r['img_per_s_per_worker']:.1f} per "
              f"worker); CPU {cpu:.2f} s = {r['cpu_ms_per_image']:.2f} ms per image = "
              f"{r['img_per_cpu_s']:.1f} img per CPU-second")


if __name__ == "__main__":
    main()
