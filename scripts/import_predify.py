#!/usr/bin/env python3
"""Import a network made with the Predify package into a predify-serve model directory.

    /usr/bin/python3 scripts/import_predify.py --config NET.toml --backbone resnet18 --weights PNET.pth --out DIR

Weights, in one of three forms:
  --weights PNET.pth             torch.save(pnet.state_dict()) of the package's network
  --predictor-weights PC1.pth .. one predictor state dict per PCoder, in order, as the paper's
    --backbone-weights NET.pth   feedback weights were published, plus the backbone's weights
                                 (torchvision's; for efficientnet_b0 also timm's)
  --random-weights SEED          seeded random weights, for trials and tests

The backbone, one of:
  --backbone NAME                any torchvision classification model (resnet18, mobilenet_v3_small,
                                 convnext_tiny, densenet121, vgg16, efficientnet_b0, ...)
  --backbone-module FILE.py:FACTORY
                                 your own network: FILE.py is imported and FACTORY() called, so it
                                 RUNS THAT FILE's CODE. Use only files you trust.

Module paths are the package's own: attribute paths with indices (layer2, features[3],
layer3[1].relu). A PCoder may sit where the whole state of the computation passes through the
module's output: on the main path, not inside a residual branch; the refusal names the nearest
places that work. For efficientnet_b0, timm's act1 and blocks[k] are accepted too. Any failure
exits 2 with one line and leaves no model directory behind. docs/import-predify.md says what is
matched, and how it was checked.
"""

from __future__ import annotations

import argparse
import difflib
import json
import os
import re
import sys
import time
from types import SimpleNamespace
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import torch  # noqa: E402
from torch import nn  # noqa: E402

from predify.backbones import torchvision_backbone, torchvision_classifiers  # noqa: E402
from predify.checkpoints import (  # noqa: E402
    PackageCheckpoint,
    backbone_state as backbone_state_of,
    c_from_sqrt,
    is_timm_efficientnet,
    load_into,
    load_weights,
    predictor_state,
    tensors,
    timm_to_torchvision,
)
from predify.config import InputSpec, ModelConfig, PCoderSpec  # noqa: E402
from predify.directories import write_whole  # noqa: E402
from predify.export import export_model  # noqa: E402
from predify.hyperparameters import HyperparameterError, normalise  # noqa: E402
from predify.model import PredifyModel, calibrate_batchnorm  # noqa: E402
from predify.package_reference import PackageReference, error_scale, measure_c_sqrt  # noqa: E402
from predify.predify_toml import ConfigError, build_predictor_expression, default_predictor, read_toml  # noqa: E402
from predify.tracing import CutError, TracedBackbone, package_path, qualified_name, shapes_at  # noqa: E402

IMAGENET_MEAN = [0.485, 0.456, 0.406]
IMAGENET_STD = [0.229, 0.224, 0.225]
GOLDEN_TIMESTEPS = 5


def imagenet_labels() -> list[str]:
    from torchvision.models._meta import _IMAGENET_CATEGORIES

    return list(_IMAGENET_CATEGORIES)


def build_backbone(arch: str, num_classes: int) -> nn.Module:
    try:
        return torchvision_backbone(arch, num_classes)
    except ValueError as err:
        raise ConfigError(f"--backbone: {err}") from None


def classes_in(state: dict[str, torch.Tensor], imagenet: nn.Module) -> int | None:
    """The number of classes a torchvision backbone's weights were trained for: the length of
    the tensors that have 1000 rows in the ImageNet model (the last layer's weight and bias)."""
    reference = imagenet.state_dict()
    rows = {int(state[k].shape[0]) for k, v in reference.items() if v.dim() >= 1 and v.shape[0] == 1000 and k in state and state[k].dim() >= 1}
    return rows.pop() if len(rows) == 1 else None


def user_backbone(spec: str) -> tuple[nn.Module, str]:
    """The network FACTORY() in FILE.py returns, and the file's sha256. Runs the file."""
    file, sep, factory = spec.rpartition(":")
    if not sep or not file or not factory.isidentifier():
        raise ConfigError(f"--backbone-module {spec!r}: write FILE.py:FACTORY, e.g. mynet.py:build")
    path = Path(file)
    if not path.is_file():
        raise ConfigError(f"--backbone-module: {file}: no such file")
    import hashlib
    import importlib.util

    name = f"predify_user_backbone_{hashlib.sha256(str(path.resolve()).encode()).hexdigest()[:12]}"
    loader = importlib.util.spec_from_file_location(name, path)
    if loader is None or loader.loader is None:
        raise ConfigError(f"--backbone-module: {file} cannot be imported as a Python module")
    module = importlib.util.module_from_spec(loader)
    sys.path.insert(0, str(path.resolve().parent))  # so that it can import its neighbours
    try:
        loader.loader.exec_module(module)
        build = getattr(module, factory, None)
        if not callable(build):
            raise ConfigError(f"--backbone-module: {file} has no function {factory}")
        net = build()
    except ConfigError:
        raise
    except Exception as err:
        raise ConfigError(f"--backbone-module: {file}: {factory}() failed: {type(err).__name__}: {str(err).strip().splitlines()[0] if str(err).strip() else ''}") from None
    finally:
        sys.path.remove(str(path.resolve().parent))
    if not isinstance(net, nn.Module):
        raise ConfigError(f"--backbone-module: {factory}() returned {type(net).__name__}, not a torch.nn.Module")
    net.eval()
    for m in net.modules():
        if hasattr(m, "inplace"):
            m.inplace = False
    return net, hashlib.sha256(path.read_bytes()).hexdigest()


def _alias(arch: str, path: str) -> str | None:
    """timm's efficientnet_b0 names for the places torchvision's names differently."""
    if arch != "efficientnet_b0":
        return None
    if path == "act1":
        return "features[0]"
    m = re.fullmatch(r"blocks\[(\d+)\]", path)
    return f"features[{int(m[1]) + 1}]" if m and int(m[1]) < 7 else None


def resolve_places(traced: TracedBackbone, arch: str, paths: list[str]) -> list[str]:
    """Each PCoder's module as torch names it, checked to be a place a PCoder may sit."""
    names = []
    for i, path in enumerate(paths, 1):
        alias = _alias(arch, path)
        if alias and qualified_name(path) not in traced.modules:
            path = alias
        try:
            traced.place(path, i)
        except CutError as err:
            raise ConfigError(str(err)) from None
        names.append(qualified_name(path))
    seen: dict[str, int] = {}
    for i, name in enumerate(names, 1):
        node = traced.calls_of(name)[0]
        twin = next((other for other in seen if traced.calls_of(other)[0] is node), None)
        if twin is not None:
            raise ConfigError(
                f"PCoders {seen[twin]} and {i} sit at the same place ({package_path(twin)} and {package_path(name)} give the same output)"
            )
        seen[name] = i
    return names


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--config", required=True, help="the network's Predify TOML")
    which = ap.add_mutually_exclusive_group(required=True)
    which.add_argument("--backbone", metavar="NAME", help="a torchvision classification model (resnet18, convnext_tiny, ...)")
    which.add_argument(
        "--backbone-module",
        metavar="FILE.py:FACTORY",
        help="your own network, FACTORY() from FILE.py: the file is imported and run, so use only files you trust",
    )
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
    if args.backbone and args.backbone not in torchvision_classifiers():
        close = difflib.get_close_matches(args.backbone, torchvision_classifiers(), n=3)
        hint = f" (did you mean {', '.join(close)}?)" if close else ""
        ap.error(f"--backbone {args.backbone!r} is not a torchvision classification model{hint}; for your own network use --backbone-module FILE.py:FACTORY")
    if args.backbone_weights and not args.predictor_weights:
        ap.error("--backbone-weights goes with --predictor-weights")
    if args.predictor_weights and not args.backbone_weights:
        ap.error("--predictor-weights needs --backbone-weights")
    return args


def build_network(args: argparse.Namespace) -> tuple[PredifyModel, PackageReference, dict]:
    """The imported network as a PredifyModel, its package-semantics reference, and a record of
    where it came from."""
    cfg = read_toml(args.config)
    n = len(cfg.pcoders)
    arch = args.backbone or "module"
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
    elif getattr(args, "backbone_weights", None):
        # The backbone's weights alone (the feedback trainer's start): fresh predictors.
        layout = "backbone"
        backbone_state = backbone_state_of(load_weights(args.backbone_weights, "backbone weights"), "backbone weights")
    if backbone_state is not None and is_timm_efficientnet(backbone_state):
        if args.backbone != "efficientnet_b0":
            raise ConfigError(f"the backbone weights are timm's efficientnet, not {arch}")
        backbone_state = timm_to_torchvision(backbone_state)
        layout += "+timm"

    torch.manual_seed(args.random_weights or 0)
    if args.backbone_module:
        backbone, module_sha = user_backbone(args.backbone_module)
        origin = {"module": Path(args.backbone_module.rpartition(":")[0]).name, "factory": args.backbone_module.rpartition(":")[2], "sha256": module_sha}
    else:
        torch.manual_seed(args.random_weights or 0)
        backbone = build_backbone(args.backbone, 1000)
        # Built again only when the weights are for another number of classes.
        classes = (classes_in(backbone_state, backbone) if backbone_state else None) or 1000
        if classes != 1000:
            torch.manual_seed(args.random_weights or 0)
            backbone = build_backbone(args.backbone, classes)
        origin = {"torchvision": args.backbone}
    if backbone_state is not None:
        load_into(backbone, backbone_state, "backbone weights")

    try:
        traced = TracedBackbone(backbone, f"the {arch} backbone")
    except CutError as err:
        raise ConfigError(str(err)) from None
    names = resolve_places(traced, arch, [pc.module for pc in cfg.pcoders])
    try:
        blocks, _head = traced.split([traced.calls_of(name)[0] for name in names])
    except CutError as err:
        raise ConfigError(str(err)) from None
    channels = cfg.input_size[0]
    size = (channels, args.input_size or cfg.input_size[1], args.input_size or cfg.input_size[2])
    paths = [pc.module for pc in cfg.pcoders]
    try:
        shapes = shapes_at(blocks, size, paths)
        # The default rule is applied at the config's own size, as the package's generator does.
        config_shapes = shapes if size == cfg.input_size else shapes_at(blocks, cfg.input_size, paths)
        with torch.no_grad():
            logits = _head(_run(blocks, size))
    except CutError as err:
        raise ConfigError(str(err)) from None
    except RuntimeError as err:
        raise ConfigError(f"the backbone cannot take a {size[1]}x{size[2]} image: {str(err).splitlines()[0]}") from None
    if logits.dim() != 2:
        raise ConfigError(f"the backbone's output is {tuple(logits.shape)}, not (N, classes) logits")
    classes = int(logits.shape[1])

    predictors: list[nn.Module] = []
    if layout == "backbone":
        torch.manual_seed(getattr(args, "predictor_seed", 0))
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

    toml_sets = cfg.hyperparameters()
    origins = cfg.hyperparameter_origins()
    hps = toml_sets
    if ckpt is not None:
        chosen = ckpt.hyperparameters(toml_sets, cfg.shared_hyperparameters)
        hps = [h for h, _ in chosen]
        origins = ["checkpoint" if from_buffers else origin_ for (_, from_buffers), origin_ in zip(chosen, origins)]
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
    model = PredifyModel(_model_config(cfg, args, names, sets, size, classes), backbone, predictors, influences)
    if cfg.gradient_scaling:
        # The package's own float32 K / sqrt(C), not K / sqrt(C * C) in double.
        for info, c in zip(model.info, c_sqrt):
            info.scale = error_scale(info.elements, c)
    reference = PackageReference(
        backbone, [traced.modules[name] for name in names], predictors, [(h["beta"], h["lambda"], h["alpha"]) for h in sets], c_sqrt
    )
    source = {
        "format": "predify-toml",
        "config": Path(args.config).name,
        "backbone": args.backbone or f"{origin['module']}:{origin['factory']}",
        "backboneOrigin": origin,
        "weights": layout,
        "configInputSize": list(cfg.input_size),
        "sharedHyperparameters": cfg.shared_hyperparameters,
        "hyperparameterOrigins": origins,
        "tomlHyperparameters": [{"beta": h["feedforward"], "lambda": h["feedback"], "alpha": h["pc"]} for h in toml_sets],
        "cSqrt": c_sqrt,
        "cMeasuredByImport": measured,
        "modules": paths,
        "labels": "file" if args.labels else ("imagenet" if classes == 1000 else "placeholder"),
    }
    return model, reference, source


def _run(blocks: list[nn.Module], size: tuple[int, int, int]) -> torch.Tensor:
    h = torch.ones(1, *size)
    for block in blocks:
        h = block(h)
    return h


def import_network(args: argparse.Namespace, out: Path, extra: dict | None = None) -> dict:
    model, reference, source = build_network(args)
    gen = torch.Generator().manual_seed(1234)
    golden = torch.randn(args.golden, *model.input_shape, generator=gen) if args.golden else None
    return export_model(
        model,
        out,
        golden_inputs=golden,
        extra={"source": source, **(extra or {})},
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
        labels = imagenet_labels()
    else:
        # Placeholder names: said on stderr now and in the summary (the manifest records it too).
        labels = [f"class{k}" for k in range(classes)]
        print(f"import_predify: warning: the model has {classes} classes and no --labels: they are named class0..class{classes - 1}", file=sys.stderr)
    if len(labels) != classes:
        raise ConfigError(f"--labels: {len(labels)} names for {classes} classes")
    if len(args.mean) != size[0] or len(args.std) != size[0]:
        raise ConfigError(f"--mean and --std need {size[0]} values")
    name = args.name or cfg.name.lower()
    return ModelConfig(
        name=name,
        backbone={"arch": args.backbone or args.backbone_module, "num_classes": classes},
        input=InputSpec(channels=size[0], height=size[1], width=size[2], mean=args.mean, std=args.std, resize=args.resize),
        labels=labels,
        pcoders=[
            PCoderSpec(layer=cut, predictor=[], beta=h["beta"], lam=h["lambda"], alpha=h["alpha"])
            for cut, h in zip(cuts, sets)
        ],
        gradient_scaling=cfg.gradient_scaling,
        description=f"{cfg.name} imported from {Path(args.config).name} ({args.backbone or Path(args.backbone_module).name})",
    )


def publish_permissions(root: Path) -> None:
    """A model directory readable by everyone, as any served model directory should be: the
    server (in the container, a non-root user) must read what was written as root. mkdtemp
    makes its directory 0700, whatever the umask."""
    for path in [root, *root.rglob("*")]:
        os.chmod(path, 0o755 if path.is_dir() else 0o644)


def summary(manifest: dict, out: Path, seconds: float) -> str:
    """What was imported and with which values, each with where it came from."""
    source = manifest["source"]
    lines = [
        f"imported {manifest['name']}: {len(manifest['pcoders'])} PCoders on {source['backbone']}, "
        f"input {manifest['input']['height']}x{manifest['input']['width']}, weights: {source['weights']}, to {out} in {seconds:.1f}s"
    ]
    for i, pc in enumerate(manifest["pcoders"]):
        h = pc["hyperparameters"]
        origin = source["hyperparameterOrigins"][i]
        toml = source["tomlHyperparameters"][i]
        top = i == len(manifest["pcoders"]) - 1
        differs = origin == "checkpoint" and any(abs((0.0 if top and k == "lambda" else toml[k]) - h[k]) > 1e-6 for k in h)
        note = f" (the TOML says {toml['beta']:g}/{toml['lambda']:g}/{toml['alpha']:g})" if differs else ""
        scale = pc["gradientScale"]
        if not manifest["gradientScaling"]:
            gradient = "no gradient scaling"
        else:
            c_from = "measured by the import" if source["cMeasuredByImport"][i] else "C_sqrt from the checkpoint"
            gradient = f"gradient scale {scale['scale']:.4g} ({c_from})"
        lines.append(
            f"  {pc['name']} at {source['modules'][i]} {'x'.join(map(str, pc['shape']))}: "
            f"beta/lambda/alpha {h['beta']:g}/{h['lambda']:g}/{h['alpha']:g} from the {origin}{note}{'; lambda unused at the top' if top else ''}; {gradient}"
        )
    if source.get("labels") == "placeholder":
        lines.append(f"  labels: placeholders class0..class{len(manifest['labels']) - 1} (no --labels given)")
    return "\n".join(lines)


def import_to(args: argparse.Namespace, out: Path, extra: dict | None = None) -> dict:
    """import_network into `out`, written next to it and moved into place only when complete:
    on any failure nothing is left at `out` (an older directory there stays as it was)."""

    def make(work: Path) -> dict:
        manifest = import_network(args, work, extra)
        publish_permissions(work)
        return manifest

    return write_whole(out, "importing", make)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    out = Path(args.out)
    started = time.time()
    try:
        manifest = import_to(args, out)
    except (ConfigError, HyperparameterError) as err:
        print(f"import_predify: {err}", file=sys.stderr)
        return 2
    print(summary(manifest, out, time.time() - started))
    return 0


if __name__ == "__main__":
    sys.exit(main())
