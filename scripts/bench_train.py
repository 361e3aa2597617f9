#!/usr/bin/env python3
"""npm run bench:train: how fast scripts/train_feedback.py trains feedback here, and what that
means for ImageNet.

For the shipped backbone at 28 px and a torchvision ResNet-18 (presnet18.toml) at 224 px, it
runs the feedback trainer itself (predify/feedback_training.train) on seeded random pixels for
two short epochs and reports the second's images/s, the FLOPs of one training image (the
frozen backbone's forward to the top PCoder, the predictors' forward and backward, counted by
torch's profiler), and the epoch time these imply for ImageNet's 1 281 167 training images.
The GPU rows are estimates, not measurements: the FLOPs at a stated fraction of a GPU's peak.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path
from types import SimpleNamespace

sys.path.insert(0, str(Path(__file__).resolve().parent))

import numpy as np  # noqa: E402
import torch  # noqa: E402

from import_predify import build_network  # noqa: E402
from predify.feedback_training import Distributed, FeedbackLoss, Options, PixelSet, normalise, objective_batch, train  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
IMAGENET_TRAIN = 1_281_167
# Dense peaks used by docs/gpu.md (H200 SXM; an H100 SXM has the same compute): TF32 and BF16
# tensor cores. Training convolutions with cuDNN reach a fraction of that; 35% is assumed.
PEAK = {"TF32": 494e12, "BF16 (--amp)": 989e12}
UTILISATION = 0.35
# The pixel cache is 8-bit: H x W x C bytes an image; a node's volume read at this rate.
CACHE_BYTES = {"fashion 28x28x1": 28 * 28, "resnet18 224x224x3": 224 * 224 * 3}
READ_GBPS = 2.0

CASES = {
    "fashion-pc (shipped backbone), 28 px": dict(
        config=ROOT / "models/predify/fashion-pc.toml", backbone=None, backbone_module=f"{ROOT / 'models/predify/fashion_pc.py'}:build",
        size=28, channels=1, images=4096, batch=128,
    ),
    "ResNet-18 (presnet18.toml), 224 px": dict(
        config=ROOT / "models/predify/presnet18.toml", backbone="resnet18", backbone_module=None, size=224, channels=3, images=192, batch=32,
    ),
}  # fmt: skip


def network(case: dict):
    args = SimpleNamespace(
        config=str(case["config"]), backbone=case["backbone"], backbone_module=case["backbone_module"], weights=None, predictor_weights=None,
        random_weights=0, backbone_weights=None, input_size=case["size"], name=None, labels=None,
        mean=[0.5] * case["channels"], std=[0.25] * case["channels"], resize="cover", golden=0, c_seed=0,
    )  # fmt: skip
    if case["channels"] == 1 or case["backbone"] is None:
        args.labels = str(ROOT / "models/predify/fashion-labels.txt")
    return build_network(args)[0]


def training_flops(model, size: int, channels: int) -> float:
    """FLOPs of one image's training step (profiler-counted conv and matmul work, batch 8 / 8)."""
    pixels = torch.randint(0, 256, (8, size, size, channels), dtype=torch.uint8)
    x = normalise(pixels, torch.full((channels,), 0.5), torch.full((channels,), 0.25))
    loss = FeedbackLoss(model.predictors)
    with torch.profiler.profile(with_flops=True) as prof:
        inputs, targets = objective_batch("reconstruct", model.blocks, x, torch.full((channels,), 0.25), None)
        loss(inputs, targets).sum().backward()
    return sum(e.flops for e in prof.key_averages() if e.flops) / 8


def measure(name: str, case: dict, threads: int) -> dict:
    torch.manual_seed(0)
    model = network(case)
    flops = training_flops(model, case["size"], case["channels"])
    model.predictors.zero_grad(set_to_none=True)
    rng = np.random.default_rng(0)
    pixels = rng.integers(0, 256, (case["images"], case["size"], case["size"], case["channels"]), dtype=np.uint8)
    data = PixelSet(pixels, [], "random", {"kind": "random"})
    options = Options(epochs=2, batch_size=case["batch"], val_fraction=0.01, device="cpu")
    with tempfile.TemporaryDirectory() as state:
        record = train(model.blocks, model.backbone, model.predictors, data, [0.5] * case["channels"], [0.25] * case["channels"],
                       options, Path(state), {}, False, Distributed(), log=lambda line: None)  # fmt: skip
    rate = record["epochs"][-1]["imagesPerSecond"]
    gradient_bytes = sum(p.numel() for p in model.predictors.parameters()) * 4
    return {"name": name, "imagesPerSecond": rate, "gflopPerImage": flops / 1e9, "threads": threads, "batch": case["batch"], "gradientMB": gradient_bytes / 1e6}


def hours(seconds: float) -> str:
    if seconds >= 3600:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 60:.0f} min" if seconds >= 60 else f"{seconds:.0f} s"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--json", help="also write the figures to this file")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    import datetime
    import os

    rows = [measure(name, case, args.threads) for name, case in CASES.items()]
    print(f"npm run bench:train, {datetime.date.today()}, {os.cpu_count()} CPU cores, torch {torch.__version__}, {args.threads} threads\n")
    print("| backbone | batch | images/s here | GFLOP per training image | ImageNet epoch here | 50 epochs here |")
    print("| --- | --- | --- | --- | --- | --- |")
    for r in rows:
        epoch = IMAGENET_TRAIN / r["imagesPerSecond"]
        print(f"| {r['name']} | {r['batch']} | {r['imagesPerSecond']:.1f} | {r['gflopPerImage']:.3f} | {hours(epoch)} | {hours(50 * epoch)} |")
    print(f"\nGPU estimates, not measurements. Compute ceiling: the FLOPs above at {UTILISATION:.0%} of an H100/H200's dense peak.")
    sizes = ", ".join(f"{name}: {size / 1000:g} kB" for name, size in CACHE_BYTES.items())
    print(f"Feed ceiling: the pixel cache ({sizes} an image) read at {READ_GBPS:g} GB/s per node.")
    print("A node runs at the lower of the two; 8 GPUs on one node share its feed. Gradient all-reduce moves only the predictors' gradients.\n")
    print("| backbone | precision | compute ceiling, images/s per GPU | feed ceiling, images/s per node | 50 epochs, 1 GPU | 50 epochs, 8 GPUs (1 node) | grad MB a step |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for r, (key, cache) in zip(rows, CACHE_BYTES.items()):
        feed = READ_GBPS * 1e9 / cache
        for precision, peak in PEAK.items():
            rate = peak * UTILISATION / (r["gflopPerImage"] * 1e9)
            one, eight = min(rate, feed), min(8 * rate, feed)
            print(f"| {r['name']} | {precision} | {rate:,.0f} | {feed:,.0f} | {hours(50 * IMAGENET_TRAIN / one)} | {hours(50 * IMAGENET_TRAIN / eight)} | {r['gradientMB']:.1f} |")
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
