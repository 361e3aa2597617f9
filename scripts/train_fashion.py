#!/usr/bin/env python3
"""Train the default model, fashion-pc, and export it to models/fashion-pc/.

    /usr/bin/python3 scripts/train_fashion.py                   # full run (~25 min on 2 cores)
    /usr/bin/python3 scripts/train_fashion.py --feedback-only   # keep checkpoint.pt's backbone
    /usr/bin/python3 scripts/train_fashion.py --export-only     # re-export from checkpoint.pt

1. The backbone (fashion-cnn) is trained supervised on training images 0..49 999.
2. The backbone is frozen and the feedback modules D_i are trained without labels by the one
   feedback trainer (predify/feedback_training.py, what scripts/train_feedback.py runs for any
   CNN). With --feedback-objective reconstruct, exactly the spec's objective: minimise
   sum_i mean((p_i(0) - r_{i-1}(0))^2). With denoise (the default), half of each batch goes
   up the backbone with Gaussian pixel noise (sigma uniform in [0, 0.3]) and D_i must still
   predict the CLEAN r_{i-1} (scripts/feedback_study.py and docs/robustness.md compare the two).
   The shipped weights were trained before the trainer was shared (its batches and noise were
   drawn differently): a rerun gives feedback trained the same way, not the same bits.
3. checkpoint.pt, the ONNX graphs, manifest.json, golden.json and a few sample images are
   written to the model directory. Everything is seeded: a rerun gives the same weights.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import numpy as np  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

from predify.config import load_config  # noqa: E402
from predify.data import load_fashion, normalise  # noqa: E402
from predify.export import export_model  # noqa: E402
from predify.feedback_training import Distributed, Options, PixelSet, flush_denormals, representations, train  # noqa: E402
from predify.model import PredifyModel  # noqa: E402

MODEL_DIR = Path(__file__).resolve().parents[1] / "models" / "fashion-pc"
SAMPLES = [0, 1, 2, 3, 4, 8, 17, 23]  # test-set indices used as golden cases and shipped samples


def batches(n: int, size: int, gen: torch.Generator):
    order = torch.randperm(n, generator=gen)
    for start in range(0, n, size):
        yield order[start : start + size]


def evaluate(model: PredifyModel, x: torch.Tensor, y: torch.Tensor) -> float:
    model.eval()
    correct = 0
    with torch.no_grad():
        for start in range(0, len(x), 1000):
            correct += int((model.feedforward(x[start : start + 1000]).argmax(1) == y[start : start + 1000]).sum())
    return correct / len(x)


def fit(what: str, loss_of, opt, sched, n: int, epochs: int, gen: torch.Generator) -> None:
    """Minibatch training: loss_of(indices) gives the loss of one batch of 128."""
    for epoch in range(epochs):
        started, total = time.time(), 0.0
        for idx in batches(n, 128, gen):
            loss = loss_of(idx)
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
            total += float(loss) * len(idx)
        print(f"{what} epoch {epoch + 1}/{epochs}: loss {total / n:.4f} ({time.time() - started:.0f}s)", flush=True)


def train_backbone(model: PredifyModel, x: torch.Tensor, y: torch.Tensor, epochs: int, gen: torch.Generator) -> None:
    opt = torch.optim.Adam(model.backbone.parameters(), lr=2e-3)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=3e-3, total_steps=epochs * ((len(x) + 127) // 128))

    def loss_of(idx: torch.Tensor) -> torch.Tensor:
        xb = x[idx]
        flip = torch.rand(len(idx), generator=gen) < 0.5  # left-right flips keep the class
        xb = torch.where(flip[:, None, None, None], xb.flip(3), xb)
        return F.cross_entropy(model.backbone(xb), y[idx], label_smoothing=0.05)

    model.backbone.train()
    fit("backbone", loss_of, opt, sched, len(x), epochs, gen)
    model.backbone.eval()


def feedback_loss(model: PredifyModel, xb: torch.Tensor) -> torch.Tensor:
    """The spec's unsupervised objective: sum_i mean((p_i(0) - r_{i-1}(0))^2)."""
    reps = representations(model.blocks, xb)
    return sum(F.mse_loss(model.predictors[i](reps[i + 1]), reps[i]) for i in range(len(model.blocks)))


def train_feedback(model: PredifyModel, images: np.ndarray, epochs: int, objective: str, mean: float, std: float, state_dir: Path) -> dict:
    """The feedback, by the one feedback trainer (predify/feedback_training.py, which
    scripts/train_feedback.py runs for any CNN): Adam, lr 1e-3, one cosine over the run, batch 128,
    2% of the images held out to report the reconstruction loss."""
    options = Options(objective=objective, epochs=epochs, batch_size=128, lr=1e-3, weight_decay=0.0, optimizer="adam", schedule="cosine", val_fraction=0.02)
    data = PixelSet(np.ascontiguousarray(images)[..., None], [], "", {"kind": "fashion-mnist"})
    return train(model.blocks, model.backbone, model.predictors, data, [mean], [std], options, state_dir, {}, False, Distributed())


def write_samples(images: np.ndarray, labels: np.ndarray, names: list[str], out: Path) -> list[str]:
    from PIL import Image

    out.mkdir(exist_ok=True)
    files = []
    for k, idx in enumerate(SAMPLES):
        name = f"{idx:04d}-{names[labels[idx]].lower().replace('/', '-').replace(' ', '-')}.png"
        Image.fromarray(images[idx]).save(out / name)
        files.append(name)
    return files


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, default=MODEL_DIR)
    ap.add_argument("--epochs", type=int, default=8)
    ap.add_argument("--feedback-epochs", type=int, help="default 4; with --export-only, as recorded before")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--export-only", action="store_true", help="skip training, export checkpoint.pt")
    ap.add_argument("--feedback-only", action="store_true", help="keep checkpoint.pt's backbone, retrain the feedback")
    ap.add_argument("--drop-profiles", action="store_true", help="with --export-only: a new checkpoint, forget its profiles")
    ap.add_argument(
        "--feedback-objective",
        choices=["denoise", "reconstruct"],
        help="default denoise; with --export-only, as recorded before",
    )
    ap.add_argument(
        "--holdout",
        type=int,
        default=10_000,
        help="the last N training images are held out of training: the validation split of npm run calibrate",
    )
    args = ap.parse_args()
    flush_denormals()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    gen = torch.Generator().manual_seed(0)

    cfg = load_config(args.out / "config.json")
    mean, std = cfg.input.mean[0], cfg.input.std[0]
    test_images, test_labels = load_fashion("t10k")
    x_test, y_test = normalise(test_images, mean, std), torch.from_numpy(test_labels)

    manifest_path = args.out / "manifest.json"
    previous_training = json.loads(manifest_path.read_text()).get("training", {}) if manifest_path.exists() else {}
    if args.export_only:
        # The record says how checkpoint.pt was trained: as before, unless told otherwise.
        args.feedback_epochs = args.feedback_epochs or previous_training.get("feedbackEpochs")
        args.feedback_objective = args.feedback_objective or previous_training.get("feedbackObjective", "reconstruct")
    else:
        args.feedback_epochs = args.feedback_epochs or 4
        args.feedback_objective = args.feedback_objective or "denoise"

    if args.export_only:
        model = PredifyModel.from_checkpoint(args.out / "checkpoint.pt")
    else:
        train_images, train_labels = load_fashion("train")
        keep = len(train_images) - args.holdout
        x_train = normalise(train_images[:keep], mean, std)
        y_train = torch.from_numpy(train_labels[:keep])
        print(f"training on training images 0..{keep - 1}; {keep}..{len(train_images) - 1} held out", flush=True)
        model = PredifyModel(cfg)
        if args.feedback_only:
            # The predictors come from config.json (they may have changed); the backbone stays.
            model.backbone.load_state_dict(torch.load(args.out / "checkpoint.pt", map_location="cpu")["backbone"])
        else:
            train_backbone(model, x_train, y_train, args.epochs, gen)
        print(f"clean test accuracy (t = 0): {evaluate(model, x_test, y_test):.4f}", flush=True)
        import tempfile

        with tempfile.TemporaryDirectory() as state:
            train_feedback(model, train_images[:keep], args.feedback_epochs, args.feedback_objective, mean, std, Path(state))
        torch.save(model.checkpoint(), args.out / "checkpoint.pt")

    accuracy = evaluate(model, x_test, y_test)
    with torch.no_grad():
        fb = float(sum(feedback_loss(model, x_test[s : s + 1000]) for s in range(0, len(x_test), 1000)) / 10)
    print(f"clean test accuracy (t = 0): {accuracy:.4f}; feedback loss on test: {fb:.4f}")

    samples = write_samples(test_images, test_labels, cfg.labels, args.out / "samples")
    export_model(
        model,
        args.out,
        golden_inputs=x_test[SAMPLES],
        golden_names=samples,
        golden_labels=[int(test_labels[i]) for i in SAMPLES],
        # Profiles calibrated for the old weights do not carry over to new ones.
        keep_profiles=args.export_only and not args.drop_profiles,
        extra={
            "training": {
                "script": "scripts/train_fashion.py",
                "dataset": "Fashion-MNIST (Debian dataset-fashion-mnist)",
                "trainingImages": f"Fashion-MNIST train 0..{59_999 - args.holdout}",
                "heldOut": f"Fashion-MNIST train {60_000 - args.holdout}..59999 (validation for npm run calibrate)",
                "feedbackObjective": args.feedback_objective,
                "feedbackEpochs": args.feedback_epochs,
                "cleanTestAccuracy": round(accuracy, 4),
                "feedbackTestLoss": round(fb, 5),
            }
        },
    )
    print(json.dumps({"model": str(args.out), "accuracy": accuracy, "samples": samples}))


if __name__ == "__main__":
    main()
