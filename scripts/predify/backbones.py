"""Backbones: our own small CNN and torchvision's classifiers, cut into encoder blocks and a head
where their PCoders sit (tracing.py says where that may be)."""

from __future__ import annotations

import warnings
from collections import OrderedDict

import torch
from torch import nn

from .config import ModelConfig
from .tracing import CutError, cut


def fashion_cnn(num_classes: int = 10) -> nn.Sequential:
    """The default model's backbone: three conv stages on 28x28 grey images."""

    def stage(cin: int, cout: int, k: int) -> list[tuple[str, nn.Module]]:
        return [
            (f"conv{k}", nn.Conv2d(cin, cout, 3, padding=1, bias=False)),
            (f"bn{k}", nn.BatchNorm2d(cout)),
            (f"relu{k}", nn.ReLU()),
        ]

    layers: list[tuple[str, nn.Module]] = []
    layers += stage(1, 32, 1)
    layers += [("pool1", nn.MaxPool2d(2))]
    layers += stage(32, 64, 2)
    layers += [("pool2", nn.MaxPool2d(2))]
    layers += stage(64, 128, 3)
    layers += [
        ("pool3", nn.MaxPool2d(2)),
        ("flatten", nn.Flatten(1)),
        ("dropout", nn.Dropout(0.3)),
        ("fc", nn.Linear(128 * 3 * 3, num_classes)),
    ]
    return nn.Sequential(OrderedDict(layers))


def torchvision_classifiers() -> list[str]:
    """Every classification model the installed torchvision builds, by name."""
    import torchvision
    from torchvision.models import list_models

    return sorted(list_models(module=torchvision.models))


def torchvision_backbone(arch: str, num_classes: int) -> nn.Module:
    """torchvision's `arch` with random weights and `num_classes` outputs, in eval mode, with no
    module working in place (as the Predify package sets every module of the network)."""
    from torchvision.models import get_model

    if arch not in torchvision_classifiers():
        raise ValueError(f"unknown backbone {arch!r}: not a torchvision classification model")
    with warnings.catch_warnings():
        # GoogLeNet and Inception v3 warn that their default weight initialisation will change.
        warnings.simplefilter("ignore", FutureWarning)
        warnings.simplefilter("ignore", UserWarning)
        model = get_model(arch, weights=None, num_classes=num_classes).eval()
    for m in model.modules():
        if hasattr(m, "inplace"):
            m.inplace = False
    return model


def build_backbone(spec: dict) -> nn.Module:
    arch = spec["arch"]
    num_classes = int(spec.get("num_classes", 10))
    # Random weights are seeded so that a test model is the same on every machine.
    torch.manual_seed(int(spec.get("seed", 0)))
    if arch == "fashion-cnn":
        return fashion_cnn(num_classes).eval()
    return torchvision_backbone(arch, num_classes)


def split_backbone(model: nn.Module, cuts: list[str]) -> tuple[list[nn.Module], nn.Module]:
    """Encoder blocks E_1..E_n (E_i ends with the output of the module at cuts[i]) and the head
    H, cut from the backbone's traced forward pass (tracing.py)."""
    try:
        return cut(model, cuts)
    except CutError as err:
        raise ValueError(str(err)) from None


def split_config(model: nn.Module, cfg: ModelConfig) -> tuple[list[nn.Module], nn.Module]:
    return split_backbone(model, [pc.layer for pc in cfg.pcoders])
