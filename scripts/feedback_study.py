#!/usr/bin/env python3
"""Why does the default model gain so little under noise? Compare feedback-module designs.

    /usr/bin/python3 scripts/feedback_study.py [--variants linear,deep] [--epochs 4] [--images 1000]

The backbone of models/fashion-pc/checkpoint.pt stays frozen, as the spec requires. For each
predictor design (`--variants NAME[:denoise]`) the feedback modules are trained on training
images 0..49 999 with the spec's objective, or with train_fashion.py's denoising one, then the dynamics run (batched PyTorch, autograd gradients, the spec's update) on
held-out validation images 50 000..50 000+N, clean and under the four noises at severities 1..5
(numpy versions of src/robustness/corruptions.ts, quantised to 8 bits like an upload), over a
small grid of hyperparameters. Only validation images are used: the test set is for
`npm run eval`. Prints, per design and setting, the noise-mean gain and clean change at the
best timestep whose clean change is within 0.5 points.
"""

from __future__ import annotations

import argparse
import copy
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import numpy as np  # noqa: E402
import torch  # noqa: E402

from predify.config import parse_config  # noqa: E402
from predify.data import load_fashion, normalise  # noqa: E402
from predify.model import PredifyModel  # noqa: E402
from train_fashion import feedback_loss, train_feedback  # noqa: E402

MODEL_DIR = Path(__file__).resolve().parents[1] / "models" / "fashion-pc"

UP = {"type": "upsample", "mode": "bilinear"}


def conv(out: int | None = None) -> dict:
    layer = {"type": "conv", "kernel": 3, "padding": 1}
    if out is not None:
        layer["out"] = out
    return layer


RELU = {"type": "relu"}

# PCoder 1 predicts the image (any sign); PCoders 2, 3 predict ReLU outputs (non-negative).
VARIANTS: dict[str, list[list[dict]]] = {
    "linear": [[conv()], [UP, conv()], [UP, conv()]],
    # A hidden layer at the upper level's own resolution: about 1.5x the linear cost.
    "deep": [[conv(16), RELU, conv()], [conv(64), RELU, UP, conv()], [conv(128), RELU, UP, conv()]],
}

NOISES = {
    "gaussian-noise": [0.08, 0.12, 0.18, 0.26, 0.38],
    "shot-noise": [60, 25, 12, 5, 3],
    "impulse-noise": [0.03, 0.06, 0.09, 0.17, 0.27],
    "speckle-noise": [0.15, 0.2, 0.35, 0.45, 0.6],
}


def corrupt(x: np.ndarray, kind: str, c: float, rng: np.random.Generator) -> np.ndarray:
    if kind == "gaussian-noise":
        out = x + c * rng.standard_normal(x.shape)
    elif kind == "shot-noise":
        out = rng.poisson(x * c) / c
    elif kind == "impulse-noise":
        u = rng.random(x.shape)
        out = np.where(u < c / 2, 0.0, np.where(u < c, 1.0, x))
    else:
        out = x + x * c * rng.standard_normal(x.shape)
    return np.round(np.clip(out, 0, 1) * 255).astype(np.uint8)


def dynamics(model: PredifyModel, x: torch.Tensor, hyper: list[tuple[float, float, float]], steps: int) -> list[torch.Tensor]:
    """Predicted classes at t = 0..steps for a batch: the spec's update, per-sample errors."""
    n = len(model.blocks)

    def feedback(i: int, r: torch.Tensor, below: torch.Tensor):
        r = r.detach().requires_grad_(True)
        with torch.enable_grad():
            p = model.predictors[i](r)
            e = ((p - below) ** 2).flatten(1).mean(1).sum()  # sum of per-sample means
            (g,) = torch.autograd.grad(e, r)
        return p.detach(), g.detach()

    with torch.no_grad():
        reps, h = [], x
        for block in model.blocks:
            h = block(h)
            reps.append(h)
        fb = [feedback(i, reps[i], x if i == 0 else reps[i - 1]) for i in range(n)]
        out = [model.head(reps[-1]).argmax(1)]
        for _ in range(steps):
            for i in range(n):
                beta, lam, alpha = hyper[i]
                below = x if i == 0 else reps[i - 1]
                r = beta * model.blocks[i](below) + (1 - beta - lam) * reps[i] - alpha * model.info[i].scale * fb[i][1]
                if i < n - 1:
                    r = r + lam * fb[i + 1][0]
                reps[i] = r
                fb[i] = feedback(i, r, below)
            out.append(model.head(reps[-1]).argmax(1))
    return out


SETTINGS: dict[str, list[tuple[float, float, float]]] = {
    "paper": [(0.8, 0.1, 0.01), (0.8, 0.1, 0.01), (0.8, 0.0, 0.01)],
    "pc1-0.2": [(0.8, 0.2, 0.1), (1.0, 0.0, 0.1), (0.6, 0.0, 0.1)],
    "shared-0.2": [(0.7, 0.2, 0.1), (0.7, 0.2, 0.1), (0.7, 0.0, 0.1)],
    "pc1-0.4": [(0.6, 0.4, 0.1), (0.8, 0.2, 0.1), (0.6, 0.0, 0.1)],
    "pc12-0.4": [(0.5, 0.4, 0.1), (0.5, 0.4, 0.1), (0.6, 0.0, 0.1)],
}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--variants", default="deep,linear:denoise,deep:denoise")
    ap.add_argument("--severities", default="2,4")
    ap.add_argument("--settings", default=",".join(SETTINGS), help=f"some of {', '.join(SETTINGS)}")
    ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument("--images", type=int, default=500)
    ap.add_argument("--steps", type=int, default=6)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--save", type=Path, help="write the last variant's checkpoint here")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)

    state = torch.load(MODEL_DIR / "checkpoint.pt", map_location="cpu")
    raw = state["config"]
    mean, std = raw["input"]["mean"][0], raw["input"]["std"][0]
    images, labels = load_fashion("train")
    x_train = normalise(images[:50_000], mean, std)
    val = np.arange(50_000, 50_000 + args.images)
    val_pixels = images[val].astype(np.float64) / 255
    y_val = torch.from_numpy(labels[val])
    x_clean = normalise(images[val], mean, std)
    noisy = []
    for kind, values in NOISES.items():
        for s, c in enumerate(values):
            if str(s + 1) not in args.severities.split(","):
                continue
            rng = np.random.default_rng(1000 * s + len(kind))
            noisy.append(normalise(corrupt(val_pixels, kind, c, rng), mean, std))

    for variant in args.variants.split(","):
        name, _, training = variant.partition(":")
        cfg_raw = copy.deepcopy(raw)
        for pc, layers in zip(cfg_raw["pcoders"], VARIANTS[name]):
            pc["predictor"] = layers
        torch.manual_seed(0)
        model = PredifyModel(parse_config(cfg_raw))
        model.backbone.load_state_dict(state["backbone"])
        started = time.time()
        objective = "denoise" if training == "denoise" else "reconstruct"
        train_feedback(model, x_train, args.epochs, torch.Generator().manual_seed(0), objective, std)
        model.eval()
        with torch.no_grad():
            fb = float(feedback_loss(model, x_clean))
        print(f"\n== {variant}: feedback loss on validation {fb:.4f}, {time.time() - started:.0f}s to train", flush=True)
        for setting in args.settings.split(","):
            hyper = SETTINGS[setting]
            clean = torch.stack([(p == y_val).float().mean() for p in dynamics(model, x_clean, hyper, args.steps)]) * 100
            acc = torch.zeros(args.steps + 1)
            for xn in noisy:
                acc += torch.stack([(p == y_val).float().mean() for p in dynamics(model, xn, hyper, args.steps)]) * 100
            acc /= len(noisy)
            ok = [t for t in range(args.steps + 1) if clean[t] >= clean[0] - 0.5 - 1e-9]
            best = max(ok, key=lambda t: acc[t])
            curve = " ".join(f"{float(a - acc[0]):+.1f}" for a in acc)
            print(
                f"{setting:>11}: best t={best} noise {float(acc[best] - acc[0]):+.2f} clean {float(clean[best] - clean[0]):+.2f}"
                f" | noise gain by t: {curve} | clean by t: {' '.join(f'{float(c - clean[0]):+.1f}' for c in clean)}",
                flush=True,
            )
        if args.save:
            torch.save(model.checkpoint(), args.save.with_name(f"{args.save.stem}-{name}-{training or 'spec'}.pt"))


if __name__ == "__main__":
    main()
