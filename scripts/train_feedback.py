#!/usr/bin/env python3
"""Train the feedback of any CNN (the Predify paper's unsupervised training) and make it a served model.

    /usr/bin/python3 scripts/train_feedback.py --config NET.toml --backbone resnet50 \\
        --weights resnet50.pth --images DIR --out RUN
    torchrun --nproc_per_node 8 scripts/train_feedback.py ...      # DistributedDataParallel

The network, as the importer takes it (scripts/import_predify.py, the same refusals):
  --config NET.toml                a Predify TOML: where the PCoders sit, their predictors, β/λ/α
  --backbone NAME                  any torchvision classifier, or
  --backbone-module FILE.py:FACTORY your own network (the file is imported and RUN: trust it)
  --weights FILE                   the backbone's weights: a state dict, a Predify network's state
                                   dict, or a checkpoint with them under 'backbone'
  --random-backbone SEED           a seeded random backbone instead (trials and tests)
  --pcoders-from PNET.pth          start the predictors from a Predify network's state dict

The images: --images DIR (an ImageFolder or a flat folder; labels are not read), decoded once by
the service's own decoder at the served size into RUN/pixels (reused by later runs), or
--images fashion-mnist[:train|t10k[:FROM-TO]]. A seeded --val-fraction of them is held out
and each PCoder's reconstruction loss on it is reported every epoch.

What it writes in --out RUN (only rank 0 writes):
  state/last.pt       after every epoch; --resume continues from it to the same result
  checkpoint.pth      the Predify package's layout (the package's network loads it strictly)
  model/              the served model directory, made by the importer, goldens included
  training.json       per-epoch, per-PCoder train and validation losses, the run's settings
  training.png        the loss curves

Defaults are the authors' EfficientNet recipe: RMSprop, lr 1e-3, weight decay 5e-4, cosine
annealing with warm restarts every 3 epochs, batch 64 (per process), 50 epochs, and the paper's
objective (reconstruct). Every failure before training is one line and exit 2, with no model
directory written. docs/guides/predify-your-network.md walks through it.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
import time
from datetime import datetime, timezone
from pathlib import Path
from types import SimpleNamespace

sys.path.insert(0, str(Path(__file__).resolve().parent))

import torch  # noqa: E402

from import_predify import IMAGENET_MEAN, IMAGENET_STD, _representations, build_network, import_to  # noqa: E402
from predify.backbones import torchvision_classifiers  # noqa: E402
from predify.checkpoints import PackageCheckpoint, load_into, load_weights, package_state_dict, tensors  # noqa: E402
from predify.feedback_training import (  # noqa: E402
    Distributed,
    Options,
    TrainingError,
    distributed_from_env,
    fashion_pixels,
    flush_denormals,
    folder_pixels,
    loss_chart,
    train,
)
from predify.hyperparameters import HyperparameterError  # noqa: E402
from predify.package_reference import measure_c_sqrt  # noqa: E402
from predify.predify_toml import ConfigError, read_toml  # noqa: E402


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--config", required=True, help="the network's Predify TOML")
    which = ap.add_mutually_exclusive_group(required=True)
    which.add_argument("--backbone", metavar="NAME", help="a torchvision classification model")
    which.add_argument("--backbone-module", metavar="FILE.py:FACTORY", help="your own network (the file is run: trust it)")
    weights = ap.add_mutually_exclusive_group(required=True)
    weights.add_argument("--weights", help="the backbone's weights")
    weights.add_argument("--random-backbone", type=int, metavar="SEED", help="a seeded random backbone (trials, tests)")
    ap.add_argument("--pcoders-from", metavar="PNET.pth", help="continue from this Predify network's predictors")
    ap.add_argument("--images", required=True, help="DIR (ImageFolder or flat) or fashion-mnist[:train|t10k[:FROM-TO]]")
    ap.add_argument("--skip-unreadable", action="store_true", help="count and list undecodable images instead of stopping")
    ap.add_argument("--input-size", type=int, help="train and serve at N x N (default: the config's input_size)")
    ap.add_argument("--mean", type=float, nargs="+", default=IMAGENET_MEAN, help="normalisation, per channel (default ImageNet's)")
    ap.add_argument("--std", type=float, nargs="+", default=IMAGENET_STD)
    ap.add_argument("--resize", choices=("contain", "cover", "fill"), default="cover", help="how images are brought to the input size")
    ap.add_argument("--background", type=int, nargs="+", default=[0, 0, 0], help="the colour behind transparent pixels and contain's borders")
    ap.add_argument("--labels", help="one class name per line (default: ImageNet's for 1000 classes)")
    ap.add_argument("--name", help="the served model's name (default: the config's, lower case)")
    ap.add_argument("--objective", choices=("reconstruct", "denoise"), default="reconstruct", help="reconstruct: the paper's; denoise: predict clean from noisy")
    ap.add_argument("--epochs", type=int, default=50)
    ap.add_argument("--batch-size", type=int, default=64, help="per process; the global batch is this times the processes")
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--weight-decay", type=float, default=5e-4)
    ap.add_argument("--optimizer", choices=("rmsprop", "sgd", "adam"), default="rmsprop")
    ap.add_argument("--momentum", type=float, default=0.0, help="with --optimizer sgd (the package's PVGG16 example uses none)")
    ap.add_argument("--schedule", choices=("cosine-restarts", "cosine", "constant"), default="cosine-restarts", help="cosine-restarts every --t0 epochs, one cosine over the run, or constant")
    ap.add_argument("--t0", type=int, default=3, help="epochs between warm restarts")
    ap.add_argument("--val-fraction", type=float, default=0.05, help="held out for validation, chosen by --seed")
    ap.add_argument("--workers", type=int, default=0, help="DataLoader worker processes")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--amp", action="store_true", help="mixed precision (CUDA only)")
    ap.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto")
    ap.add_argument("--threads", type=int, help="CPU threads per process (default: torch's)")
    ap.add_argument("--golden", type=int, default=2, help="golden cases in the served model (0: none)")
    ap.add_argument("--c-seed", type=int, default=0, help="seed of the perturbations that measure C (gradient scaling)")
    ap.add_argument("--out", required=True, help="the run's directory")
    ap.add_argument("--resume", action="store_true", help="continue from OUT/state/last.pt")
    args = ap.parse_args(argv)
    if args.backbone and args.backbone not in torchvision_classifiers():
        ap.error(f"--backbone {args.backbone!r} is not a torchvision classification model; for your own network use --backbone-module FILE.py:FACTORY")
    # --epochs 0 makes the untrained control: the PCoders as --seed initialises them, served.
    if args.epochs < 0:
        ap.error("--epochs must be at least 0 (0: the untrained feedback, for eval --controls)")
    for name in ("batch_size", "t0"):
        if getattr(args, name) < 1:
            ap.error(f"--{name.replace('_', '-')} must be at least 1")
    if not 0 < args.val_fraction < 1:
        ap.error("--val-fraction must be between 0 and 1")
    if args.lr <= 0 or args.weight_decay < 0:
        ap.error("--lr must be positive and --weight-decay not negative")
    return args


def sha256_of(path: str | None) -> str | None:
    if path is None:
        return None
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def importer_args(args: argparse.Namespace, weights: str | None = None) -> SimpleNamespace:
    """The importer's options for this network: the backbone's weights to start training, or
    (`weights`) the trained network's checkpoint to make the served model from."""
    return SimpleNamespace(
        config=args.config,
        backbone=args.backbone,
        backbone_module=args.backbone_module,
        weights=weights,
        predictor_weights=None,
        random_weights=args.random_backbone if weights is None else None,
        backbone_weights=args.weights if weights is None else None,
        predictor_seed=args.seed,
        input_size=args.input_size,
        name=args.name,
        labels=args.labels,
        mean=args.mean,
        std=args.std,
        resize=args.resize,
        golden=args.golden,
        c_seed=args.c_seed,
    )


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    flush_denormals()
    dist_info = distributed_from_env()
    if args.threads:
        torch.set_num_threads(args.threads)
    if dist_info.world > 1:
        backend = "nccl" if args.device != "cpu" and torch.cuda.is_available() else "gloo"
        if backend == "nccl":
            torch.cuda.set_device(dist_info.local_rank)
        torch.distributed.init_process_group(backend)
    try:
        return run(args, dist_info)
    except (TrainingError, ConfigError, HyperparameterError) as err:
        print(f"train_feedback: {err}", file=sys.stderr)
        return 2
    except torch.cuda.OutOfMemoryError:
        print(f"train_feedback: CUDA ran out of memory at --batch-size {args.batch_size}: try a smaller one (the global batch is it times the processes)", file=sys.stderr)
        return 2
    finally:
        if dist_info.world > 1 and torch.distributed.is_initialized():
            torch.distributed.destroy_process_group()


def run(args: argparse.Namespace, dist_info: Distributed) -> int:
    started = datetime.now(timezone.utc)
    out = Path(args.out)
    log = (lambda line: print(line, flush=True)) if dist_info.main else (lambda line: None)
    model, _reference, source = build_network(importer_args(args))
    if args.pcoders_from:
        ckpt = PackageCheckpoint(tensors(load_weights(args.pcoders_from, "--pcoders-from"), "--pcoders-from"), len(model.predictors))
        for i, p in enumerate(model.predictors):
            load_into(p, ckpt.predictors[i], f"--pcoders-from's pcoder{i + 1}.pmodule")
    size = model.input_shape
    if len(args.mean) != size[0] or len(args.std) != size[0]:
        raise TrainingError(f"--mean and --std need {size[0]} values (the model takes {size[0]} channel{'s' if size[0] > 1 else ''})")

    if args.images.split(":")[0] == "fashion-mnist":
        data = fashion_pixels(args.images, size)
    else:
        # Decoded by rank 0; the others then find the cache complete and reuse it.
        if dist_info.main:
            data = folder_pixels(args.images, size, args.resize, args.background, out / "pixels", args.skip_unreadable)
        if dist_info.world > 1:
            torch.distributed.barrier()
        if not dist_info.main:
            data = folder_pixels(args.images, size, args.resize, args.background, out / "pixels", args.skip_unreadable)
    if len(data) == 0:
        raise TrainingError(f"--images {args.images}: no images")
    unreadable = data.source.get("unreadable", [])
    log(
        f"{len(data)} images from {args.images} at {size[1]}x{size[2]}x{size[0]}"
        + (f"; {len(unreadable)} unreadable, left out: {', '.join(u['file'] for u in unreadable[:5])}{' ...' if len(unreadable) > 5 else ''}" if unreadable else "")
    )

    options = Options(
        objective=args.objective,
        epochs=args.epochs,
        batch_size=args.batch_size,
        lr=args.lr,
        weight_decay=args.weight_decay,
        optimizer=args.optimizer,
        momentum=args.momentum,
        schedule=args.schedule,
        t0=args.t0,
        seed=args.seed,
        val_fraction=args.val_fraction,
        workers=args.workers,
        amp=args.amp,
        device=args.device,
    )
    # What makes two runs the same run: a resume must match all of it (--epochs may grow).
    fingerprint = {
        "config": sha256_of(args.config),
        "backbone": args.backbone or args.backbone_module.rpartition(":")[2] + "@" + sha256_of(args.backbone_module.rpartition(":")[0]),
        "weights": sha256_of(args.weights) if args.weights else f"random seed {args.random_backbone}",
        "pcodersFrom": sha256_of(args.pcoders_from),
        "images": data.digest,
        "input": [list(size), args.mean, args.std, args.resize, args.background],
        "objective": args.objective,
        "optimizer": [args.optimizer, args.lr, args.weight_decay, args.momentum, args.schedule, args.t0],
        "globalBatch": args.batch_size * dist_info.world,
        "seed": args.seed,
        "valFraction": args.val_fraction,
    }
    log(
        f"training {len(model.predictors)} PCoders' feedback ({args.objective}) on {source['backbone']}: "
        f"global batch {args.batch_size * dist_info.world} = {args.batch_size} x {dist_info.world} process{'es' if dist_info.world > 1 else ''}, "
        f"{args.optimizer} lr {args.lr:g}, {args.epochs} epochs"
    )
    backbone_before = {k: v.clone() for k, v in model.backbone.state_dict().items()}
    record = train(
        model.blocks,
        model.backbone,
        model.predictors,
        data,
        args.mean,
        args.std,
        options,
        out / "state",
        fingerprint,
        args.resume,
        dist_info,
        log,
    )
    after = model.backbone.state_dict()
    if any(not torch.equal(v, after[k]) for k, v in backbone_before.items()):
        raise TrainingError("the backbone's weights or statistics moved during training (a bug: it must stay frozen)")
    if not dist_info.main:
        return 0

    # The served model: the trained network through the importer's own path, from the package
    # layout checkpoint it writes first (so the package and the service read the same file).
    hps = [{"beta": pc.beta, "lambda": pc.lam, "alpha": pc.alpha} for pc in model.info]
    c_sqrt: list[float | None] = [None] * len(hps)
    if model.cfg.gradient_scaling:
        reps = _representations(model.blocks, size)
        gen = torch.Generator().manual_seed(args.c_seed)
        c_sqrt = [measure_c_sqrt(p, reps[i], gen) for i, p in enumerate(model.predictors)]
    shared = read_toml(args.config).shared_hyperparameters
    out.mkdir(parents=True, exist_ok=True)  # --epochs 0 never made its state directory under it
    checkpoint = out / "checkpoint.pth"
    tmp = checkpoint.with_name("checkpoint.pth.partial")
    torch.save(package_state_dict(model.backbone, list(model.predictors), hps, shared, c_sqrt), tmp)
    os.replace(tmp, checkpoint)

    last = record["epochs"][-1]
    training = {
        "script": "scripts/train_feedback.py",
        "command": " ".join(sys.argv),
        "feedbackObjective": args.objective,
        "images": {"source": args.images, "count": len(data), "digest": data.digest, **{k: v for k, v in data.source.items() if k not in ("cache",)}},
        "trainImages": record["trainImages"],
        "validationImages": record["validationImages"],
        "validationSplit": record["validationSplit"],
        "epochs": last["epoch"],
        "optimizer": {"name": args.optimizer, "lr": args.lr, "weightDecay": args.weight_decay, "momentum": args.momentum, "schedule": args.schedule, "t0": args.t0},
        "globalBatch": record["globalBatch"],
        "processes": record["processes"],
        "seed": args.seed,
        "validationLoss": {"initial": record["epochs"][0]["validation"], "final": last["validation"]},
        "startedAt": started.isoformat(timespec="seconds"),
        "finishedAt": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }
    made = time.time()
    manifest = import_to(importer_args(args, str(checkpoint)), out / "model", {"training": training})
    (out / "training.json").write_text(json.dumps({**training, "history": record["epochs"], "device": record["device"], "stepsPerEpoch": record["stepsPerEpoch"]}, indent=1) + "\n")
    charted = loss_chart(record, out / "training.png", f"{manifest['name']}: feedback ({args.objective}), {record['trainImages']} images, global batch {record['globalBatch']}")
    log(
        "validation loss per PCoder, initial -> final: "
        + ", ".join(f"pcoder{i + 1} {a:.4g} -> {b:.4g} ({b / a:.2f}x)" for i, (a, b) in enumerate(zip(training["validationLoss"]["initial"], training["validationLoss"]["final"])))
    )
    log(f"wrote {checkpoint}, {out / 'model'} (served model, {time.time() - made:.0f}s), {out / 'training.json'}" + (f", {out / 'training.png'}" if charted else " (no training.png: matplotlib is not installed)"))
    log(f"next: npm run check-golden -- {out / 'model'}; MODEL_DIR={out / 'model'} npm start")
    return 0


if __name__ == "__main__":
    sys.exit(main())
