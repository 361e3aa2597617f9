"""Training the feedback (the PCoders' predictors) of a frozen backbone, on one process or many.

The paper's objective (`reconstruct`): each PCoder i predicts the representation below it,
r_{i-1}(0), from its own r_i(0) (PCoder 1 predicts the image), and the loss is the sum over
PCoders of the mean squared error. `denoise` feeds half of each batch up the backbone with
Gaussian pixel noise and asks for the clean representation below: a supervised-by-construction
denoiser, not the paper's mechanism (docs/robustness.md says what that changes).

Only the predictors learn; the backbone stays in eval mode with gradients off, so neither its
weights nor its batch-norm statistics move. Under torchrun the predictors are wrapped in
DistributedDataParallel and each process takes its share of every global batch through a
DistributedSampler: the same global batches in the same order as one process with the whole
batch, so N processes compute what one would (within float rounding of the gradient mean).
"""

from __future__ import annotations

import json
import math
import os
import sys
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

# Pixel noise of the denoise objective, in pixel units ([0, 1]); ImageNet-C's gaussian_noise
# severity 4 is 0.26.
NOISE_SIGMA_MAX = 0.3


class TrainingError(Exception):
    """A run that cannot start or go on; the message is one line for the user."""


# ----------------------------------------------------------------------------------------------
# Images


@dataclass
class PixelSet:
    """8-bit pixels, (N, H, W, C), exactly as the service's decoder gives them at the model's size."""

    pixels: np.ndarray
    ids: list[str]
    digest: str
    source: dict[str, Any]

    def __len__(self) -> int:
        return len(self.pixels)


def normalise(batch: torch.Tensor, mean: torch.Tensor, std: torch.Tensor) -> torch.Tensor:
    """(B, H, W, C) uint8 -> (B, C, H, W) float32 as the service computes it: p * (1/255) rounded
    to float32, then (x - mean) / std in float32 (src/image/preprocess.ts normalise)."""
    x = (batch.permute(0, 3, 1, 2).to(torch.float64) * (1.0 / 255.0)).to(torch.float32)
    return (x - mean.view(1, -1, 1, 1)) / std.view(1, -1, 1, 1)


def fashion_pixels(spec: str, size: tuple[int, int, int]) -> PixelSet:
    """`fashion-mnist[:train|t10k[:FROM-TO]]` (TO inclusive), from Debian's package."""
    from .data import load_fashion

    parts = spec.split(":")
    split = parts[1] if len(parts) > 1 else "train"
    if split not in ("train", "t10k") or len(parts) > 3:
        raise TrainingError(f"--images {spec}: write fashion-mnist[:train|t10k[:FROM-TO]]")
    if size != (1, 28, 28):
        raise TrainingError(f"--images {spec}: Fashion-MNIST is 28x28 grey; the model takes {size[0]}x{size[1]}x{size[2]}")
    try:
        images, _labels = load_fashion(split)
    except FileNotFoundError as err:
        raise TrainingError(str(err)) from None
    lo, hi = 0, len(images) - 1
    if len(parts) == 3:
        try:
            lo, hi = (int(v) for v in parts[2].split("-"))
        except ValueError:
            raise TrainingError(f"--images {spec}: the range is FROM-TO, e.g. 0-49999") from None
        if not 0 <= lo <= hi < len(images):
            raise TrainingError(f"--images {spec}: {split} has images 0..{len(images) - 1}")
    chosen = np.ascontiguousarray(images[lo : hi + 1])[..., None]
    import hashlib

    digest = hashlib.sha256(chosen.tobytes()).hexdigest()
    return PixelSet(chosen, [f"fashion-mnist/{split}/{k}" for k in range(lo, hi + 1)], digest, {"kind": "fashion-mnist", "split": split, "from": lo, "to": hi})


def folder_pixels(root: str, size: tuple[int, int, int], resize: str, background: list[int], cache: Path, skip_unreadable: bool) -> PixelSet:
    """A folder of images decoded by the service's own decoder (dist/cli/decode-images.js) into
    `cache`, reused when neither the files nor the geometry changed."""
    import subprocess

    if not Path(root).is_dir():
        raise TrainingError(f"--images {root}: no such folder")
    if _is_pixel_cache(Path(root)):
        # Decoded beforehand (npm run decode-images, e.g. by a Job in the service's image): read
        # as it is, no Node.js needed here.
        return _read_cache(Path(root), size, resize, background, images=None)
    repo = Path(__file__).resolve().parents[2]
    tool = repo / "dist" / "cli" / "decode-images.js"
    if not tool.exists():
        raise TrainingError(f"{tool} is missing: run `npm run build` first (the images are decoded by the service's own code)")
    node = os.environ.get("PREDIFY_NODE", "node")
    cmd = [node, str(tool), "--images", root, "--out", str(cache), "--size", f"{size[1]}x{size[2]}", "--channels", str(size[0])]
    cmd += ["--resize", resize, "--background", ",".join(str(v) for v in background)]
    if skip_unreadable:
        cmd.append("--skip-unreadable")
    try:
        version = subprocess.run([node, "-p", "process.versions.node"], stdout=subprocess.PIPE, text=True).stdout.strip()
    except FileNotFoundError:
        raise TrainingError(f"{node}: not found; the images are decoded by the service's code (Node.js 22+; or set PREDIFY_NODE)") from None
    if not version or int(version.split(".")[0]) < 22:
        raise TrainingError(f"the images are decoded by the service's code, which needs Node.js 22+ ({node} is {version or 'unknown'}): `. scripts/use-node-24.sh`, or set PREDIFY_NODE")
    done = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    if done.returncode != 0:
        ours = [line for line in done.stderr.splitlines() if line.startswith("decode-images:")]
        other = [line for line in done.stderr.splitlines() if "Error" in line]
        raise TrainingError(ours[0].removeprefix("decode-images: ") if ours else f"decode-images failed: {(other or [f'exit {done.returncode}'])[0].strip()}")
    return _read_cache(cache, size, resize, background, images=root)


def _is_pixel_cache(folder: Path) -> bool:
    try:
        return json.loads((folder / "index.json").read_text()).get("format") == "predify-pixels"
    except (OSError, ValueError, AttributeError):
        return False


def _read_cache(cache: Path, size: tuple[int, int, int], resize: str, background: list[int], images: str | None) -> PixelSet:
    index = json.loads((cache / "index.json").read_text())
    g = index["geometry"]
    want = {"channels": size[0], "height": size[1], "width": size[2], "resize": resize, "background": background}
    differs = [k for k in want if g.get(k) != want[k]]
    if differs:
        raise TrainingError(f"the pixel cache {cache} was decoded with {', '.join(f'{k} {g.get(k)}' for k in differs)}; this model takes {', '.join(f'{k} {want[k]}' for k in differs)}")
    h, w, c = g["height"], g["width"], g["channels"]
    pixels = np.memmap(cache / "pixels.u8", dtype=np.uint8, mode="r", shape=(index["count"], h, w, c)) if index["count"] else np.zeros((0, h, w, c), np.uint8)
    source = {"kind": "folder", "root": str(Path(images).resolve()) if images else None, "cache": str(cache), "unreadable": index["unreadable"], "ignoredFiles": index["ignored"]}
    return PixelSet(pixels, index["files"], index["digest"], source)


class _Pixels(torch.utils.data.Dataset):
    def __init__(self, pixels: np.ndarray, indices: np.ndarray):
        self.pixels, self.indices = pixels, indices

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, k: int) -> torch.Tensor:
        return torch.from_numpy(np.array(self.pixels[self.indices[k]]))


def split_validation(n: int, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Train and validation indices: a seeded permutation's first round(n * fraction) are held out."""
    order = torch.randperm(n, generator=torch.Generator().manual_seed(seed)).numpy()
    held = int(round(n * fraction))
    return np.sort(order[held:]), np.sort(order[:held])


# ----------------------------------------------------------------------------------------------
# Objectives


def representations(blocks: list[nn.Module], x: torch.Tensor) -> list[torch.Tensor]:
    """[x, r_1(0), ..., r_n(0)] with no gradient: the frozen backbone's feedforward pass."""
    reps = [x]
    with torch.no_grad():
        for block in blocks:
            reps.append(block(reps[-1]))
    return reps


class FeedbackLoss(nn.Module):
    """The predictors, and per-PCoder losses of predicting `targets[i]` from `inputs[i + 1]`.
    The module DistributedDataParallel wraps: only the predictors are in it."""

    def __init__(self, predictors: nn.ModuleList):
        super().__init__()
        self.predictors = predictors

    def forward(self, inputs: list[torch.Tensor], targets: list[torch.Tensor]) -> torch.Tensor:
        return torch.stack([F.mse_loss(p(inputs[i + 1]).float(), targets[i].float()) for i, p in enumerate(self.predictors)])


def objective_batch(objective: str, blocks: list[nn.Module], x: torch.Tensor, std: torch.Tensor, gen: torch.Generator | None):
    """(inputs, targets) of one batch: the same representations for `reconstruct`; for `denoise`
    the first half of the batch clean and the rest with pixel noise of sigma ~ U(0, 0.3) going
    up, the clean representations as targets."""
    clean = representations(blocks, x)
    if objective == "reconstruct":
        return clean, clean
    sigma = torch.rand(len(x), 1, 1, 1, generator=gen, device=x.device) * NOISE_SIGMA_MAX
    sigma[: len(x) // 2] = 0
    noisy = x + sigma / std.view(1, -1, 1, 1) * torch.randn(x.shape, generator=gen, device=x.device)
    return representations(blocks, noisy), clean


# ----------------------------------------------------------------------------------------------
# The run


@dataclass
class Options:
    objective: str = "reconstruct"
    epochs: int = 50
    batch_size: int = 64  # per process
    lr: float = 1e-3
    weight_decay: float = 5e-4
    optimizer: str = "rmsprop"
    momentum: float = 0.0
    schedule: str = "cosine-restarts"
    t0: int = 3
    seed: int = 0
    val_fraction: float = 0.05
    workers: int = 0
    amp: bool = False
    device: str = "auto"


@dataclass
class Distributed:
    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def main(self) -> bool:
        return self.rank == 0


def distributed_from_env() -> Distributed:
    """torchrun's RANK / WORLD_SIZE / LOCAL_RANK, or a single process."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world == 1:
        return Distributed()
    return Distributed(int(os.environ["RANK"]), world, int(os.environ.get("LOCAL_RANK", "0")))


def pick_device(options: Options, dist_info: Distributed) -> torch.device:
    if options.device == "cpu" or (options.device == "auto" and not torch.cuda.is_available()):
        return torch.device("cpu")
    if not torch.cuda.is_available():
        raise TrainingError(f"--device {options.device}: CUDA is not available here")
    return torch.device(f"cuda:{dist_info.local_rank}")


def make_optimizer(options: Options, params) -> torch.optim.Optimizer:
    if options.optimizer == "rmsprop":
        return torch.optim.RMSprop(params, lr=options.lr, weight_decay=options.weight_decay)
    if options.optimizer == "sgd":
        return torch.optim.SGD(params, lr=options.lr, weight_decay=options.weight_decay, momentum=options.momentum)
    if options.optimizer == "adam":
        return torch.optim.Adam(params, lr=options.lr, weight_decay=options.weight_decay)
    raise TrainingError(f"--optimizer {options.optimizer}: rmsprop, sgd or adam")


def learning_rate(options: Options, epoch: float) -> float:
    """Cosine annealing with warm restarts every t0 epochs (eta_min 0), as torch's
    CosineAnnealingWarmRestarts with T_mult 1, evaluated at a fractional epoch; one cosine over
    the run (`cosine`); or constant."""
    if options.schedule == "constant":
        return options.lr
    if options.schedule == "cosine":  # one annealing over the whole run
        return options.lr * (1 + math.cos(math.pi * epoch / options.epochs)) / 2
    phase = epoch % options.t0
    return options.lr * (1 + math.cos(math.pi * phase / options.t0)) / 2


@dataclass
class History:
    epochs: list[dict[str, Any]] = field(default_factory=list)


def validation_losses(blocks, predictors, pixels: np.ndarray, indices: np.ndarray, mean, std, device, batch: int) -> list[float]:
    """Each PCoder's reconstruction MSE (the paper's objective) over the validation images,
    a mean over images (every batch weighted by its size)."""
    totals = torch.zeros(len(predictors), dtype=torch.float64)
    count = 0
    with torch.no_grad():
        for start in range(0, len(indices), batch):
            idx = indices[start : start + batch]
            x = normalise(torch.from_numpy(np.array(pixels[idx])).to(device), mean, std)
            reps = representations(blocks, x)
            for i, p in enumerate(predictors):
                totals[i] += float(F.mse_loss(p(reps[i + 1]).float(), reps[i].float())) * len(idx)
            count += len(idx)
    return [float(v / max(count, 1)) for v in totals]


class Progress:
    """A progress line on stderr with images/s and the time left: in place on a terminal, a line
    every 10% otherwise."""

    def __init__(self, label: str, total: int):
        self.label, self.total, self.started, self.tenth = label, total, time.time(), -1

    def __call__(self, done: int, loss: float) -> None:
        elapsed = max(time.time() - self.started, 1e-9)
        rate = done / elapsed
        eta = (self.total - done) / rate if rate > 0 else 0.0
        frac = done / self.total if self.total else 1.0
        bar = "#" * round(frac * 24) + "." * (24 - round(frac * 24))
        line = f"{self.label} [{bar}] {frac * 100:5.1f}% {done}/{self.total} images, {rate:.0f} images/s, loss {loss:.4g}, ETA {_clock(eta)}"
        if sys.stderr.isatty():
            sys.stderr.write("\r" + line + ("\n" if done >= self.total else ""))
        elif int(frac * 10) > self.tenth or done >= self.total:
            self.tenth = int(frac * 10)
            sys.stderr.write(line + "\n")
        sys.stderr.flush()


def _clock(seconds: float) -> str:
    s = max(0, int(round(seconds)))
    return f"{s // 3600}:{s // 60 % 60:02d}:{s % 60:02d}" if s >= 3600 else f"{s // 60}:{s % 60:02d}"


def _atomic_save(obj: Any, path: Path) -> None:
    tmp = path.with_name(path.name + ".partial")
    torch.save(obj, tmp)
    os.replace(tmp, path)


def flush_denormals() -> None:
    """As the predictors learn, some values fall below float32's normal range, and x86 CPUs compute
    on such denormals many times slower (an epoch of the shipped backbone's feedback went from 1 to
    8 minutes). Flushed to zero they change nothing a float32 model can represent. Only threads
    started afterwards inherit the setting: call it first thing in a process, before torch starts
    its thread pool. numpy then notices that float64 has no subnormals and says so: true and
    harmless."""
    torch.set_flush_denormal(True)
    warnings.filterwarnings("ignore", message="The value of the smallest subnormal")


def train(
    blocks: list[nn.Module],
    backbone: nn.Module,
    predictors: nn.ModuleList,
    data: PixelSet,
    mean: list[float],
    std: list[float],
    options: Options,
    state_dir: Path,
    fingerprint: dict[str, Any],
    resume: bool,
    dist_info: Distributed,
    log: Callable[[str], None] = lambda line: print(line, flush=True),
) -> dict[str, Any]:
    """Trains `predictors` in place and returns the record of the run (training.json's body).

    `state_dir/last.pt` is written after every epoch by rank 0; with `resume` the run continues
    from it, to the same weights an uninterrupted run reaches (the sampler, the noise and the
    learning rate are functions of the seed and the epoch; the optimiser's state is saved)."""
    flush_denormals()
    device = pick_device(options, dist_info)
    backbone.eval()
    for p in backbone.parameters():
        p.requires_grad_(False)
    backbone.to(device)
    predictors.to(device).train()
    mean_t = torch.tensor(mean, dtype=torch.float32, device=device)
    std_t = torch.tensor(std, dtype=torch.float32, device=device)

    train_idx, val_idx = split_validation(len(data), options.val_fraction, options.seed)
    global_batch = options.batch_size * dist_info.world
    if len(train_idx) < global_batch:
        raise TrainingError(
            f"{len(train_idx)} training images (of {len(data)}, {len(val_idx)} held out for validation) are fewer than one global batch of {global_batch}"
            f" ({options.batch_size} x {dist_info.world} processes): give more images or a smaller --batch-size"
        )
    sampler = torch.utils.data.DistributedSampler(
        _Pixels(data.pixels, train_idx), num_replicas=dist_info.world, rank=dist_info.rank, shuffle=True, seed=options.seed, drop_last=True
    )
    loader = torch.utils.data.DataLoader(
        _Pixels(data.pixels, train_idx),
        batch_size=options.batch_size,
        sampler=sampler,
        drop_last=True,
        num_workers=options.workers,
        pin_memory=device.type == "cuda",
    )
    steps = len(loader)

    module: nn.Module = FeedbackLoss(predictors)
    if dist_info.world > 1:
        module = nn.parallel.DistributedDataParallel(module, device_ids=[device.index] if device.type == "cuda" else None)
    optimizer = make_optimizer(options, predictors.parameters())
    amp = options.amp and device.type == "cuda"
    scaler = torch.cuda.amp.GradScaler(enabled=amp)

    history = History()
    first = 0
    last = state_dir / "last.pt"
    if resume:
        if not last.exists():
            raise TrainingError(f"--resume: {last} does not exist (nothing to resume)")
        saved = torch.load(last, map_location=device)
        differs = [k for k in sorted(set(fingerprint) | set(saved["fingerprint"])) if fingerprint.get(k) != saved["fingerprint"].get(k)]
        if differs:
            k = differs[0]
            raise TrainingError(
                f"--resume: this run's {k} is {fingerprint.get(k)!r}, the saved run's {saved['fingerprint'].get(k)!r}"
                + (f" (and {len(differs) - 1} more: {', '.join(differs[1:4])})" if len(differs) > 1 else "")
            )
        predictors.load_state_dict(saved["predictors"])
        optimizer.load_state_dict(saved["optimizer"])
        scaler.load_state_dict(saved["scaler"])
        history.epochs = saved["history"]
        first = saved["epoch"]
        log(f"resuming after epoch {first} of {options.epochs}")
    else:
        initial = validation_losses(blocks, predictors, data.pixels, val_idx, mean_t, std_t, device, 256) if dist_info.main else []
        history.epochs.append({"epoch": 0, "train": None, "validation": initial, "seconds": 0.0, "lr": None})
        if dist_info.main:
            log(f"epoch 0 (initialisation): validation loss per PCoder {_fmt(initial)}")

    for epoch in range(first, options.epochs):
        started = time.time()
        sampler.set_epoch(epoch)
        sums = torch.zeros(len(predictors), dtype=torch.float64, device=device)
        progress = Progress(f"epoch {epoch + 1}/{options.epochs}", steps * global_batch) if dist_info.main else None
        for step, batch in enumerate(loader):
            lr = learning_rate(options, epoch + step / steps)
            for group in optimizer.param_groups:
                group["lr"] = lr
            x = normalise(batch.to(device, non_blocking=True), mean_t, std_t)
            # Noise seeded by the run, the epoch, the step and the process: resumable, and the
            # same noise whatever else ran before.
            gen = None
            if options.objective == "denoise":
                gen = torch.Generator(device=device).manual_seed(((options.seed * 1_000_003 + epoch) * 1_000_003 + step) * 1024 + dist_info.rank)
            with torch.autocast(device_type="cuda", enabled=amp):
                inputs, targets = objective_batch(options.objective, blocks, x, std_t, gen)
                losses = module(inputs, targets)
                loss = losses.sum()
            optimizer.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            scaler.step(optimizer)
            scaler.update()
            sums += losses.detach().to(torch.float64)
            if progress:
                progress((step + 1) * global_batch, float(loss))
        if dist_info.world > 1:
            torch.distributed.all_reduce(sums)
        train_losses = [float(v) / (steps * dist_info.world) for v in sums.cpu()]
        if dist_info.main:
            val = validation_losses(blocks, predictors, data.pixels, val_idx, mean_t, std_t, device, 256)
            seconds = time.time() - started
            history.epochs.append(
                {"epoch": epoch + 1, "train": train_losses, "validation": val, "seconds": round(seconds, 2), "lr": learning_rate(options, epoch), "imagesPerSecond": round(steps * global_batch / seconds, 1)}
            )
            log(f"epoch {epoch + 1}/{options.epochs}: train loss {_fmt(train_losses)}, validation {_fmt(val)} ({seconds:.0f}s)")
            state_dir.mkdir(parents=True, exist_ok=True)
            _atomic_save(
                {"epoch": epoch + 1, "predictors": predictors.state_dict(), "optimizer": optimizer.state_dict(), "scaler": scaler.state_dict(), "history": history.epochs, "fingerprint": fingerprint},
                last,
            )
        if dist_info.world > 1:
            torch.distributed.barrier()

    predictors.eval().cpu()
    backbone.cpu()
    return {
        "epochs": history.epochs,
        "trainImages": int(len(train_idx)),
        "validationImages": int(len(val_idx)),
        "validationSplit": {"fraction": options.val_fraction, "seed": options.seed, "rule": "a seeded permutation's first round(N * fraction) images"},
        "globalBatch": global_batch,
        "processes": dist_info.world,
        "stepsPerEpoch": steps,
        "device": device.type,
    }


def _fmt(values: list[float]) -> str:
    return "[" + ", ".join(f"{v:.4g}" for v in values) + "]" if values else "[]"


def loss_chart(record: dict[str, Any], path: Path, title: str) -> bool:
    """training.png: each PCoder's train and validation loss by epoch (log scale). False when
    matplotlib is not installed (training.json holds the same numbers)."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        import matplotlib.ticker
    except ImportError:
        return False
    epochs = record["epochs"]
    n = len(epochs[0]["validation"]) if epochs and epochs[0]["validation"] else len(epochs[-1]["validation"])
    fig, ax = plt.subplots(figsize=(7, 4.2), dpi=110)
    colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for i in range(n):
        c = colours[i % len(colours)]
        val = [(e["epoch"], e["validation"][i]) for e in epochs if e["validation"]]
        tr = [(e["epoch"], e["train"][i]) for e in epochs if e["train"]]
        ax.plot(*zip(*val), "-o", color=c, markersize=3, label=f"pcoder{i + 1} validation")
        if tr:
            ax.plot(*zip(*tr), "--", color=c, alpha=0.7, label=f"pcoder{i + 1} train")
    ax.set_yscale("log")
    ax.xaxis.set_major_locator(matplotlib.ticker.MaxNLocator(integer=True))
    ax.set_xlabel("epoch (0: at initialisation)")
    ax.set_ylabel("mean squared error")
    ax.set_title(title, fontsize=10)
    ax.legend(fontsize=7, ncol=2)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return True
