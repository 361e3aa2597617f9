"""The Predify package's semantics, restated independently of our exporter, for golden outputs.

The package does not cut the backbone into blocks: it registers a forward hook on each PCoder's
module, and the hook replaces that module's output with the PCoder's representation, so the
rest of the backbone runs on it. One timestep is one forward pass of the whole backbone on the
same image. Inside a hook, at t >= 1:

    r = beta * out + lambda * (prediction of the PCoder above, from the previous pass)
        + (1 - beta - lambda) * r_prev - alpha * s * (gradient from the previous pass)

without the feedback term and with memory 1 - beta at the top PCoder, then the prediction of
the level below (the image, or the representation the PCoder below has just set in this pass),
its mean squared error over the whole tensor (batch included: at batch 1 the per-sample error)
and the error's gradient by autograd. s is 1 for the plain PCoder and K / sqrt(C) for PCoderN,
with K the number of elements of the prediction.

This module imports nothing from our exporter but the predictor modules themselves, so a
golden file it writes tests the split into encoder blocks, the exported adjoints and the
engine's loop all at once.
"""

from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn


def measure_c_sqrt(predictor: nn.Module, rep: torch.Tensor, generator: torch.Generator) -> float:
    """sqrt(C) as the package measures it when a PCoderN first runs: the central element of
    the representation is set to a random whole number in [-10000, 10000) ten times, and C is the
    mean count of prediction elements that change (per sample), in float32 with the predictor
    as it is (ReLUs included). The package draws from torch's global generator on the first batch
    it sees; here the generator and the representation are the caller's, so the figure can be
    reproduced."""
    with torch.no_grad():
        base = predictor(rep)
        count = torch.zeros((), dtype=torch.float32)
        for _ in range(10):
            x = rep.clone()
            n, c, h, w = x.shape
            x[:, c // 2, h // 2, w // 2] = torch.randint(-10000, 10000, (n,), generator=generator).float()
            count += (base != predictor(x)).sum().float() / n
        return float(torch.sqrt(count / 10.0))


class PackageReference:
    def __init__(
        self,
        backbone: nn.Module,
        modules: Sequence[nn.Module],
        predictors: Sequence[nn.Module],
        hyperparameters: Sequence[tuple[float, float, float]],
        c_sqrt: Sequence[float | None],
    ):
        """`hyperparameters` are (beta, lambda, alpha) per PCoder; `c_sqrt` is None for plain
        PCoders (no gradient scaling)."""
        self.backbone = backbone.eval()
        self.modules = list(modules)
        self.predictors = [p.eval() for p in predictors]
        self.hyperparameters = list(hyperparameters)
        self.c_sqrt = list(c_sqrt)

    def run(self, x: torch.Tensor, timesteps: int) -> dict[str, list]:
        if x.shape[0] != 1:
            raise ValueError("the golden reference runs one image at a time")
        n = len(self.modules)
        rep: list[torch.Tensor | None] = [None] * n
        prd: list[torch.Tensor | None] = [None] * n
        grd: list[torch.Tensor | None] = [None] * n
        err = [0.0] * n

        def hook_for(i: int):
            beta, lam, alpha = self.hyperparameters[i]
            top = i == n - 1

            def hook(_module, _inputs, out):
                if rep[i] is None:
                    r = out
                else:
                    scale = 1.0 if self.c_sqrt[i] is None else prd[i].numel() / self.c_sqrt[i]
                    if top:
                        r = beta * out + (1 - beta) * rep[i] - alpha * scale * grd[i]
                    else:
                        r = beta * out + lam * prd[i + 1] + (1 - beta - lam) * rep[i] - alpha * scale * grd[i]
                target = x if i == 0 else rep[i - 1]
                with torch.enable_grad():
                    r = r.detach().requires_grad_(True)
                    p = self.predictors[i](r)
                    e = F.mse_loss(p, target)
                    (g,) = torch.autograd.grad(e, r)
                rep[i], prd[i], grd[i], err[i] = r.detach(), p.detach(), g.detach(), float(e)
                return rep[i]

            return hook

        handles = [m.register_forward_hook(hook_for(i)) for i, m in enumerate(self.modules)]
        logits: list[list[float]] = []
        errors: list[list[float]] = []
        try:
            with torch.no_grad():
                for _ in range(timesteps + 1):
                    logits.append(self.backbone(x)[0].tolist())
                    errors.append(list(err))
        finally:
            for h in handles:
                h.remove()
        return {"logits": logits, "errors": errors}


def error_scale(elements: int, c_sqrt: float) -> float:
    """s = K / sqrt(C) as the package computes it (a float32 division)."""
    return float(torch.tensor(float(elements), dtype=torch.float32) / torch.tensor(c_sqrt, dtype=torch.float32))
