#!/usr/bin/env python3
"""Checkpoints of Predify networks as their users bring them, with seeded random weights.

    predify_fixtures.py --config NET.toml --backbone vgg16 --input-size 32 --layout package --out DIR

- `package`: DIR/pnet.pth, the state dict of the package's network, every key named as the
  package names it: backbone.*, pcoderN.pmodule.*, pcoderN.C_sqrt (PCoderN), the hyperparameter
  buffers ffm/fbm/erm (with a PCoder number unless shared) and the auxiliary parameters
  ff_part/fb_part/mem_part/errorm. Its hyperparameters differ from the TOML's (each value
  nudged), so that an import that reads the TOML instead of the buffers shows.
- `published`: DIR/pc1.pth .. pcN.pth (each predictor's state dict under 'pcoderweights' with a
  'pmodule.' prefix, as the paper's PEfficientNetB0 weights come) and DIR/backbone.pth, with
  --timm under timm's efficientnet_b0 names.
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402
import torchvision  # noqa: E402
from torch import nn  # noqa: E402

from predify.package_reference import measure_c_sqrt  # noqa: E402
from predify.predify_toml import build_predictor_expression, default_predictor, read_toml  # noqa: E402

NUDGE = 0.05


def random_backbone(arch: str, num_classes: int, size: tuple[int, int, int], seed: int) -> nn.Module:
    torch.manual_seed(seed)
    net = getattr(torchvision.models, arch)(weights=None, num_classes=num_classes)
    # Running statistics of its own activations, so that a random network's outputs stay O(1).
    bns = [m for m in net.modules() if isinstance(m, nn.BatchNorm2d)]
    for bn in bns:
        bn.reset_running_stats()
        bn.momentum = None
    if bns:
        net.train()
        with torch.no_grad():
            for _ in range(3):
                net(torch.randn(4, *size))
    return net.eval()


def default_shapes(net: nn.Module, cfg) -> tuple[list[tuple], list[tuple]]:
    """Each PCoder's (C, H, W) and the level below's at the config's input size, found with
    forward hooks as the package's generator finds them."""
    shapes = []
    hooks = [
        eval(f"net.{pc.module}", {"net": net}).register_forward_hook(lambda m, i, o: shapes.append(tuple(o.shape[1:])))  # noqa: S307
        for pc in cfg.pcoders
    ]
    with torch.no_grad():
        net(torch.ones(1, *cfg.input_size))
    for h in hooks:
        h.remove()
    return shapes, [tuple(cfg.input_size), *shapes[:-1]]


def timm_names(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """torchvision efficientnet_b0 keys renamed as timm names them (written as rules, not as
    the inverse of the importer's table, so that the two are checked against each other)."""
    rules = [
        (r"features\.0\.0\.", "conv_stem."),
        (r"features\.0\.1\.", "bn1."),
        (r"features\.8\.0\.", "conv_head."),
        (r"features\.8\.1\.", "bn2."),
        (r"classifier\.1\.", "classifier."),
        (r"features\.1\.(\d+)\.block\.0\.0\.", r"blocks.0.\1.conv_dw."),
        (r"features\.1\.(\d+)\.block\.0\.1\.", r"blocks.0.\1.bn1."),
        (r"features\.1\.(\d+)\.block\.1\.fc1\.", r"blocks.0.\1.se.conv_reduce."),
        (r"features\.1\.(\d+)\.block\.1\.fc2\.", r"blocks.0.\1.se.conv_expand."),
        (r"features\.1\.(\d+)\.block\.2\.0\.", r"blocks.0.\1.conv_pw."),
        (r"features\.1\.(\d+)\.block\.2\.1\.", r"blocks.0.\1.bn2."),
    ]
    inverted = {"0.0": "conv_pw", "0.1": "bn1", "1.0": "conv_dw", "1.1": "bn2", "2.fc1": "se.conv_reduce", "2.fc2": "se.conv_expand", "3.0": "conv_pwl", "3.1": "bn3"}
    out = {}
    for key, value in state.items():
        new = None
        for pattern, repl in rules:
            if re.match(pattern, key):
                new = re.sub(pattern, repl, key)
                break
        if new is None:
            m = re.match(r"features\.(\d+)\.(\d+)\.block\.(\d\.(?:fc\d|\d))\.(\w+)$", key)
            assert m, key
            new = f"blocks.{int(m[1]) - 1}.{m[2]}.{inverted[m[3]]}.{m[4]}"
        out[new] = value
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--config", required=True)
    ap.add_argument("--backbone", required=True)
    ap.add_argument("--input-size", type=int, required=True)
    ap.add_argument("--num-classes", type=int, default=10)
    ap.add_argument("--layout", choices=("package", "published"), required=True)
    ap.add_argument("--timm", action="store_true")
    ap.add_argument("--c-unset", action="store_true", help="store C_sqrt = -1, as before the network first ran")
    ap.add_argument("--seed", type=int, default=3)
    ap.add_argument("--out", required=True)
    args = ap.parse_args()

    cfg = read_toml(args.config)
    size = (cfg.input_size[0], args.input_size, args.input_size)
    net = random_backbone(args.backbone, args.num_classes, size, args.seed)
    torch.manual_seed(args.seed + 1)
    predictors = [
        build_predictor_expression(pc.predictor, cfg.imports) if pc.predictor else default_predictor(src, target)
        for pc, src, target in zip(cfg.pcoders, *default_shapes(net, cfg))
    ]
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)

    if args.layout == "published":
        backbone = net.state_dict()
        torch.save(timm_names(backbone) if args.timm else backbone, out / "backbone.pth")
        for i, p in enumerate(predictors, 1):
            torch.save({"pcoderweights": {f"pmodule.{k}": v for k, v in p.state_dict().items()}}, out / f"pc{i}.pth")
        return

    state = {f"backbone.{k}": v for k, v in net.state_dict().items()}
    for i, p in enumerate(predictors, 1):
        state.update({f"pcoder{i}.pmodule.{k}": v for k, v in p.state_dict().items()})
    hps = cfg.hyperparameters()
    if cfg.gradient_scaling:
        # Measured on a random image, not the importer's all-ones probe: the checkpoint's value
        # must be the one that is used.
        gen = torch.Generator().manual_seed(args.seed + 2)
        reps = []
        hooks = []
        for pc in cfg.pcoders:
            module = eval(f"net.{pc.module}", {"net": net})  # noqa: S307 - our own test configs
            hooks.append(module.register_forward_hook(lambda m, i, o: reps.append(o.detach())))
        with torch.no_grad():
            net(torch.randn(1, *size, generator=gen))
        for h in hooks:
            h.remove()
        for i, p in enumerate(predictors, 1):
            c = -1.0 if args.c_unset else measure_c_sqrt(p, reps[i - 1], gen)
            state[f"pcoder{i}.C_sqrt"] = torch.tensor(c, dtype=torch.float)
    def put(suffix: str, h: dict[str, float]) -> None:
        ff, fb, er = h["feedforward"] - NUDGE, h["feedback"] + NUDGE / 2, h["pc"] * 2
        state[f"ffm{suffix}"] = torch.tensor(ff)
        state[f"fbm{suffix}"] = torch.tensor(fb)
        state[f"erm{suffix}"] = torch.tensor(er)
        state[f"ff_part{suffix}"] = torch.tensor(0.0)
        state[f"fb_part{suffix}"] = torch.tensor(0.0)
        state[f"mem_part{suffix}"] = torch.tensor(0.0)
        state[f"errorm{suffix}"] = torch.tensor(er)

    if cfg.shared_hyperparameters:
        put("", hps[0])
    else:
        for i, h in enumerate(hps, 1):
            put(str(i), h)
    torch.save(state, out / "pnet.pth")


if __name__ == "__main__":
    main()
