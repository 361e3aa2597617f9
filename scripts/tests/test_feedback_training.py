"""The feedback objectives of train_fashion.py, on the shipped model's architecture."""

from __future__ import annotations

import json
from pathlib import Path

import torch
import torch.nn.functional as F

import train_fashion
from predify.config import parse_config
from predify.model import PredifyModel

CONFIG = Path(__file__).resolve().parents[2] / "models" / "fashion-pc" / "config.json"


def small_model() -> PredifyModel:
    torch.manual_seed(0)
    return PredifyModel(parse_config(json.loads(CONFIG.read_text())))


def test_denoise_without_noise_is_the_spec_objective(monkeypatch) -> None:
    model = small_model()
    x = torch.randn(6, 1, 28, 28)
    monkeypatch.setattr(train_fashion, "NOISE_SIGMA_MAX", 0.0)
    got = train_fashion.denoising_loss(model, x, torch.Generator().manual_seed(1), std=0.353)
    assert torch.allclose(got, train_fashion.feedback_loss(model, x))


def test_denoise_predicts_the_clean_level_below_from_the_noisy_level_above() -> None:
    model = small_model()
    x = torch.randn(4, 1, 28, 28)
    gen = torch.Generator().manual_seed(3)
    got = train_fashion.denoising_loss(model, x, gen, std=0.353)

    # The same draws, by hand: the second half of the batch gets noise on the way up only.
    gen = torch.Generator().manual_seed(3)
    sigma = torch.rand(4, 1, 1, 1, generator=gen) * train_fashion.NOISE_SIGMA_MAX / 0.353
    sigma[:2] = 0
    noisy = x + sigma * torch.randn(x.shape, generator=gen)
    with torch.no_grad():
        clean = [x]
        for block in model.blocks:
            clean.append(block(clean[-1]))
        up = [noisy]
        for block in model.blocks:
            up.append(block(up[-1]))
    want = sum(F.mse_loss(model.predictors[i](up[i + 1]), clean[i]) for i in range(3))
    assert torch.allclose(got, want)
    assert not torch.allclose(got, train_fashion.feedback_loss(model, x))
