"""Model configuration: which backbone, where the PCoders sit, what their predictors are.

A config is a JSON file in the spirit of the Predify package's YAML configs. Example:

    {
      "name": "fashion-pc",
      "backbone": {"arch": "fashion-cnn", "num_classes": 10},
      "input": {"channels": 1, "height": 28, "width": 28, "mean": [0.286], "std": [0.353]},
      "labels": ["T-shirt/top", ...],
      "hyperparameters": {"beta": 0.8, "lambda": 0.1, "alpha": 0.01},
      "gradient_scaling": true,
      "pcoders": [
        {"layer": "3"},
        {"layer": "7", "predictor": [{"type": "upsample", "mode": "bilinear"},
                                      {"type": "conv", "kernel": 3, "padding": 1}]}
      ]
    }

`layer` is a module path into the backbone (`relu1`, `features.3` or `features[3]`); the PCoder
replaces that module's output, which must carry the whole state of the computation
(tracing.py). A predictor is a list of layers applied in order; the last convolution's output
channels default to the channel count of the level below, and an upsample without `size` goes
to the spatial size of the level below. Hyperparameters may be set per PCoder, overriding the
shared set; they follow the rule in hyperparameters.py (the top PCoder's lambda is ignored).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .hyperparameters import HyperparameterError
from .hyperparameters import normalise as normalise_hyperparameters

DEFAULT_PREDICTOR: list[dict[str, Any]] = [
    {"type": "upsample", "mode": "bilinear"},
    {"type": "conv_transpose", "kernel": 3, "stride": 1, "padding": 1},
]

DEFAULT_HYPERPARAMETERS = {"beta": 0.8, "lambda": 0.1, "alpha": 0.01}

PREDICTOR_LAYER_TYPES = {"conv", "conv_transpose", "relu", "upsample"}


class ConfigError(ValueError):
    pass


@dataclass
class InputSpec:
    channels: int
    height: int
    width: int
    mean: list[float]
    std: list[float]
    # How an arbitrary image is brought to height x width: "contain" letterboxes on
    # `background`, "cover" centre-crops, "fill" stretches.
    resize: str = "contain"
    background: list[int] = field(default_factory=lambda: [0, 0, 0])

    def to_manifest(self) -> dict[str, Any]:
        return {
            "channels": self.channels,
            "height": self.height,
            "width": self.width,
            "colorspace": "grey" if self.channels == 1 else "rgb",
            "resize": self.resize,
            "background": self.background,
            "mean": self.mean,
            "std": self.std,
            "scale": 1 / 255,
        }


@dataclass
class PCoderSpec:
    layer: str
    predictor: list[dict[str, Any]]
    beta: float
    lam: float
    alpha: float


@dataclass
class ModelConfig:
    name: str
    backbone: dict[str, Any]
    input: InputSpec
    labels: list[str]
    pcoders: list[PCoderSpec]
    gradient_scaling: bool
    description: str = ""
    raw: dict[str, Any] = field(default_factory=dict)


def _require(obj: dict[str, Any], key: str, where: str) -> Any:
    if key not in obj:
        raise ConfigError(f"{where}: missing field '{key}'")
    return obj[key]


def _check_predictor(layers: list[dict[str, Any]], where: str) -> None:
    if not layers:
        raise ConfigError(f"{where}: predictor is empty")
    for j, layer in enumerate(layers):
        kind = layer.get("type")
        if kind not in PREDICTOR_LAYER_TYPES:
            raise ConfigError(
                f"{where}.predictor[{j}]: type {kind!r} is not one of {sorted(PREDICTOR_LAYER_TYPES)}"
            )
        if kind == "upsample" and layer.get("mode", "bilinear") not in ("bilinear", "nearest"):
            raise ConfigError(f"{where}.predictor[{j}]: upsample mode must be bilinear or nearest")
    if not any(layer["type"] in ("conv", "conv_transpose") for layer in layers):
        raise ConfigError(f"{where}: predictor needs at least one convolution")


def parse_config(raw: dict[str, Any], where: str = "config") -> ModelConfig:
    inp = _require(raw, "input", where)
    channels = int(_require(inp, "channels", f"{where}.input"))
    input_spec = InputSpec(
        channels=channels,
        height=int(_require(inp, "height", f"{where}.input")),
        width=int(_require(inp, "width", f"{where}.input")),
        mean=[float(v) for v in inp.get("mean", [0.0] * channels)],
        std=[float(v) for v in inp.get("std", [1.0] * channels)],
        resize=inp.get("resize", "contain"),
        background=inp.get("background", [0, 0, 0]),
    )
    if len(input_spec.mean) != channels or len(input_spec.std) != channels:
        raise ConfigError(f"{where}.input: mean and std need one value per channel ({channels})")
    if input_spec.resize not in ("contain", "cover", "fill"):
        raise ConfigError(f"{where}.input.resize: must be contain, cover or fill")

    shared = {**DEFAULT_HYPERPARAMETERS, **raw.get("hyperparameters", {})}
    raw_pcoders = _require(raw, "pcoders", where)
    if not raw_pcoders:
        raise ConfigError(f"{where}.pcoders: at least one PCoder is needed")
    layers, predictors, sets = [], [], []
    for i, pc in enumerate(raw_pcoders):
        here = f"{where}.pcoders[{i}]"
        predictor = pc.get("predictor", DEFAULT_PREDICTOR)
        _check_predictor(predictor, here)
        layers.append(str(_require(pc, "layer", here)))
        predictors.append(predictor)
        sets.append({**shared, **pc.get("hyperparameters", {})})
    try:
        sets = normalise_hyperparameters(sets)
    except HyperparameterError as err:
        raise ConfigError(f"{where}.pcoders: {err}") from None
    pcoders = [
        PCoderSpec(layer=layer, predictor=predictor, beta=h["beta"], lam=h["lambda"], alpha=h["alpha"])
        for layer, predictor, h in zip(layers, predictors, sets)
    ]

    labels_raw = _require(raw, "labels", where)
    if isinstance(labels_raw, dict):  # {"generate": N}: placeholder names for random test models
        labels = [f"class{k}" for k in range(int(_require(labels_raw, "generate", f"{where}.labels")))]
    else:
        labels = [str(label) for label in labels_raw]
    num_classes = int(raw["backbone"].get("num_classes", len(labels)))
    if len(labels) != num_classes:
        raise ConfigError(f"{where}.labels: {len(labels)} labels for {num_classes} classes")
    return ModelConfig(
        name=str(_require(raw, "name", where)),
        backbone=_require(raw, "backbone", where),
        input=input_spec,
        labels=labels,
        pcoders=pcoders,
        gradient_scaling=bool(raw.get("gradient_scaling", True)),
        description=str(raw.get("description", "")),
        raw=raw,
    )


def load_config(path: str | Path) -> ModelConfig:
    path = Path(path)
    with path.open() as f:
        return parse_config(json.load(f), where=str(path))
