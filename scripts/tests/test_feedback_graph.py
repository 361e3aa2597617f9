"""The exported feedback graph's error gradient is the exact adjoint: it equals autograd."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from predify.predictors import FeedbackGraph, build_predictor, influence_count

CASES = {
    # name: (predictor layers, representation shape, target shape)
    "default upsample+convT": ([{"type": "upsample", "mode": "bilinear"}, {"type": "conv_transpose"}], (8, 5, 7), (4, 11, 13)),
    "nearest upsample+conv": ([{"type": "upsample", "mode": "nearest"}, {"type": "conv"}], (6, 4, 4), (3, 8, 8)),
    "strided convT+relu (PVGG16)": ([{"type": "conv_transpose", "kernel": 10, "stride": 2, "padding": 4}, {"type": "relu"}], (8, 6, 6), (4, 12, 12)),
    "PVGG16's upper PCoders: kernel 14, stride 2": ([{"type": "conv_transpose", "kernel": 14, "stride": 2, "padding": 6}, {"type": "relu"}], (6, 7, 7), (5, 14, 14)),
    "strided convT, kernel not a multiple of the stride": ([{"type": "conv_transpose", "kernel": 3, "stride": 2, "padding": 1, "output_padding": 1}], (4, 5, 6), (3, 10, 12)),
    "stride-3 convT, odd size": ([{"type": "conv_transpose", "kernel": 5, "stride": 3, "padding": 1}], (4, 4, 5), (3, 12, 15)),
    "strided convT without padding": ([{"type": "conv_transpose", "kernel": 4, "stride": 2, "padding": 0, "bias": False}], (4, 5, 5), (3, 12, 12)),
    "strided convT, padding beyond the split form": ([{"type": "conv_transpose", "kernel": 3, "stride": 2, "padding": 3}], (4, 7, 7), (3, 9, 9)),
    "strided conv, odd size": ([{"type": "conv", "kernel": 3, "stride": 2, "padding": 1}], (4, 9, 9), (5, 5, 5)),
    "deep stack": (
        [
            {"type": "conv", "kernel": 3, "padding": 1, "out": 7},
            {"type": "relu"},
            {"type": "upsample", "mode": "bilinear", "scale_factor": 2},
            {"type": "conv_transpose", "kernel": 5, "padding": 2},
            {"type": "relu"},
        ],
        (5, 6, 6),
        (3, 12, 12),
    ),
}


@pytest.mark.parametrize("name", list(CASES))
def test_gradient_matches_autograd(name: str) -> None:
    layers, shape, target_shape = CASES[name]
    torch.manual_seed(0)
    predictor = build_predictor(layers, shape[0], target_shape).eval()
    graph = FeedbackGraph(predictor, shape, target_shape)
    r = torch.randn(3, *shape)
    target = torch.randn(3, *target_shape)

    prediction, error, gradient = graph(r, target)

    for k in range(r.shape[0]):  # per sample, as the spec defines e_i
        rk = r[k : k + 1].clone().requires_grad_(True)
        p = predictor(rk)
        e = ((p - target[k : k + 1]) ** 2).mean()
        (g,) = torch.autograd.grad(e, rk)
        torch.testing.assert_close(prediction[k : k + 1], p.detach(), rtol=1e-5, atol=1e-6)
        assert abs(float(error[k]) - float(e)) <= 1e-5 * float(e)
        scale = float(g.abs().max())
        assert float((gradient[k : k + 1] - g).abs().max()) <= 1e-5 * scale, name


def test_unsupported_layer_is_refused() -> None:
    with pytest.raises(ValueError, match="no exportable adjoint"):
        FeedbackGraph(nn.Sequential(nn.Conv2d(4, 2, 3, padding=1), nn.Sigmoid()), (4, 5, 5), (2, 5, 5))


def test_influence_count_is_the_kernel_window() -> None:
    torch.manual_seed(0)
    # A 3x3 conv from 8 to 4 channels: one input element reaches 3*3*4 outputs.
    conv = build_predictor([{"type": "conv"}], 8, (4, 10, 10))
    assert influence_count(conv, (8, 10, 10)) == 36
    # ReLU does not change the window.
    relu = build_predictor([{"type": "conv_transpose", "kernel": 5, "padding": 2}, {"type": "relu"}], 8, (4, 10, 10))
    assert influence_count(relu, (8, 10, 10)) == 100


def test_strided_transposed_convolutions_export_as_plain_convolutions(tmp_path) -> None:
    """onnxruntime's ConvTranspose is slow on CPU: the graph holds a Conv and a DepthToSpace
    instead, for the prediction (ConvTranspose2d) and for the gradient (strided Conv2d)."""
    import onnx

    cases = {
        "convT": ([{"type": "conv_transpose", "kernel": 14, "stride": 2, "padding": 6}, {"type": "relu"}], (6, 7, 7), (5, 14, 14)),
        "conv": ([{"type": "conv", "kernel": 3, "stride": 2, "padding": 1}], (4, 9, 9), (5, 5, 5)),
    }
    for name, (layers, shape, target_shape) in cases.items():
        graph = FeedbackGraph(build_predictor(layers, shape[0], target_shape).eval(), shape, target_shape).eval()
        file = tmp_path / f"{name}.onnx"
        with torch.no_grad():
            torch.onnx.export(graph, (torch.zeros(2, *shape), torch.zeros(2, *target_shape)), str(file), opset_version=17)
        ops = [node.op_type for node in onnx.load(str(file)).graph.node]
        assert "ConvTranspose" not in ops, (name, ops)
        assert "DepthToSpace" in ops, (name, ops)


def test_padding_wider_than_the_kernel_keeps_the_transposed_convolution() -> None:
    """The split form needs non-negative padding of the input grid; elsewhere the layer stays as
    it is, and the numbers are still the adjoint's."""
    layers = [{"type": "conv_transpose", "kernel": 3, "stride": 2, "padding": 3}]
    graph = FeedbackGraph(build_predictor(layers, 4, (3, 9, 9)).eval(), (4, 7, 7), (3, 9, 9))
    assert len(graph.phases) == 0
