"""The feedback objectives of the one feedback trainer (predify/feedback_training.py), on the
shipped model's architecture, against the objectives written out by hand."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from predify import feedback_training as ft
from predify.config import parse_config
from predify.model import PredifyModel

CONFIG = Path(__file__).resolve().parents[2] / "models" / "fashion-pc" / "config.json"
STD = torch.tensor([0.353])


def small_model() -> PredifyModel:
    torch.manual_seed(0)
    return PredifyModel(parse_config(json.loads(CONFIG.read_text())))


def losses(model: PredifyModel, objective: str, x: torch.Tensor, seed: int) -> torch.Tensor:
    inputs, targets = ft.objective_batch(objective, model.blocks, x, STD, torch.Generator().manual_seed(seed))
    return ft.FeedbackLoss(model.predictors)(inputs, targets)


def test_reconstruct_is_the_papers_objective() -> None:
    model = small_model()
    x = torch.randn(6, 1, 28, 28)
    with torch.no_grad():
        reps = [x]
        for block in model.blocks:
            reps.append(block(reps[-1]))
    want = [F.mse_loss(model.predictors[i](reps[i + 1]), reps[i]) for i in range(3)]
    assert torch.allclose(losses(model, "reconstruct", x, 0), torch.stack(want))


def test_denoise_without_noise_is_the_papers_objective(monkeypatch) -> None:
    model = small_model()
    x = torch.randn(6, 1, 28, 28)
    monkeypatch.setattr(ft, "NOISE_SIGMA_MAX", 0.0)
    assert torch.allclose(losses(model, "denoise", x, 1), losses(model, "reconstruct", x, 1))


def test_denoise_predicts_the_clean_level_below_from_the_noisy_level_above() -> None:
    model = small_model()
    x = torch.randn(4, 1, 28, 28)
    got = losses(model, "denoise", x, 3)

    # The same draws, by hand: the second half of the batch gets noise on the way up only,
    # sigma in pixel units, so divided by the normalisation's std.
    gen = torch.Generator().manual_seed(3)
    sigma = torch.rand(4, 1, 1, 1, generator=gen) * ft.NOISE_SIGMA_MAX / 0.353
    sigma[:2] = 0
    noisy = x + sigma * torch.randn(x.shape, generator=gen)
    with torch.no_grad():
        clean, up = [x], [noisy]
        for block in model.blocks:
            clean.append(block(clean[-1]))
            up.append(block(up[-1]))
    want = torch.stack([F.mse_loss(model.predictors[i](up[i + 1]), clean[i]) for i in range(3)])
    assert torch.allclose(got, want)
    assert not torch.allclose(got, losses(model, "reconstruct", x, 3))


def test_pixels_are_normalised_as_the_service_does() -> None:
    # src/image/preprocess.ts: f(f(f(p * (1/255)) - mean) / std), each step rounded to float32.
    pixels = torch.arange(256, dtype=torch.uint8).reshape(1, 16, 16, 1)
    got = ft.normalise(pixels, torch.tensor([0.286]), torch.tensor([0.353]))
    f = np.float32
    want = np.array([(f(f(f(p / 255.0) - f(0.286)) / f(0.353))) for p in range(256)], dtype=np.float32).reshape(1, 1, 16, 16)
    assert np.array_equal(got.numpy(), want)


def test_the_validation_split_is_seeded_and_disjoint() -> None:
    train, val = ft.split_validation(1000, 0.05, 7)
    assert len(val) == 50 and len(train) == 950 and not set(train) & set(val)
    again = ft.split_validation(1000, 0.05, 7)
    assert np.array_equal(val, again[1]) and not np.array_equal(val, ft.split_validation(1000, 0.05, 8)[1])


def test_the_learning_rate_restarts_every_t0_epochs() -> None:
    o = ft.Options(lr=1e-3, t0=3)
    assert ft.learning_rate(o, 0) == 1e-3 and ft.learning_rate(o, 3) == 1e-3
    assert abs(ft.learning_rate(o, 1.5) - 5e-4) < 1e-12 and ft.learning_rate(o, 2.9) < 1e-5
    # torch's own scheduler, stepped per epoch, agrees at whole epochs.
    opt = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=1e-3)
    sched = torch.optim.lr_scheduler.CosineAnnealingWarmRestarts(opt, T_0=3)
    for epoch in range(7):
        assert abs(opt.param_groups[0]["lr"] - ft.learning_rate(o, epoch)) < 1e-12
        opt.step()
        sched.step()
