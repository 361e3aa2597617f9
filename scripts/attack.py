#!/usr/bin/env python3
"""White-box adversarial attacks through the predictive-coding dynamics of a served model.

    /usr/bin/python3 scripts/attack.py models/fashion-pc --images fashion-mnist:t10k:final \\
        --per-class 20 --epsilon 0.01,0.02,0.05 --through 0,2,6 --out RUN
    npm run eval:adversarial -- RUN             # scores RUN's images through the service's engine

The model's PyTorch form is rebuilt from what the model directory holds (checkpoint.pt, as
scripts/train_fashion.py writes it) or, for an imported or trained network, from the importer's
options it was made with (--config, --backbone | --backbone-module, --weights | --predictor-weights
with --backbone-weights | --random-weights, ...). It is checked against the served graphs'
golden outputs first, and refused when they differ.

Attacks (L-infinity, epsilon in pixel units: images in [0, 1]):
  bim   targeted, as the paper's code does it (foolbox LinfBIM): 100 steps, random start,
        step 2.5 epsilon / steps, target (label + round(0.8 C)) mod C
  pgd   untargeted, random start, the same step rule
The attack takes the gradient of the logits at t = T through the first T timesteps
(--through T; T = 0 attacks the feedforward network alone), at the profile's hyperparameters.

Images: fashion-mnist:t10k:dev|final (the test set's parts, as npm run eval --split reads them),
fashion-mnist:train:FROM-TO, or a folder of class folders named by label or class index
(decoded by the service's own decoder at the model's size). As the paper's image list, only
images the model classifies correctly at every t = 0..--timesteps are attacked
(--keep-misclassified attacks every image).

What it writes in --out RUN: clean/ and one folder per attack, epsilon and depth, each holding
the 8-bit PNGs a user would upload (rounded to the nearest 8-bit value within epsilon), and
attack.json: the settings, the golden check, every image's label and target, and the PyTorch
form's accuracy and target success at t = 0..--timesteps before and after the rounding. Any
refusal is one line and exit 2 before any work.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import shutil
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path
from types import SimpleNamespace

sys.path.insert(0, str(Path(__file__).resolve().parent))

import numpy as np  # noqa: E402
import torch  # noqa: E402

from predify.adversarial import GRADIENTS, Coefficients, UnrolledDynamics, linf_attack, target_offset, to_eight_bits  # noqa: E402
from predify.directories import write_whole  # noqa: E402
from predify.feedback_training import PixelSet, TrainingError, fashion_pixels, flush_denormals, folder_pixels, normalise  # noqa: E402
from predify.model import PredifyModel  # noqa: E402
from predify.predify_toml import ConfigError  # noqa: E402

ATTACKS = ("bim", "pgd")
CONTROLS = ("no-feedback-term", "no-error-gradient", "untrained-feedback")
FASHION_PART_SIZE = 500  # src/robustness/image-set.ts: the first 500 of each class are `dev`


class AttackError(Exception):
    """A refusal: one line, exit 2, before any work."""


def number_list(kind, what: str):
    def parse(text: str):
        try:
            return [kind(v) for v in text.split(",") if v.strip()]
        except ValueError:
            raise argparse.ArgumentTypeError(f"{what}: write comma-separated values, e.g. {'0.01,0.03' if kind is float else '0,2,6'}") from None

    return parse


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("model", help="the served model directory")
    ap.add_argument("--images", required=True, help="fashion-mnist:t10k:dev|final, fashion-mnist:train:FROM-TO, or DIR of class folders")
    ap.add_argument("--out", required=True, help="the run's directory (replaced if it exists)")
    ap.add_argument("--class-map", metavar="FILE", help="folder -> label or index, as npm run eval reads it: JSON (or ImageNet's class index) or CSV folder,label")
    ap.add_argument("--per-class", type=int, help="images per class, the first in index order (Fashion-MNIST)")
    ap.add_argument("--count", type=int, default=100, help="images attacked, at most (default 100)")
    ap.add_argument("--attack", type=lambda s: s.split(","), default=["bim"], help="bim, pgd or both: bim,pgd")
    ap.add_argument("--epsilon", type=number_list(float, "--epsilon"), default=[0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0], help="L-inf radii in pixel units (default: the paper script's list)")
    ap.add_argument("--steps", type=int, default=100, help="attack steps (default 100, the paper's)")
    ap.add_argument("--rel-step-size", type=float, help="step as a fraction of epsilon (default 2.5 / steps, the paper's)")
    ap.add_argument("--no-random-start", action="store_true", help="start at the clean image (the paper's BIM starts at random)")
    ap.add_argument("--through", type=number_list(int, "--through"), default=[0], help="attack depths T: the gradient goes through t = 0..T (default 0)")
    ap.add_argument("--timesteps", type=int, default=10, help="the images are scored at t = 0..this (default 10)")
    ap.add_argument("--profile", help="the hyperparameter profile attacked and scored (default: the model's default profile)")
    ap.add_argument("--control", choices=CONTROLS, help="attack a control instead: lambda = 0 or alpha = 0 at every PCoder, or (with --hyperparameters-of) untrained feedback")
    ap.add_argument("--hyperparameters-of", metavar="DIR", help="take --profile from this model's manifest: the trained model, when attacking its untrained-feedback control")
    ap.add_argument("--gradient", choices=GRADIENTS, default="package", help="package: the error gradient g_i is a constant to the attack, as the paper's; full: differentiated too")
    ap.add_argument("--target-offset", type=int, help="target = (label + this) mod C (default round(0.8 C))")
    ap.add_argument("--keep-misclassified", action="store_true", help="attack every image, not only those right at every t")
    ap.add_argument("--same-images", metavar="RUN", help="attack exactly the images of RUN (the model's run, for its controls)")
    ap.add_argument("--seed", type=int, default=17, help="random starts (the paper's rseed 17)")
    ap.add_argument("--batch", type=int, default=50)
    ap.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto")
    ap.add_argument("--golden-tolerance", type=float, default=1e-4, help="largest logit difference, relative to the logits' scale, against the goldens")
    ap.add_argument("--keep-logits", action="store_true", help="also write logits.json: the PyTorch form's logits on every 8-bit image at every t")
    ap.add_argument("--skip-unreadable", action="store_true", help="go on past images that cannot be decoded")
    src = ap.add_argument_group("the network's source, for an imported or trained model (the importer's options)")
    src.add_argument("--config", help="the network's Predify TOML")
    src.add_argument("--backbone", metavar="NAME")
    src.add_argument("--backbone-module", metavar="FILE.py:FACTORY", help="your own network: the file is imported and run, so trust it")
    src.add_argument("--weights", help="the package network's state dict (e.g. train_feedback.py's RUN/checkpoint.pth)")
    src.add_argument("--predictor-weights", nargs="+", metavar="FILE")
    src.add_argument("--backbone-weights")
    src.add_argument("--random-weights", type=int, metavar="SEED")
    src.add_argument("--input-size", type=int)
    src.add_argument("--c-seed", type=int, default=0)
    return ap.parse_args(argv)


# --- the model --------------------------------------------------------------------------------


def read_manifest(model_dir: Path) -> dict:
    try:
        return json.loads((model_dir / "manifest.json").read_text())
    except FileNotFoundError:
        raise AttackError(f"{model_dir}: no manifest.json (not a model directory)") from None
    except ValueError as err:
        raise AttackError(f"{model_dir}/manifest.json: not JSON ({err})") from None


def pytorch_form(args: argparse.Namespace, model_dir: Path, manifest: dict) -> tuple[PredifyModel, str]:
    """The model's PyTorch modules and where they came from."""
    if args.config:
        from import_predify import build_network

        if not (args.backbone or args.backbone_module):
            raise AttackError("--config needs --backbone or --backbone-module, as the importer took them")
        if sum(bool(v) for v in (args.weights, args.predictor_weights, args.random_weights is not None)) != 1:
            raise AttackError("--config needs one of --weights, --predictor-weights (with --backbone-weights) or --random-weights, as the importer took them")
        c, s = manifest["input"]["channels"], manifest["input"]
        # The manifest's labels, so that the importer names the classes as the served model does.
        labels = Path(tempfile.mkdtemp(prefix="attack-labels-")) / "labels.txt"
        labels.write_text("\n".join(manifest["labels"]) + "\n")
        options = SimpleNamespace(
            config=args.config,
            backbone=args.backbone,
            backbone_module=args.backbone_module,
            weights=args.weights,
            predictor_weights=args.predictor_weights,
            backbone_weights=args.backbone_weights,
            random_weights=args.random_weights,
            input_size=args.input_size or (s["height"] if s["height"] == s["width"] else None),
            name=manifest["name"],
            labels=str(labels),
            mean=s["mean"][:c],
            std=s["std"][:c],
            resize=s.get("resize", "cover"),
            golden=0,
            c_seed=args.c_seed,
        )
        try:
            model, _reference, _source = build_network(options)
        except ConfigError as err:
            raise AttackError(str(err)) from None
        finally:
            shutil.rmtree(labels.parent, ignore_errors=True)
        return model, f"the importer's options (--config {args.config})"
    checkpoint = model_dir / "checkpoint.pt"
    if checkpoint.exists():
        return PredifyModel.from_checkpoint(checkpoint), str(checkpoint)
    made = manifest.get("source", {}).get("format") or manifest.get("training", {}).get("script")
    hint = f" (it was made from {made}: give the options it was made with)" if made else ""
    raise AttackError(
        f"{model_dir} holds no PyTorch source (no checkpoint.pt){hint}: pass the importer's options, "
        "--config NET.toml --backbone NAME|--backbone-module FILE.py:FACTORY --weights PNET.pth"
    )


def coefficients_of(manifest: dict, hyperparameters: list[dict]) -> list[Coefficients]:
    return [
        Coefficients(h["beta"], h["lambda"], h["alpha"], float(pc["gradientScale"]["scale"]) if manifest.get("gradientScaling", True) else 1.0)
        for h, pc in zip(hyperparameters, manifest["pcoders"])
    ]


def served_hyperparameters(manifest: dict, profile: str | None, control: str | None) -> tuple[str, list[dict]]:
    name = profile or manifest.get("defaultProfile") or "exported"
    if name == "exported":
        hps = [dict(pc["hyperparameters"]) for pc in manifest["pcoders"]]
    else:
        profiles = manifest.get("profiles", {})
        if name not in profiles:
            raise AttackError(f"--profile {name}: the model has {', '.join(['exported', *profiles]) }")
        hps = [dict(h) for h in profiles[name]["hyperparameters"]]
    if control == "no-feedback-term":
        hps = [{**h, "lambda": 0.0} for h in hps]
    elif control == "no-error-gradient":
        hps = [{**h, "alpha": 0.0} for h in hps]
    return name, hps


def golden_check(dynamics: UnrolledDynamics, model_dir: Path, manifest: dict, tolerance: float, device: torch.device) -> dict:
    """The PyTorch form against the served graphs' golden outputs, as npm run check-golden
    compares the engine: each logit's difference relative to max(1, the largest |logit|)."""
    golden_file = manifest.get("golden", {}).get("file")
    if not golden_file or not (model_dir / golden_file).exists():
        raise AttackError(f"{model_dir}: no golden outputs to check the PyTorch form against (export the model with goldens)")
    golden = json.loads((model_dir / golden_file).read_text())
    worst = 0.0
    c, h, w = manifest["input"]["channels"], manifest["input"]["height"], manifest["input"]["width"]
    for case in golden["cases"]:
        z = torch.tensor(case["input"], dtype=torch.float32, device=device).view(1, c, h, w)
        logits = dynamics(z, golden["timesteps"])
        for t, ref in enumerate(case["logits"]):
            ref_t = torch.tensor(ref, dtype=torch.float64)
            scale = max(1.0, float(ref_t.abs().max()))
            worst = max(worst, float((logits[t][0].double().cpu() - ref_t).abs().max()) / scale)
    report = {"cases": len(golden["cases"]), "timesteps": golden["timesteps"], "maxLogitScaledDiff": worst, "tolerance": tolerance}
    if not worst <= tolerance:
        raise AttackError(
            f"the PyTorch form differs from the served graphs: largest scaled logit difference {worst:.3g} over the goldens, above {tolerance:g}; "
            "rebuild it from the options the model was made with"
        )
    return report


# --- the images -------------------------------------------------------------------------------


def load_images(args: argparse.Namespace, manifest: dict, out: Path) -> tuple[PixelSet, np.ndarray, str]:
    """The candidate images (8-bit, at the model's size), their labels, and a description."""
    size = (manifest["input"]["channels"], manifest["input"]["height"], manifest["input"]["width"])
    spec = args.images
    parts = spec.split(":")
    if parts[0] == "fashion-mnist":
        from predify.data import load_fashion

        split = parts[1] if len(parts) > 1 else "t10k"
        which = parts[2] if len(parts) > 2 else None
        part = which if which in ("dev", "final") else None
        try:
            data = fashion_pixels(f"fashion-mnist:{split}" + (f":{which}" if which and not part else ""), size)
        except TrainingError as err:
            raise AttackError(str(err)) from None
        labels_all = load_fashion(split)[1]
        lo = data.source["from"]
        labels = labels_all[lo : lo + len(data)]
        keep = np.arange(len(data))
        if part:
            if split != "t10k":
                raise AttackError(f"--images {spec}: dev and final are parts of the test set (t10k)")
            rank = np.zeros(len(data), np.int64)
            seen: dict[int, int] = {}
            for k, lab in enumerate(labels):
                rank[k] = seen.get(int(lab), 0)
                seen[int(lab)] = rank[k] + 1
            keep = np.nonzero((rank < FASHION_PART_SIZE) == (part == "dev"))[0]
        names = manifest["labels"]
        if len(names) != 10:
            raise AttackError(f"--images {spec}: Fashion-MNIST has 10 classes; the model has {len(names)}")
        data = PixelSet(data.pixels[keep], [data.ids[k] for k in keep], data.digest, {**data.source, "part": part})
        return data, labels[keep], f"Fashion-MNIST {split}" + (f", the {part} part" if part else "")
    root = Path(spec)
    if not root.is_dir():
        raise AttackError(f"--images {spec}: no such folder, and not fashion-mnist:...")
    s = manifest["input"]
    try:
        data = folder_pixels(spec, size, s.get("resize", "cover"), s.get("background", [0, 0, 0]), out / "pixels", args.skip_unreadable)
    except TrainingError as err:
        raise AttackError(str(err)) from None
    names = manifest["labels"]
    squash = lambda v: "".join(ch for ch in v.lower() if ch.isalnum())  # noqa: E731
    by_name = {squash(n): k for k, n in enumerate(names)}
    mapped = read_class_map(args.class_map) if args.class_map else None
    labels = []
    for file in data.ids:
        folder = Path(file).parent.name
        if mapped is not None:
            if folder not in mapped:
                raise AttackError(f"--class-map {args.class_map}: no entry for the folder {folder!r} of {file}")
            folder = str(mapped[folder])
        k = by_name.get(squash(folder))
        if k is None and folder.isdigit() and int(folder) < len(names):
            k = int(folder)
        if k is None:
            raise AttackError(f"--images {spec}: the folder {folder!r} of {file} names no class of the model (a label or a class index)")
        labels.append(k)
    return data, np.array(labels, np.int64), f"{spec}"


def read_class_map(file: str) -> dict[str, str | int]:
    """Folder -> label name or index, in the formats npm run eval reads (src/robustness/image-set.ts
    readClassMap): JSON { folder: label or index }, ImageNet's class index { "0": ["n01440764",
    "tench"], ... }, or CSV lines folder,label (a header folder,label allowed)."""
    try:
        text = Path(file).read_text()
    except OSError as err:
        raise AttackError(f"--class-map {file}: {err.strerror}") from None
    out: dict[str, str | int] = {}
    if text.lstrip().startswith(("{", "[")):
        try:
            raw = json.loads(text)
        except ValueError as err:
            raise AttackError(f"--class-map {file}: not valid JSON: {err}") from None
        if not isinstance(raw, dict):
            raise AttackError(f"--class-map {file}: expected an object of folder -> label")
        for key, value in raw.items():
            if isinstance(value, list) and value and isinstance(value[0], str) and key.isdigit():
                out[value[0]] = int(key)
            elif isinstance(value, (str, int)) and not isinstance(value, bool):
                out[key] = value
            else:
                raise AttackError(f"--class-map {file}: the entry for {key!r} is neither a label, an index nor [folder, name]")
    else:
        for n, line in enumerate(text.splitlines()):
            if not line.strip() or line.startswith("#"):
                continue
            folder, comma, label = line.partition(",")
            if not comma:
                raise AttackError(f"--class-map {file}, line {n + 1}: expected 'folder,label'")
            folder, label = folder.strip(), label.strip().strip('"')
            if n == 0 and (folder, label) == ("folder", "label"):
                continue
            out[folder] = int(label) if label.isdigit() else label
    if not out:
        raise AttackError(f"--class-map {file}: no entries")
    return out


def balanced(labels: np.ndarray, per_class: int | None) -> np.ndarray:
    if per_class is None:
        return np.arange(len(labels))
    taken: dict[int, int] = {}
    out = []
    for k, lab in enumerate(labels):
        if taken.get(int(lab), 0) < per_class:
            taken[int(lab)] = taken.get(int(lab), 0) + 1
            out.append(k)
    return np.array(out, np.int64)


# --- the attack -------------------------------------------------------------------------------


def pixels_to_tensor(pixels: np.ndarray, device: torch.device) -> torch.Tensor:
    """(N, H, W, C) uint8 to (N, C, H, W) in [0, 1], as the service's p * (1/255)."""
    x = torch.from_numpy(np.ascontiguousarray(pixels)).permute(0, 3, 1, 2).to(torch.float64) * (1.0 / 255.0)
    return x.to(torch.float32).to(device)


def scored(dynamics: UnrolledDynamics, z: torch.Tensor, timesteps: int, batch: int) -> torch.Tensor:
    """Logits at t = 0..timesteps, (N, T + 1, C)."""
    out = []
    with torch.no_grad():
        for k in range(0, len(z), batch):
            out.append(torch.stack(dynamics(z[k : k + batch], timesteps), 1))
    return torch.cat(out).cpu()


def outcome(logits: torch.Tensor, labels: torch.Tensor, targets: torch.Tensor | None) -> dict:
    top = logits.argmax(-1)
    right = (top == labels[:, None]).double().mean(0)
    record = {"accuracy": [round(float(v), 4) for v in right]}
    if targets is not None:
        record["targetSuccess"] = [round(float(v), 4) for v in (top == targets[:, None]).double().mean(0)]
    return record


def save_png(pixels: np.ndarray, path: Path) -> None:
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(pixels[..., 0] if pixels.shape[-1] == 1 else pixels).save(path)


def run(args: argparse.Namespace) -> int:
    started = time.time()
    model_dir = Path(args.model)
    manifest = read_manifest(model_dir)
    classes = len(manifest["labels"])
    for e in args.epsilon:
        if not 0 < e <= 1:
            raise AttackError(f"--epsilon {e:g}: each epsilon must be in (0, 1], in pixel units of images in [0, 1] (8/255 = {8 / 255:.4f})")
    if not args.epsilon:
        raise AttackError("--epsilon: name at least one")
    bad = [a for a in args.attack if a not in ATTACKS]
    if bad:
        raise AttackError(f"--attack {','.join(bad)}: the attacks are {', '.join(ATTACKS)}")
    if "bim" in args.attack:
        if classes < 2:
            raise AttackError(f"the targeted attack needs at least 2 classes; the model has {classes}")
        offset = args.target_offset if args.target_offset is not None else target_offset(classes)
        if offset % classes == 0:
            raise AttackError(f"the target rule (label + {offset}) mod {classes} gives the label itself for {classes} classes: pass --target-offset 1")
    else:
        offset = None
    if (args.control == "untrained-feedback") != bool(args.hyperparameters_of):
        raise AttackError("--control untrained-feedback goes with --hyperparameters-of TRAINED_MODEL_DIR (the model whose control it is)")
    if args.steps < 1:
        raise AttackError("--steps must be at least 1")
    if args.timesteps < 0 or any(t < 0 or t > args.timesteps for t in args.through):
        raise AttackError(f"--through: each depth must be within 0..--timesteps ({args.timesteps})")
    if args.same_images and not (Path(args.same_images) / "attack.json").exists():
        raise AttackError(f"--same-images {args.same_images}: no attack.json there")
    if args.count < 1 or (args.per_class is not None and args.per_class < 1):
        raise AttackError("--count and --per-class must be at least 1")
    device = torch.device("cuda" if args.device == "cuda" or (args.device == "auto" and torch.cuda.is_available()) else "cpu")
    if device.type == "cuda" and not torch.cuda.is_available():
        raise AttackError("--device cuda: no CUDA device here")

    model, source = pytorch_form(args, model_dir, manifest)
    model = model.to(device)
    s = manifest["input"]
    exported = coefficients_of(manifest, [pc["hyperparameters"] for pc in manifest["pcoders"]])
    mean, std = s["mean"][: s["channels"]], s["std"][: s["channels"]]
    golden = golden_check(UnrolledDynamics(model, exported, mean, std).to(device), model_dir, manifest, args.golden_tolerance, device)
    profile, hps = served_hyperparameters(read_manifest(Path(args.hyperparameters_of)) if args.hyperparameters_of else manifest, args.profile, args.control)
    dynamics = UnrolledDynamics(model, coefficients_of(manifest, hps), mean, std, args.gradient).to(device)

    out = Path(args.out)
    record = write_whole(out, "attacking", lambda work: attack_into(args, work, manifest, dynamics, profile, hps, offset, device, source, golden, started))
    print(summary(record, out))
    return 0


def attack_into(args, out: Path, manifest: dict, dynamics: UnrolledDynamics, profile: str, hps: list[dict], offset, device, source: str, golden: dict, started: float) -> dict:
    data, labels_all, described = load_images(args, manifest, out)
    candidates = balanced(labels_all, args.per_class)
    T = args.timesteps
    if args.same_images:
        # A control must be attacked on the model's images, whatever it gets right itself.
        try:
            wanted = [im["source"] for im in json.loads((Path(args.same_images) / "attack.json").read_text())["images"]["list"]]
        except (OSError, ValueError, KeyError) as err:
            raise AttackError(f"--same-images {args.same_images}: not a run of attack.py ({err})") from None
        where = {image_id: k for k, image_id in enumerate(data.ids)}
        missing = [w for w in wanted if w not in where]
        if missing:
            raise AttackError(f"--same-images {args.same_images}: {len(missing)} of its images are not in --images {args.images} (e.g. {missing[0]})")
        candidates = np.array([where[w] for w in wanted], np.int64)
    limit = len(candidates) if args.same_images else args.count
    # The paper's image list: only images right at every t (of the arm attacked) are attacked.
    chosen: list[int] = []
    scanned = 0
    for k in range(0, len(candidates), args.batch):
        if len(chosen) >= limit:
            break
        idx = candidates[k : k + args.batch]
        logits = scored(dynamics, normalise_pixels(data.pixels[idx], dynamics, device), T, args.batch)
        right = (logits.argmax(-1) == torch.from_numpy(labels_all[idx])[:, None]).all(1)
        for j, k2 in enumerate(idx):
            if len(chosen) >= limit:
                break
            scanned += 1
            if args.keep_misclassified or args.same_images or bool(right[j]):
                chosen.append(int(k2))
    if not chosen:
        raise AttackError(f"--images {args.images}: no image is classified correctly at every t = 0..{T} (--keep-misclassified attacks them anyway)")
    idx = np.array(chosen)
    pixels = data.pixels[idx]
    labels = torch.from_numpy(labels_all[idx])
    classes = len(manifest["labels"])
    ids = [safe_id(data.ids[k]) for k in idx]
    clean_x = pixels_to_tensor(pixels, device)
    images = []
    for j, image_id in enumerate(ids):
        file = f"clean/{image_id}.png"
        save_png(pixels[j], out / file)
        images.append({"id": image_id, "source": data.ids[idx[j]], "label": int(labels[j]), "file": file})
    clean_logits = scored(dynamics, normalise_pixels(pixels, dynamics, device), T, args.batch)
    logits_record = {"clean": clean_logits.tolist()} if args.keep_logits else None

    targets = (labels + offset) % classes if offset is not None else None
    attacks = []
    for name in args.attack:
        targeted = name == "bim"
        for eps in args.epsilon:
            for depth in args.through:
                began = time.time()
                rel = args.rel_step_size if args.rel_step_size is not None else 2.5 / args.steps
                adv_float = []
                for k in range(0, len(idx), args.batch):
                    x = clean_x[k : k + args.batch]
                    y = (targets if targeted else labels)[k : k + args.batch].to(device)
                    ce = torch.nn.CrossEntropyLoss(reduction="none")
                    if targeted:
                        loss = lambda a, y=y: -ce(dynamics(dynamics.normalise(a), depth)[-1], y)  # noqa: E731
                    else:
                        loss = lambda a, y=y: ce(dynamics(dynamics.normalise(a), depth)[-1], y)  # noqa: E731
                    gen = torch.Generator().manual_seed(args.seed * 1_000_003 + k)
                    adv_float.append(linf_attack(loss, x, eps, args.steps, rel * eps, not args.no_random_start, gen))
                adv = torch.cat(adv_float)
                eight = to_eight_bits(adv, clean_x, eps).cpu()
                eight_np = eight.permute(0, 2, 3, 1).numpy()
                folder = f"{name}/eps-{eps:g}/through-{depth}"
                files = []
                for j, image_id in enumerate(ids):
                    file = f"{folder}/{image_id}.png"
                    save_png(eight_np[j], out / file)
                    files.append(file)
                before = scored(dynamics, dynamics.normalise(adv), T, args.batch)
                after = scored(dynamics, normalise_pixels(eight_np, dynamics, device), T, args.batch)
                if logits_record is not None:
                    logits_record[folder] = after.tolist()
                reach = (adv - clean_x).abs().flatten(1).max(1).values
                eight_reach = (eight.to(torch.float32) / 255 - clean_x.cpu()).abs().flatten(1).max(1).values
                attacks.append(
                    {
                        "attack": name,
                        "targeted": targeted,
                        "epsilon": eps,
                        "through": depth,
                        "folder": folder,
                        "files": files,
                        "pytorch": {
                            "beforeRounding": outcome(before, labels, targets if targeted else None),
                            "eightBit": outcome(after, labels, targets if targeted else None),
                        },
                        "largestPerturbation": {"beforeRounding": round(float(reach.max()), 6), "eightBit": round(float(eight_reach.max()), 6)},
                        "seconds": round(time.time() - began, 2),
                    }
                )
                print(f"attack: {name} eps {eps:g} through {depth}: t=0 accuracy {attacks[-1]['pytorch']['eightBit']['accuracy'][0]:.3f} (8-bit), {attacks[-1]['seconds']:.1f}s", flush=True)

    digests = {name: g["sha256"] for name, g in manifest["graphs"].items() if "sha256" in g}
    record = {
        "format": "predify-attack",
        "version": 1,
        "model": {"dir": str(Path(args.model).resolve()), "name": manifest["name"], "graphs": digests, "source": source},
        "arm": args.control or "model",
        "profile": profile,
        "hyperparameters": hps,
        "timesteps": T,
        "gradient": args.gradient,
        "goldenCheck": golden,
        "images": {"source": described, "scanned": scanned, "attacked": len(idx), "rule": f"the images of {args.same_images}" if args.same_images else "every image right at t = 0..timesteps" if not args.keep_misclassified else "every image", "list": images},
        "clean": {"pytorch": outcome(clean_logits, labels, None)},
        "settings": {
            "steps": args.steps,
            "relStepSize": args.rel_step_size if args.rel_step_size is not None else 2.5 / args.steps,
            "randomStart": not args.no_random_start,
            "seed": args.seed,
            "targetOffset": offset,
            "targetRule": f"(label + {offset}) mod {classes}" if offset is not None else None,
            "epsilonUnits": "pixels of images in [0, 1]",
            "rounding": "8-bit, each pixel the nearest value within epsilon of the clean 8-bit pixel",
        },
        "targets": [int(v) for v in targets] if targets is not None else None,
        "attacks": attacks,
        "command": " ".join(sys.argv),
        "device": str(device),
        "torch": torch.__version__,
        "measuredAt": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "seconds": round(time.time() - started, 1),
    }
    (out / "attack.json").write_text(json.dumps(record, indent=1) + "\n")
    if logits_record is not None:
        (out / "logits.json").write_text(json.dumps(logits_record) + "\n")
    return record


def normalise_pixels(pixels: np.ndarray, dynamics: UnrolledDynamics, device) -> torch.Tensor:
    """8-bit pixels to the model's input exactly as the service computes it."""
    return normalise(torch.from_numpy(np.ascontiguousarray(pixels)), dynamics.mean.view(-1).cpu(), dynamics.std.view(-1).cpu()).to(device)


def safe_id(image_id: str) -> str:
    """A file name for an image id: its last parts, made safe, and a short digest for uniqueness."""
    tail = "-".join(Path(image_id).parts[-2:]) if "/" in image_id else image_id
    clean = "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in tail)[-60:]
    return f"{clean}-{hashlib.sha256(image_id.encode()).hexdigest()[:8]}"


def summary(record: dict, out: Path) -> str:
    lines = [
        f"attacked {record['images']['attacked']} images of {record['model']['name']} (profile {record['profile']}, arm {record['arm']}) "
        f"into {out} in {record['seconds']:.0f}s; golden check {record['goldenCheck']['maxLogitScaledDiff']:.2g} <= {record['goldenCheck']['tolerance']:g}",
        f"  clean accuracy (PyTorch) t=0..{record['timesteps']}: {' '.join(f'{v:.2f}' for v in record['clean']['pytorch']['accuracy'])}",
    ]
    for a in record["attacks"]:
        p = a["pytorch"]["eightBit"]
        extra = f"; target {p['targetSuccess'][0]:.2f} -> {p['targetSuccess'][-1]:.2f}" if "targetSuccess" in p else ""
        lines.append(f"  {a['attack']} eps {a['epsilon']:g} through {a['through']}: accuracy t=0 {p['accuracy'][0]:.2f}, t={record['timesteps']} {p['accuracy'][-1]:.2f}{extra}")
    lines.append(f"next: npm run eval:adversarial -- {out}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    flush_denormals()
    try:
        return run(args)
    except AttackError as err:
        print(f"attack: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
