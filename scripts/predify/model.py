"""A backbone with PCoders: encoder blocks, head, predictors and their constants."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from .backbones import build_backbone, split_config
from .config import ModelConfig, parse_config
from .predictors import build_predictor, influence_count

Shape = tuple[int, int, int]


@dataclass
class PCoderInfo:
    name: str
    layer: str
    shape: Shape  # r_i of one sample
    target_shape: Shape  # r_{i-1} of one sample (the image for i = 1)
    beta: float
    lam: float
    alpha: float
    elements: int  # K_i: elements of one sample's prediction
    influence: float  # C_i (a mean over perturbations when the Predify package measured it)
    scale: float  # s_i


class PredifyModel(nn.Module):
    def __init__(
        self,
        cfg: ModelConfig,
        backbone: nn.Module | None = None,
        predictors: list[nn.Module] | None = None,
        influences: list[float] | None = None,
    ):
        """`predictors` and `influences` (C_i) replace those the config describes: an imported
        network brings its own modules, and C_i as its package measured them."""
        super().__init__()
        self.cfg = cfg
        self.backbone = (backbone if backbone is not None else build_backbone(cfg.backbone)).eval()
        blocks, head = split_config(self.backbone, cfg)
        # Submodules share parameters with self.backbone; the checkpoint stores the backbone once.
        self.blocks = blocks
        self.head = head
        self.input_shape: Shape = (cfg.input.channels, cfg.input.height, cfg.input.width)

        shapes = [self.input_shape]
        with torch.no_grad():
            h = torch.zeros(1, *self.input_shape)
            for block in blocks:
                h = block(h)
                if h.dim() != 4:
                    raise ValueError("every PCoder must sit on a 4-D (N, C, H, W) representation")
                shapes.append(tuple(h.shape[1:]))  # type: ignore[arg-type]

        self.predictors = nn.ModuleList(
            predictors
            if predictors is not None
            else [build_predictor(pc.predictor, shapes[i + 1][0], shapes[i]) for i, pc in enumerate(cfg.pcoders)]
        )
        self.info: list[PCoderInfo] = []
        for i, pc in enumerate(cfg.pcoders):
            shape, target = shapes[i + 1], shapes[i]
            elements = math.prod(target)
            influence = influences[i] if influences is not None else influence_count(self.predictors[i], shape)
            scale = elements / math.sqrt(influence) if cfg.gradient_scaling else 1.0
            self.info.append(
                PCoderInfo(f"pcoder{i + 1}", pc.layer, shape, target, pc.beta, pc.lam, pc.alpha, elements, influence, scale)
            )

    def feedforward(self, x: torch.Tensor) -> torch.Tensor:
        return self.backbone(x)

    def feedback_parameters(self) -> list[nn.Parameter]:
        return list(self.predictors.parameters())

    def checkpoint(self) -> dict[str, Any]:
        # The config as JSON text: a safe load (torch.load with weights_only) takes tensors and
        # strings, but not every Python value a config holds (torch 1.13 refuses floats).
        return {
            "config": json.dumps(self.cfg.raw),
            "backbone": self.backbone.state_dict(),
            "predictors": self.predictors.state_dict(),
        }

    @classmethod
    def from_checkpoint(cls, path: str | Path) -> "PredifyModel":
        state = torch.load(path, map_location="cpu", weights_only=True)
        raw = json.loads(state["config"]) if isinstance(state["config"], str) else state["config"]
        model = cls(parse_config(raw, where=str(path)))
        model.backbone.load_state_dict(state["backbone"])
        model.predictors.load_state_dict(state["predictors"])
        return model.eval()


def calibrate_batchnorm(model: PredifyModel, seed: int) -> None:
    """Give a random network's BatchNorm layers the statistics of its own activations.

    Fresh BatchNorm running statistics (mean 0, var 1) make a random EfficientNet's
    activations vanish layer by layer (logits ~1e-14), which would make golden comparisons
    meaningless. A few seeded batches in training mode set statistics that keep them O(1).
    """
    bns = [m for m in model.backbone.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    if not bns:
        return
    for bn in bns:
        bn.reset_running_stats()
        bn.momentum = None  # cumulative average over the calibration batches
    gen = torch.Generator().manual_seed(seed + 7)
    model.backbone.train()
    with torch.no_grad():
        for _ in range(4):
            model.backbone(torch.randn(8, *model.input_shape, generator=gen))
    model.backbone.eval()


def reference_dynamics(model: PredifyModel, x: torch.Tensor, timesteps: int) -> dict[str, list]:
    """The dynamics of the spec for ONE image, with autograd gradients: the golden reference.

    Deliberately independent of FeedbackGraph: it uses the predictors as plain modules and
    torch.autograd for g_i, so agreement with the exported graphs tests the adjoints too.
    """
    if x.shape[0] != 1:
        raise ValueError("the reference runs one image at a time")
    model.eval()
    info = model.info
    n = len(info)

    def feedback(i: int, r: torch.Tensor, below: torch.Tensor):
        r = r.detach().requires_grad_(True)
        with torch.enable_grad():
            p = model.predictors[i](r)
            e = ((p - below) ** 2).mean()
            (g,) = torch.autograd.grad(e, r)
        return p.detach(), float(e), g.detach()

    logits_t: list[list[float]] = []
    errors_t: list[list[float]] = []
    with torch.no_grad():
        reps: list[torch.Tensor] = []
        h = x
        for block in model.blocks:
            h = block(h)
            reps.append(h)
        preds, grads, errs = [], [], []
        for i in range(n):
            p, e, g = feedback(i, reps[i], x if i == 0 else reps[i - 1])
            preds.append(p)
            errs.append(e)
            grads.append(g)
        logits_t.append(model.head(reps[-1])[0].tolist())
        errors_t.append(list(errs))

        for _ in range(timesteps):
            for i in range(n):
                pc = info[i]
                below = x if i == 0 else reps[i - 1]
                drive = model.blocks[i](below)
                r = pc.beta * drive + (1 - pc.beta - pc.lam) * reps[i] - pc.alpha * pc.scale * grads[i]
                if i < n - 1:
                    r = r + pc.lam * preds[i + 1]
                reps[i] = r
                preds[i], errs[i], grads[i] = feedback(i, r, below)
            logits_t.append(model.head(reps[-1])[0].tolist())
            errors_t.append(list(errs))
    return {"logits": logits_t, "errors": errors_t}
