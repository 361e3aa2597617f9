"""White-box attacks through the predictive-coding dynamics (scripts/attack.py).

The dynamics are unrolled in PyTorch with the served constants (a profile's beta, lambda,
alpha and the manifest's gradient scales), batched, and differentiable with respect to the
image, so that an L-infinity attack can take its gradient through the first T timesteps.

How the error-gradient term g_i enters the attack's gradient is a choice:

- `package`: as the Predify package computes it when its graph is built for attacks
  (`build_graph=True`): g_i comes from `torch.autograd.grad` without `create_graph`, so the
  attack sees it as a constant. This is the gradient the paper's attacks used.
- `full`: g_i is differentiated too (a second-order gradient), the exact gradient of the
  unrolled dynamics.

The forward values are the same either way: the served dynamics of docs/dynamics.md.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import torch
from torch import nn

from .model import PredifyModel

GRADIENTS = ("package", "full")


@dataclass(frozen=True)
class Coefficients:
    beta: float
    lam: float
    alpha: float
    scale: float


class UnrolledDynamics(nn.Module):
    """A PredifyModel's blocks, predictors and head, stepped with fixed served constants."""

    def __init__(self, model: PredifyModel, coefficients: list[Coefficients], mean: list[float], std: list[float], gradient: str = "package"):
        super().__init__()
        if len(coefficients) != len(model.predictors):
            raise ValueError(f"{len(coefficients)} coefficient sets for {len(model.predictors)} PCoders")
        if gradient not in GRADIENTS:
            raise ValueError(f"gradient must be one of {', '.join(GRADIENTS)}")
        self.model = model.eval()
        self.coefficients = coefficients
        self.gradient = gradient
        channels = model.input_shape[0]
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).view(1, channels, 1, 1))
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32).view(1, channels, 1, 1))

    def normalise(self, pixels: torch.Tensor) -> torch.Tensor:
        """Pixels in [0, 1], (N, C, H, W), to the model's input, in float32 as the service does."""
        return (pixels - self.mean) / self.std

    def _feedback(self, i: int, r: torch.Tensor, below: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """The prediction of the level below, each sample's error (mean squared), and its gradient."""
        with torch.enable_grad():
            # Outside an attack nothing requires a gradient: take g_i from a detached leaf.
            leaf = r if r.requires_grad else r.detach().requires_grad_(True)
            p = self.model.predictors[i](leaf)
            e = ((p - below) ** 2).flatten(1).mean(1)
            (g,) = torch.autograd.grad(e.sum(), leaf, create_graph=self.gradient == "full" and r.requires_grad, retain_graph=True)
        if not r.requires_grad:
            p, e = p.detach(), e.detach()
        return p, e, g

    def forward(self, z: torch.Tensor, timesteps: int, errors: bool = False):
        """Logits at t = 0..timesteps of model inputs `z` (already normalised); with `errors`,
        also each PCoder's error at every t, (N, PCoders) per t."""
        m = self.model
        n = len(m.predictors)
        reps: list[torch.Tensor] = []
        h = z
        for block in m.blocks:
            h = block(h)
            reps.append(h)
        logits = [m.head(reps[-1])]
        if timesteps == 0 and not errors:
            return logits
        preds, errs, grads = [], [], []
        for i in range(n):
            p, e, g = self._feedback(i, reps[i], z if i == 0 else reps[i - 1])
            preds.append(p)
            errs.append(e)
            grads.append(g)
        errors_t = [torch.stack(errs, 1)]
        for _ in range(timesteps):
            for i in range(n):
                c = self.coefficients[i]
                below = z if i == 0 else reps[i - 1]
                r = c.beta * m.blocks[i](below) + (1 - c.beta - c.lam) * reps[i] - (c.alpha * c.scale) * grads[i]
                if i < n - 1:
                    r = r + c.lam * preds[i + 1]
                reps[i] = r
                preds[i], errs[i], grads[i] = self._feedback(i, r, below)
            logits.append(m.head(reps[-1]))
            errors_t.append(torch.stack(errs, 1))
        return (logits, errors_t) if errors else logits


def target_offset(classes: int) -> int:
    """The paper's target rule, (label + round(0.8 C)) mod C, as an offset (800 for ImageNet)."""
    return int(math.floor(0.8 * classes + 0.5)) % classes


def linf_attack(
    loss: Callable[[torch.Tensor], torch.Tensor],
    x: torch.Tensor,
    epsilon: float,
    steps: int,
    step_size: float,
    random_start: bool,
    generator: torch.Generator | None,
) -> torch.Tensor:
    """Iterated signed-gradient ascent on `loss` (per-sample losses, summed) within the
    L-infinity ball of radius `epsilon` around `x` and the pixel range [0, 1]: BIM, or PGD with
    a random start. A targeted attack passes the negated loss of its target."""
    lo = (x - epsilon).clamp(0, 1)
    hi = (x + epsilon).clamp(0, 1)
    adv = x.clone()
    if random_start:
        noise = torch.rand(x.shape, generator=generator, device="cpu").to(x.device)
        adv = (adv + (2 * noise - 1) * epsilon).clamp(lo, hi)
    for _ in range(steps):
        adv.requires_grad_(True)
        (g,) = torch.autograd.grad(loss(adv).sum(), adv)
        adv = (adv.detach() + step_size * g.sign()).clamp(lo, hi)
    return adv.detach()


def to_eight_bits(adv: torch.Tensor, clean: torch.Tensor, epsilon: float) -> torch.Tensor:
    """Adversarial pixels as a user would upload them: 8-bit values, each the nearest one that
    stays within epsilon of the clean 8-bit pixel (so rounding never leaves the ball)."""
    q = torch.round(adv * 255)
    base = torch.round(clean * 255)
    reach = math.floor(epsilon * 255 + 1e-6)
    return torch.minimum(torch.maximum(q, base - reach), base + reach).clamp(0, 255).to(torch.uint8)
