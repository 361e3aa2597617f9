"""Backbones as flat sequences of named modules, cut into encoder blocks and a head.

Any backbone works if its forward pass is the composition of a list of modules: an
`nn.Sequential`, or a torchvision-style model with `features`, `avgpool` and `classifier`
(VGG, EfficientNet, ...), whose `features` children are listed one by one as `features.K`.
"""

from __future__ import annotations

from collections import OrderedDict

import torch
from torch import nn

from .config import ModelConfig


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


def build_backbone(spec: dict) -> nn.Module:
    arch = spec["arch"]
    num_classes = int(spec.get("num_classes", 10))
    # Random weights are seeded so that a test model is the same on every machine.
    torch.manual_seed(int(spec.get("seed", 0)))
    if arch == "fashion-cnn":
        model: nn.Module = fashion_cnn(num_classes)
    elif arch in ("vgg16", "efficientnet_b0"):
        import torchvision

        model = getattr(torchvision.models, arch)(weights=None, num_classes=num_classes)
    else:
        raise ValueError(f"unknown backbone arch {arch!r}: use fashion-cnn, vgg16 or efficientnet_b0")
    return model.eval()


def flatten_backbone(model: nn.Module) -> list[tuple[str, nn.Module]]:
    if isinstance(model, nn.Sequential):
        return list(model.named_children())
    if all(hasattr(model, a) for a in ("features", "avgpool", "classifier")):
        seq = [(f"features.{name}", m) for name, m in model.features.named_children()]
        return seq + [
            ("avgpool", model.avgpool),
            ("flatten", nn.Flatten(1)),
            ("classifier", model.classifier),
        ]
    raise ValueError(
        f"{type(model).__name__} is neither nn.Sequential nor a features/avgpool/classifier model"
    )


def _sequential(named: list[tuple[str, nn.Module]]) -> nn.Sequential:
    # Module names may not contain dots; the originals stay in the checkpoint.
    return nn.Sequential(OrderedDict((name.replace(".", "_"), m) for name, m in named))


def split_backbone(model: nn.Module, cuts: list[str]) -> tuple[list[nn.Sequential], nn.Sequential]:
    """Encoder blocks E_1..E_n (E_i ends with the layer named cuts[i]) and the head H."""
    seq = flatten_backbone(model)
    names = [name for name, _ in seq]
    blocks: list[nn.Sequential] = []
    start = 0
    for cut in cuts:
        if cut not in names:
            raise ValueError(f"PCoder layer {cut!r} is not in the backbone; layers are {names}")
        end = names.index(cut) + 1
        if end <= start:
            raise ValueError(f"PCoder layer {cut!r} is not after the previous PCoder's layer")
        blocks.append(_sequential(seq[start:end]))
        start = end
    if start == len(seq):
        raise ValueError("the last PCoder must leave at least one layer for the head")
    head = _sequential(seq[start:])
    return blocks, head


def split_config(model: nn.Module, cfg: ModelConfig) -> tuple[list[nn.Sequential], nn.Sequential]:
    return split_backbone(model, [pc.layer for pc in cfg.pcoders])
