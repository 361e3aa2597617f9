"""Weights of Predify networks, in the layouts they are found in.

- The package's own: `torch.save(pnet.state_dict())` of a network built by `predify()`:
  backbone weights under `backbone.`, each predictor under `pcoderN.pmodule.`, hyperparameter
  buffers (`ffm`, `fbm`, `erm` when shared, else `ffm1`.. `ffmN` and so on), for PCoderN its
  `pcoderN.C_sqrt` (-1 until the network has run once), and the auxiliary trainable
  hyperparameters (`ff_part*`, `fb_part*`, `mem_part*`, `errorm*`), which the dynamics never
  read.
- The one the paper's feedback weights were published in: one file per PCoder holding its
  predictor's state dict (bare, or under a `pcoderweights` key with a `pmodule.` prefix), plus
  the backbone's own state dict.

Every file is loaded with `weights_only=True`: a pickle that needs code to load is refused.
"""

from __future__ import annotations

import math
import re
from pathlib import Path
from typing import Any

import torch
from torch import nn

from .predify_toml import ConfigError

StateDict = dict[str, torch.Tensor]


def load_weights(path: str | Path, what: str) -> dict[str, Any]:
    try:
        data = torch.load(str(path), map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise ConfigError(f"{what} {path}: no such file") from None
    except Exception as err:  # the unpickler raises many kinds; all mean the same here
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise ConfigError(f"{what} {path}: not plain weights (torch.load with weights_only refused it: {first[:200]})") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{what} {path}: holds a {type(data).__name__}, not a state dict")
    return data


def tensors(data: dict[str, Any], what: str) -> StateDict:
    """`data` as a state dict: every value a tensor, a DataParallel 'module.' prefix removed."""
    bad = [k for k, v in data.items() if not isinstance(v, torch.Tensor)]
    if bad:
        raise ConfigError(f"{what}: entry {bad[0]!r} is not a tensor (not a state dict)")
    # Saved from a DataParallel wrapper: every key has the same 'module.' prefix.
    if data and all(k.startswith("module.") for k in data):
        data = {k[len("module."):]: v for k, v in data.items()}
    return data


def load_into(module: nn.Module, state: StateDict, what: str) -> None:
    """Loads `state` into `module` exactly: every key present, none left over, shapes equal."""
    own = module.state_dict()
    missing = [k for k in own if k not in state]
    extra = [k for k in state if k not in own]
    if missing or extra:
        parts = []
        if missing:
            parts.append(f"missing {', '.join(missing[:3])}{' ...' if len(missing) > 3 else ''}")
        if extra:
            parts.append(f"unexpected {', '.join(extra[:3])}{' ...' if len(extra) > 3 else ''}")
        raise ConfigError(f"{what} does not fit: {'; '.join(parts)}")
    for k, v in own.items():
        if tuple(state[k].shape) != tuple(v.shape):
            raise ConfigError(f"{what} does not fit: {k} is {tuple(state[k].shape)}, the network needs {tuple(v.shape)}")
    module.load_state_dict({k: state[k].to(v.dtype) for k, v in own.items()})


# timm's efficientnet_b0 names -> torchvision's, for the same layers. In eval mode the two
# compute the same function: BatchNorm eps 1e-5 in both (timm's default outside its tf_ models),
# squeeze-excitation to a quarter of the block's input channels with SiLU and a sigmoid gate,
# symmetric padding (k - 1) / 2; the shapes of every tensor are checked when loading.
_TIMM_BN = ("weight", "bias", "running_mean", "running_var", "num_batches_tracked")


def _timm_block_map(stage: int, index: int, depthwise_first: bool) -> dict[str, str]:
    src, dst = f"blocks.{stage}.{index}.", f"features.{stage + 1}.{index}.block."
    if depthwise_first:  # timm's DepthwiseSeparableConv: dw, se, pw (torchvision's expand_ratio 1)
        pairs = [("conv_dw", "0.0"), ("bn1", "0.1"), ("se.conv_reduce", "1.fc1"), ("se.conv_expand", "1.fc2"), ("conv_pw", "2.0"), ("bn2", "2.1")]
    else:  # InvertedResidual: pw expand, dw, se, pw project
        pairs = [
            ("conv_pw", "0.0"), ("bn1", "0.1"), ("conv_dw", "1.0"), ("bn2", "1.1"),
            ("se.conv_reduce", "2.fc1"), ("se.conv_expand", "2.fc2"), ("conv_pwl", "3.0"), ("bn3", "3.1"),
        ]  # fmt: skip
    return {src + a: dst + b for a, b in pairs}


def is_timm_efficientnet(state: StateDict) -> bool:
    return "conv_stem.weight" in state


def timm_to_torchvision(state: StateDict) -> StateDict:
    """timm efficientnet_b0 weights under torchvision's names; refuses what it cannot place."""
    prefixes = {"conv_stem": "features.0.0", "bn1": "features.0.1", "conv_head": "features.8.0", "bn2": "features.8.1", "classifier": "classifier.1"}
    blocks = {(int(m[1]), int(m[2])) for k in state if (m := re.match(r"blocks\.(\d+)\.(\d+)\.", k))}
    for stage, index in blocks:
        prefixes.update(_timm_block_map(stage, index, depthwise_first=stage == 0))
    out: StateDict = {}
    for key, value in state.items():
        module, _, leaf = key.rpartition(".")
        if module not in prefixes:
            raise ConfigError(f"timm checkpoint: no torchvision counterpart for {key!r}")
        if leaf not in _TIMM_BN and leaf not in ("weight", "bias"):
            raise ConfigError(f"timm checkpoint: unexpected tensor {key!r}")
        out[f"{prefixes[module]}.{leaf}"] = value
    return out


class PackageCheckpoint:
    """The parts of a package-layout state dict, by what they are."""

    def __init__(self, state: StateDict, pcoders: int):
        self.backbone = {k[len("backbone."):]: v for k, v in state.items() if k.startswith("backbone.")}
        self.predictors: list[StateDict] = []
        self.c_sqrt: list[float | None] = []
        for i in range(1, pcoders + 1):
            prefix = f"pcoder{i}.pmodule."
            self.predictors.append({k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)})
            c = state.get(f"pcoder{i}.C_sqrt")
            self.c_sqrt.append(None if c is None else float(c))
        self.shared = {k: float(state[k]) for k in ("ffm", "fbm", "erm") if k in state}
        self.separate = {k: float(v) for k, v in state.items() if re.fullmatch(r"(ffm|fbm|erm)\d+", k)}
        known = re.compile(r"backbone\..+|pcoder\d+\.(pmodule\..+|C_sqrt)|(ffm|fbm|erm|ff_part|fb_part|mem_part|errorm)\d*")
        unknown = [k for k in state if not known.fullmatch(k)]
        if unknown:
            raise ConfigError(f"checkpoint: {unknown[0]!r} is not a key of a Predify network's state dict")
        beyond = [k for k in state if (m := re.match(r"pcoder(\d+)\.", k)) and not 1 <= int(m[1]) <= pcoders]
        if beyond:
            raise ConfigError(f"checkpoint: {beyond[0]!r} belongs to a PCoder the config does not have ({pcoders})")
        if not self.backbone:
            raise ConfigError("checkpoint: no 'backbone.' weights (is it a Predify network's state_dict()?)")

    def hyperparameters(self, config_sets: list[dict[str, float]], shared: bool) -> list[tuple[dict[str, float], bool]]:
        """Each PCoder's set, and whether it came from the checkpoint's buffers.

        The rule: the buffers win. The package's network registers ffm/fbm/erm as buffers
        initialised from the TOML, `load_state_dict` overwrites them, and its dynamics read them;
        training the hyperparameters (ff_part, ...) changes them. A checkpoint whose buffers are
        laid out for the other setting of shared_hyperparameters is refused: the package's
        network could not load it.
        """
        if shared and self.separate:
            raise ConfigError("checkpoint holds per-PCoder hyperparameters (ffm1, ...) but the config says shared_hyperparameters = true")
        if not shared and self.shared:
            raise ConfigError("checkpoint holds shared hyperparameters (ffm, fbm, erm) but the config says shared_hyperparameters = false")
        out = []
        for i, hp in enumerate(config_sets, 1):
            get = (lambda k: self.shared.get(k)) if shared else (lambda k: self.separate.get(f"{k}{i}"))
            values = {"feedforward": get("ffm"), "feedback": get("fbm"), "pc": get("erm")}
            if any(v is None for v in values.values()) and any(v is not None for v in values.values()):
                missing = [k for k, v in zip(("ffm", "fbm", "erm"), values.values()) if v is None]
                raise ConfigError(f"checkpoint holds some of PCoder {i}'s hyperparameter buffers but not {', '.join(missing)}")
            from_buffers = values["feedforward"] is not None
            out.append(({k: (hp[k] if v is None else v) for k, v in values.items()}, from_buffers))
        return out


def predictor_state(data: dict[str, Any], what: str) -> StateDict:
    """A published predictor file: its state dict, bare or under 'pcoderweights' with 'pmodule.'."""
    if "pcoderweights" in data:
        inner = data["pcoderweights"]
        if not isinstance(inner, dict):
            raise ConfigError(f"{what}: 'pcoderweights' is not a state dict")
        inner = tensors(inner, what)
        return {k[len("pmodule."):] if k.startswith("pmodule.") else k: v for k, v in inner.items()}
    return tensors(data, what)


def c_from_sqrt(c_sqrt: float | None) -> float | None:
    """C from a stored C_sqrt: None when the network never ran (-1) or the value is not usable."""
    if c_sqrt is None or c_sqrt == -1 or not math.isfinite(c_sqrt):
        return None
    if c_sqrt <= 0:
        raise ConfigError(f"checkpoint: C_sqrt {c_sqrt} is not positive")
    return c_sqrt


def backbone_state(data: dict[str, Any], what: str) -> StateDict:
    """A backbone's weights from the files they come in: a plain state dict, a training
    checkpoint that holds one under 'backbone' (scripts/train_fashion.py's checkpoint.pt), or a
    Predify network's state dict (its 'backbone.' entries)."""
    if isinstance(data.get("backbone"), dict):
        return tensors(data["backbone"], what)
    state = tensors(data, what)
    if any(k.startswith("backbone.") for k in state) and any(re.match(r"pcoder\d+\.", k) for k in state):
        return {k[len("backbone."):]: v for k, v in state.items() if k.startswith("backbone.")}
    return state


def package_state_dict(
    backbone: nn.Module, predictors: list[nn.Module], sets: list[dict[str, float]], shared: bool, c_sqrt: list[float | None]
) -> StateDict:
    """The state dict of the Predify package's network for these parts, as `pnet.state_dict()`
    gives it, so that the package's own class loads it strictly: `backbone.*`, `pcoderN.pmodule.*`,
    `pcoderN.C_sqrt` for a PCoderN network, and the hyperparameter buffers and auxiliary
    parameters (shared: ffm/fbm/erm, ff_part, ...; else numbered per PCoder). `sets` holds each
    PCoder's beta/lambda/alpha."""
    state: StateDict = {f"backbone.{k}": v.detach().clone() for k, v in backbone.state_dict().items()}
    for i, p in enumerate(predictors, 1):
        state.update({f"pcoder{i}.pmodule.{k}": v.detach().clone() for k, v in p.state_dict().items()})
        if c_sqrt[i - 1] is not None:
            state[f"pcoder{i}.C_sqrt"] = torch.tensor(float(c_sqrt[i - 1]), dtype=torch.float)
    for suffix, h in ([("", sets[0])] if shared else [(str(i), h) for i, h in enumerate(sets, 1)]):
        ff, fb, er = h["beta"], h["lambda"], h["alpha"]
        for name, value in (("ffm", ff), ("fbm", fb), ("erm", er), ("ff_part", ff), ("fb_part", fb), ("mem_part", 1.0 - ff - fb), ("errorm", er)):
            state[f"{name}{suffix}"] = torch.tensor(float(value))
    return state
