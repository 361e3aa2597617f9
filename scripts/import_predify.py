#!/usr/bin/env python3
"""Import a network made with the Predify package into a predify-serve model directory.

    /usr/bin/python3 scripts/import_predify.py --config NET.toml --backbone vgg16 --weights PNET.pth --out DIR

Weights, in one of three forms:
  --weights PNET.pth             torch.save(pnet.state_dict()) of the package's network
  --predictor-weights PC1.pth .. one predictor state dict per PCoder, in order, as the paper's
    --backbone-weights NET.pth   feedback weights were published, plus the backbone's weights
                                 (torchvision's; for efficientnet_b0 also timm's)
  --random-weights SEED          seeded random weights, for trials and tests

The backbone is torchvision's vgg16 or efficientnet_b0. Module paths are the backbone's own
(features[3]); for efficientnet_b0, timm's act1 and blocks[k] are accepted too (the stem's
activation, and the block stages). Any failure exits 2 with one line, and leaves no model
directory behind. docs/import-predify.md says what is matched, and how it was checked.
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import sys
import tempfile
import time
from types import SimpleNamespace
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import torch  # noqa: E402
from torch import nn  # noqa: E402

from predify.backbones import flatten_backbone, split_backbone  # noqa: E402
from predify.checkpoints import (  # noqa: E402
    PackageCheckpoint,
    c_from_sqrt,
    is_timm_efficientnet,
    load_into,
    load_weights,
    predictor_state,
    tensors,
    timm_to_torchvision,
)
from predify.config import InputSpec, ModelConfig, PCoderSpec  # noqa: E402
from predify.export import export_model  # noqa: E402
from predify.hyperparameters import HyperparameterError, normalise  # noqa: E402
from predify.model import PredifyModel, calibrate_batchnorm  # noqa: E402
from predify.package_reference import PackageReference, error_scale, measure_c_sqrt  # noqa: E402
from predify.predify_toml import ConfigError, build_predictor_expression, default_predictor, read_toml  # noqa: E402

BACKBONES = ("vgg16", "efficientnet_b0")
IMAGENET_MEAN = [0.485, 0.456, 0.406]
IMAGENET_STD = [0.229, 0.224, 0.225]
GOLDEN_TIMESTEPS = 5


def build_backbone(arch: str, num_classes: int) -> nn.Module:
    import torchvision

    model = getattr(torchvision.models, arch)(weights=None, num_classes=num_classes).eval()
    # As the package does: no module of the network works in place.
    for m in model.modules():
        if hasattr(m, "inplace"):
            m.inplace = False
    return model


def imagenet_labels(arch: str) -> list[str]:
    import torchvision.models as tvm

    weights = {"vgg16": tvm.VGG16_Weights, "efficientnet_b0": tvm.EfficientNet_B0_Weights}[arch]
    return list(weights.IMAGENET1K_V1.meta["categories"])


_PATH = re.compile(r"[A-Za-z_]\w*(\[\d+\])*(\.[A-Za-z_]\w*(\[\d+\])*)*")


def _walk(root: nn.Module, path: str) -> nn.Module | None:
    node: nn.Module = root
    for name, index in re.findall(r"([A-Za-z_]\w*)|\[(\d+)\]", path):
        if name:
            child = node._modules.get(name) if isinstance(node, nn.Module) else None
            if child is None:
                return None
            node = child
        else:
            if not isinstance(node, (nn.Sequential, nn.ModuleList)) or int(index) >= len(node):
                return None
            node = node[int(index)]
    return node


def _alias(arch: str, path: str) -> str | None:
    if arch != "efficientnet_b0":
        return None
    if path == "act1":
        return "features[0]"
    m = re.fullmatch(r"blocks\[(\d+)\]", path)
    return f"features[{int(m[1]) + 1}]" if m and int(m[1]) < 7 else None


def _last_leaf(module: nn.Module) -> nn.Module:
    while isinstance(module, nn.Sequential) and len(module) > 0:
        module = module[len(module) - 1]
    return module


def resolve_module(backbone: nn.Module, arch: str, path: str, pcoder: int) -> tuple[str, nn.Module]:
    """The step of the flattened backbone whose output the module at `path` gives, and the module."""
    if not _PATH.fullmatch(path):
        raise ConfigError(f"PCoder {pcoder}: module {path!r} is not a module path such as features[3]")
    module = _walk(backbone, path)
    if module is None and (alias := _alias(arch, path)):
        module = _walk(backbone, alias)
    if module is None:
        raise ConfigError(f"PCoder {pcoder}: module {path!r} is not in the {arch} backbone")
    for name, step in flatten_backbone(backbone):
        if step is module or _last_leaf(step) is module:
            return name, module
    raise ConfigError(
        f"PCoder {pcoder}: module {path!r} ends inside a step of the {arch} backbone; "
        "a PCoder must sit where a step's output leaves it (e.g. features[3], not features[0][1])"
    )


def shapes_at(blocks: list[nn.Module], size: tuple[int, int, int]) -> list[tuple[int, int, int]]:
    out = [size]
    with torch.no_grad():
        h = torch.ones(1, *size)
        for block in blocks:
            h = block(h)
            if h.dim() != 4:
                raise ConfigError("every PCoder must sit on a 4-D (N, C, H, W) representation")
            out.append(tuple(h.shape[1:]))  # type: ignore[arg-type]
    return out


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--config", required=True, help="the network's Predify TOML")
    ap.add_argument("--backbone", required=True, choices=BACKBONES)
    src = ap.add_mutually_exclusive_group(required=True)
    src.add_argument("--weights", help="state dict of the package's network (torch.save(pnet.state_dict()))")
    src.add_argument("--predictor-weights", nargs="+", metavar="FILE", help="one predictor state dict per PCoder, in order")
    src.add_argument("--random-weights", type=int, metavar="SEED", help="seeded random weights (trials and tests)")
    ap.add_argument("--backbone-weights", help="the backbone's state dict, with --predictor-weights")
    ap.add_argument("--out", required=True, help="model directory to write (replaced if it exists)")
    ap.add_argument("--input-size", type=int, help="export at N x N instead of the config's input_size")
    ap.add_argument("--name", help="model name (default: the config's name, lower case)")
    ap.add_argument("--labels", help="file with one class name per line (default: ImageNet's for 1000 classes)")
    ap.add_argument("--mean", type=float, nargs="+", default=IMAGENET_MEAN)
    ap.add_argument("--std", type=float, nargs="+", default=IMAGENET_STD)
    ap.add_argument("--resize", choices=("contain", "cover", "fill"), default="cover")
    ap.add_argument("--golden", type=int, default=2, help="golden cases computed with the package's semantics (0: none)")
    ap.add_argument("--c-seed", type=int, default=0, help="seed of the perturbations that measure C when the checkpoint has none")
    args = ap.parse_args(argv)
    if args.backbone_weights and not args.predictor_weights:
        ap.error("--backbone-weights goes with --predictor-weights")
    if args.predictor_weights and not args.backbone_weights:
        ap.error("--predictor-weights needs --backbone-weights")
    return args


def num_classes_of(state: dict[str, torch.Tensor], arch: str) -> int | None:
    key = {"vgg16": "classifier.6.weight", "efficientnet_b0": "classifier.1.weight"}[arch]
    return int(state[key].shape[0]) if key in state else None


def build_network(args: argparse.Namespace) -> tuple[PredifyModel, PackageReference, dict]:
    """The imported network as a PredifyModel, its package-semantics reference, and a record of
    where it came from."""
    cfg = read_toml(args.config)
    n = len(cfg.pcoders)
    ckpt: PackageCheckpoint | None = None
    backbone_state: dict[str, torch.Tensor] | None = None
    layout = "random"
    if args.weights:
        layout = "package"
        ckpt = PackageCheckpoint(tensors(load_weights(args.weights, "checkpoint"), "checkpoint"), n)
        backbone_state = ckpt.backbone
    elif args.predictor_weights:
        layout = "published"
        if len(args.predictor_weights) != n:
            raise ConfigError(f"--predictor-weights: {len(args.predictor_weights)} files for {n} PCoders")
        backbone_state = tensors(load_weights(args.backbone_weights, "backbone weights"), "backbone weights")
    if backbone_state is not None and is_timm_efficientnet(backbone_state):
        if args.backbone != "efficientnet_b0":
            raise ConfigError(f"the backbone weights are timm's efficientnet, not {args.backbone}")
        backbone_state = timm_to_torchvision(backbone_state)
        layout += "+timm"

    classes = (num_classes_of(backbone_state, args.backbone) if backbone_state else None) or 1000
    torch.manual_seed(args.random_weights or 0)
    backbone = build_backbone(args.backbone, classes)
    if backbone_state is not None:
        load_into(backbone, backbone_state, "backbone weights")

    cuts, modules = [], []
    for i, pc in enumerate(cfg.pcoders, 1):
        name, module = resolve_module(backbone, args.backbone, pc.module, i)
        cuts.append(name)
        modules.append(module)
    try:
        blocks, _head = split_backbone(backbone, cuts)
    except ValueError as err:
        raise ConfigError(str(err)) from None
    channels = cfg.input_size[0]
    size = (channels, args.input_size or cfg.input_size[1], args.input_size or cfg.input_size[2])
    shapes = shapes_at(blocks, size)
    # The default rule is applied at the config's own size, as the package's generator does.
    config_shapes = shapes if size == cfg.input_size else shapes_at(blocks, cfg.input_size)

    predictors: list[nn.Module] = []
    for i, pc in enumerate(cfg.pcoders):
        where = f"PCoder {i + 1}"
        try:
            if pc.predictor is None:
                predictor = default_predictor(config_shapes[i + 1], config_shapes[i])
            else:
                predictor = build_predictor_expression(pc.predictor, cfg.imports)
        except ConfigError as err:
            raise ConfigError(f"{where}: predictor: {err}") from None
        with torch.no_grad():
            try:
                got = tuple(predictor(torch.zeros(1, *shapes[i + 1])).shape[1:])
            except RuntimeError as err:
                raise ConfigError(f"{where}: predictor cannot take the representation {shapes[i + 1]}: {str(err).splitlines()[0]}") from None
        if got != shapes[i]:
            raise ConfigError(f"{where}: predictor output {got} does not match the level below {shapes[i]}")
        if ckpt is not None:
            load_into(predictor, ckpt.predictors[i], f"checkpoint's pcoder{i + 1}.pmodule")
        elif args.predictor_weights:
            path = args.predictor_weights[i]
            load_into(predictor, predictor_state(load_weights(path, f"{where} weights"), path), f"{where} weights {path}")
        predictors.append(predictor.eval())

    hps = cfg.hyperparameters()
    if ckpt is not None:
        hps = ckpt.hyperparameters(hps, cfg.shared_hyperparameters)
    try:
        sets = normalise([{"beta": h["feedforward"], "lambda": h["feedback"], "alpha": h["pc"]} for h in hps])
    except HyperparameterError as err:
        raise ConfigError(f"hyperparameters: {err}") from None

    if layout == "random":
        # Only the backbone and the input shape are read: no need for the whole model yet.
        calibrate_batchnorm(SimpleNamespace(backbone=backbone, input_shape=size), args.random_weights)

    c_sqrt: list[float | None] = [None] * n
    measured = [False] * n
    if cfg.gradient_scaling:
        reps = _representations(blocks, size)
        gen = torch.Generator().manual_seed(args.c_seed)
        for i in range(n):
            stored = c_from_sqrt(ckpt.c_sqrt[i]) if ckpt is not None else None
            if ckpt is not None and ckpt.c_sqrt[i] is None:
                raise ConfigError(f"checkpoint has no pcoder{i + 1}.C_sqrt, but the config says gradient_scaling = true (a PCoderN network)")
            if stored is None:
                stored = measure_c_sqrt(predictors[i], reps[i], gen)
                measured[i] = True
            c_sqrt[i] = stored
    elif ckpt is not None and any(c is not None for c in ckpt.c_sqrt):
        raise ConfigError("checkpoint has pcoderN.C_sqrt (a PCoderN network), but the config says gradient_scaling = false")

    influences = [c * c if c is not None else 1.0 for c in c_sqrt]
    model = PredifyModel(_model_config(cfg, args, cuts, sets, size, classes), backbone, predictors, influences)
    if cfg.gradient_scaling:
        # The package's own float32 K / sqrt(C), not K / sqrt(C * C) in double.
        for info, c in zip(model.info, c_sqrt):
            info.scale = error_scale(info.elements, c)
    reference = PackageReference(
        backbone, modules, predictors, [(h["beta"], h["lambda"], h["alpha"]) for h in sets], c_sqrt
    )
    source = {
        "format": "predify-toml",
        "config": Path(args.config).name,
        "backbone": args.backbone,
        "weights": layout,
        "configInputSize": list(cfg.input_size),
        "sharedHyperparameters": cfg.shared_hyperparameters,
        "cSqrt": c_sqrt,
        "cMeasuredByImport": measured,
        "modules": [pc.module for pc in cfg.pcoders],
    }
    return model, reference, source


def import_network(args: argparse.Namespace, out: Path) -> dict:
    model, reference, source = build_network(args)
    gen = torch.Generator().manual_seed(1234)
    golden = torch.randn(args.golden, *model.input_shape, generator=gen) if args.golden else None
    return export_model(
        model,
        out,
        golden_inputs=golden,
        extra={"source": source},
        keep_profiles=False,
        reference=reference.run,
        golden_timesteps=GOLDEN_TIMESTEPS,
    )


def _representations(blocks: list[nn.Module], size: tuple[int, int, int]) -> list[torch.Tensor]:
    """Each PCoder's t = 0 representation of an all-ones image (the package's own probe input)."""
    reps = []
    with torch.no_grad():
        h = torch.ones(1, *size)
        for block in blocks:
            h = block(h)
            reps.append(h)
    return reps


def _model_config(cfg, args, cuts, sets, size, classes) -> ModelConfig:
    if args.labels:
        labels = [line.strip() for line in Path(args.labels).read_text().splitlines() if line.strip()]
    elif classes == 1000:
        labels = imagenet_labels(args.backbone)
    else:
        labels = [f"class{k}" for k in range(classes)]
    if len(labels) != classes:
        raise ConfigError(f"--labels: {len(labels)} names for {classes} classes")
    if len(args.mean) != size[0] or len(args.std) != size[0]:
        raise ConfigError(f"--mean and --std need {size[0]} values")
    name = args.name or cfg.name.lower()
    return ModelConfig(
        name=name,
        backbone={"arch": args.backbone, "num_classes": classes},
        input=InputSpec(channels=size[0], height=size[1], width=size[2], mean=args.mean, std=args.std, resize=args.resize),
        labels=labels,
        pcoders=[
            PCoderSpec(layer=cut, predictor=[], beta=h["beta"], lam=h["lambda"], alpha=h["alpha"])
            for cut, h in zip(cuts, sets)
        ],
        gradient_scaling=cfg.gradient_scaling,
        description=f"{cfg.name} imported from {Path(args.config).name} ({args.backbone})",
    )


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    out = Path(args.out)
    started = time.time()
    # Written next to its destination and moved into place only when complete.
    out.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=f".{out.name}.importing-", dir=out.parent))
    try:
        manifest = import_network(args, work)
    except (ConfigError, HyperparameterError) as err:
        shutil.rmtree(work, ignore_errors=True)
        print(f"import_predify: {err}", file=sys.stderr)
        return 2
    except BaseException:
        shutil.rmtree(work, ignore_errors=True)
        raise
    if out.exists():
        shutil.rmtree(out)
    work.rename(out)
    scales = ", ".join(f"{pc['gradientScale']['scale']:.4g}" for pc in manifest["pcoders"])
    print(
        f"imported {manifest['name']}: {len(manifest['pcoders'])} PCoders, input {manifest['input']['height']}x"
        f"{manifest['input']['width']}, gradient scales [{scales}], to {out} in {time.time() - started:.1f}s"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
