"""Adaptive pools become fixed operators for the size they see, with the same numbers, so that
they export wherever torch cannot read the input size (inside the step graph)."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from predify.export import MatmulAdaptiveAvgPool, exportable


@pytest.mark.parametrize(
    "size, kind",
    [(7, nn.Identity), (14, nn.AvgPool2d), (10, MatmulAdaptiveAvgPool)],
)
def test_adaptive_pool_is_replaced_with_the_same_numbers(size: int, kind: type) -> None:
    module = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.AdaptiveAvgPool2d(7))
    x = torch.randn(2, 3, size, size, generator=torch.Generator().manual_seed(0))
    fixed = exportable(module, x)
    assert isinstance(fixed[1], kind)
    with torch.no_grad():
        torch.testing.assert_close(fixed(x), module(x), rtol=1e-5, atol=1e-6)
