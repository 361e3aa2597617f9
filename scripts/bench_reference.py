#!/usr/bin/env python3
"""Throughput of the PyTorch reference dynamics (autograd), for the engine benchmark.

    /usr/bin/python3 scripts/bench_reference.py --model models/fashion-pc --batches 1 8 32 --timesteps 8 --threads 2

Prints JSON: for each batch size, sample-timesteps per second (batch x (T + 1) / seconds).
Batches above one use the per-sample error of the spec: the gradient of sum_b e_b with
respect to the batch's representations is each sample's own g_i.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import torch  # noqa: E402

from predify.model import PredifyModel, calibrate_batchnorm  # noqa: E402
from predify.config import parse_config  # noqa: E402


def through_host(tensors: list) -> list:
    """The state as the engine's calls move it: to the host and back after every timestep."""
    return [t.cpu().to(t.device) for t in tensors]


def dynamics(model: PredifyModel, x: torch.Tensor, timesteps: int, via_host: bool = False) -> torch.Tensor:
    n = len(model.info)

    def feedback(i, r, below):
        r = r.detach().requires_grad_(True)
        with torch.enable_grad():
            p = model.predictors[i](r)
            e = ((p - below) ** 2).flatten(1).mean(1)
            (g,) = torch.autograd.grad(e.sum(), r)
        return p.detach(), g

    with torch.no_grad():
        reps, h = [], x
        for block in model.blocks:
            h = block(h)
            reps.append(h)
        preds, grads = zip(*(feedback(i, reps[i], x if i == 0 else reps[i - 1]) for i in range(n)))
        preds, grads = list(preds), list(grads)
        logits = model.head(reps[-1])
        for _ in range(timesteps):
            for i, pc in enumerate(model.info):
                below = x if i == 0 else reps[i - 1]
                r = pc.beta * model.blocks[i](below) + (1 - pc.beta - pc.lam) * reps[i] - pc.alpha * pc.scale * grads[i]
                if i < n - 1:
                    r = r + pc.lam * preds[i + 1]
                reps[i] = r
                preds[i], grads[i] = feedback(i, r, below)
            logits = model.head(reps[-1])
            if via_host:
                reps, preds, grads = through_host(reps), through_host(preds), through_host(grads)
                logits = logits.cpu()
    return logits


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", required=True, help="model directory with checkpoint.pt, a config .json or a Predify .toml (random weights)")
    ap.add_argument("--batches", type=int, nargs="+", default=[1, 8, 32])
    ap.add_argument("--timesteps", type=int, default=8)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--seconds", type=float, default=3.0, help="minimum measuring time per batch size")
    ap.add_argument("--input-size", type=int)
    ap.add_argument("--backbone", default="vgg16", help="with a Predify .toml: vgg16 or efficientnet_b0")
    ap.add_argument("--warmup", type=int, default=1, help="warm-up runs (T = 1) before measuring")
    ap.add_argument("--device", default="cpu", help="cpu or cuda (docs/gpu.md: scripts/gpu-check.sh)")
    ap.add_argument("--tf32", action="store_true", help="on CUDA, let matmuls and convolutions use TF32")
    ap.add_argument(
        "--state-through-host",
        action="store_true",
        help="copy the state to the host and back after every timestep, as per-call engines do",
    )
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    if args.device.startswith("cuda"):
        torch.backends.cuda.matmul.allow_tf32 = args.tf32
        torch.backends.cudnn.allow_tf32 = args.tf32

    path = Path(args.model)
    if path.suffix == ".toml":
        # A Predify TOML with seeded random weights, built exactly as import_predify.py builds it.
        import import_predify

        model, _, _ = import_predify.build_network(
            import_predify.parse_args(
                ["--config", str(path), "--backbone", args.backbone, "--random-weights", "0", "--out", "unused"]
                + (["--input-size", str(args.input_size)] if args.input_size else [])
            )
        )
    elif path.suffix == ".json":
        raw = json.loads(path.read_text())
        if args.input_size:
            raw["input"]["height"] = raw["input"]["width"] = args.input_size
        model = PredifyModel(parse_config(raw))
        calibrate_batchnorm(model, int(raw["backbone"].get("seed", 0)))
    else:
        model = PredifyModel.from_checkpoint(path / "checkpoint.pt")
    model.eval().to(args.device)
    gen = torch.Generator().manual_seed(0)
    out = {
        "threads": args.threads,
        "timesteps": args.timesteps,
        "torch": torch.__version__,
        "device": args.device,
        "tf32": args.tf32,
        "stateThroughHost": args.state_through_host,
        "results": [],
    }
    sync = torch.cuda.synchronize if args.device.startswith("cuda") else (lambda: None)
    for batch in args.batches:
        x = torch.randn(batch, *model.input_shape, generator=gen).to(args.device)
        for _ in range(args.warmup):
            dynamics(model, x, 1, args.state_through_host)
        sync()
        runs, started = 0, time.perf_counter()
        while True:
            dynamics(model, x, args.timesteps, args.state_through_host)
            sync()
            runs += 1
            elapsed = time.perf_counter() - started
            if elapsed >= args.seconds and (runs >= 2 or args.seconds == 0):
                break
        rate = runs * batch * (args.timesteps + 1) / elapsed
        out["results"].append({"batch": batch, "runs": runs, "seconds": elapsed, "sampleStepsPerSecond": rate})
    print(json.dumps(out))


if __name__ == "__main__":
    main()
