"""Int8 quantisation of a step graph (predify/quantize.py), on the shipped model's: every
constant-weight convolution in the QDQ form onnxruntime fuses into QLinearConv, its weights
within half a quantisation step of the float ones, and nothing else in the graph changed. (The
numbers the quantised graph gives are tested through onnxruntime in test/cli/quantize.test.ts.)"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import numpy_helper

from predify.quantize import activation_scale, calibrated_tensors, instrument, quantize

STEP = Path(__file__).resolve().parents[2] / "models" / "fashion-pc" / "step.onnx"


@pytest.fixture(scope="module")
def step() -> onnx.ModelProto:
    return onnx.load(str(STEP))


def convolutions(model: onnx.ModelProto) -> list[onnx.NodeProto]:
    return [n for n in model.graph.node if n.op_type == "Conv"]


def test_activation_scales_cover_the_range_and_keep_zero_exact() -> None:
    for low, high in [(-1.0, 3.0), (0.5, 2.0), (-2.0, -1.0), (-1e-3, 4e-3)]:
        scale, zero = activation_scale(low, high)
        assert 0 <= zero <= 255
        # Zero quantises to the zero point exactly; both ends lie within the 256 levels.
        for v in (low, high, 0.0):
            level = round(v / scale) + zero
            assert 0 <= level <= 255 and abs((level - zero) * scale - v) <= scale / 2 + 1e-9
    assert activation_scale(0.0, 0.0) == (1.0, 0)


def test_instrumenting_adds_the_calibrated_tensors_as_outputs(step: onnx.ModelProto) -> None:
    names = calibrated_tensors(step)
    convs = convolutions(step)
    assert len(convs) == 14 and set(names) == {n.input[0] for n in convs} | {n.output[0] for n in convs}
    outputs = [o.name for o in instrument(step, names).graph.output]
    original = [o.name for o in step.graph.output]
    assert outputs[: len(original)] == original and set(outputs) == set(original) | set(names)


def test_every_convolution_takes_the_fused_form_and_nothing_else_changes(step: onnx.ModelProto) -> None:
    ranges = {name: (-1.0, 2.0) for name in calibrated_tensors(step)}
    q = quantize(step, ranges)
    producer = {o: n for n in q.graph.node for o in n.output}
    consumers = lambda name: [n for n in q.graph.node if name in n.input]  # noqa: E731
    values = {t.name: numpy_helper.to_array(t) for t in q.graph.initializer}
    floats = {t.name: numpy_helper.to_array(t) for t in step.graph.initializer}
    assert len(convolutions(q)) == len(convolutions(step))
    for conv, original in zip(convolutions(q), convolutions(step)):
        assert all(producer[i].op_type == "DequantizeLinear" for i in conv.input)
        # The activation: quantised from the original input, uint8.
        x = producer[producer[conv.input[0]].input[0]]
        assert x.op_type == "QuantizeLinear" and x.input[0] == original.input[0]
        assert values[x.input[2]].dtype == np.uint8
        # The weights: int8, one scale per output channel, within half a step of the floats.
        w = producer[conv.input[1]]
        w_q, w_scale = values[w.input[0]], values[w.input[1]]
        weight = floats[original.input[1]]
        per_channel = w_scale.reshape(-1, 1, 1, 1)
        assert w_q.dtype == np.int8 and np.abs(w_q).max() <= 127 and w_scale.shape == (weight.shape[0],)
        assert np.all(np.abs(w_q * per_channel - weight) <= per_channel / 2 + 1e-7)
        if len(original.input) > 2:
            b = producer[conv.input[2]]
            b_q, b_scale = values[b.input[0]], values[b.input[1]]
            x_scale = values[x.input[1]]
            assert b_q.dtype == np.int32 and np.allclose(b_scale, x_scale * w_scale)
            assert np.all(np.abs(b_q * b_scale - floats[original.input[2]]) <= b_scale / 2 + 1e-7)
        # The output: through Q and DQ, back under its original name.
        (q_out,) = consumers(conv.output[0])
        assert q_out.op_type == "QuantizeLinear"
        (dq_out,) = consumers(q_out.output[0])
        assert dq_out.op_type == "DequantizeLinear" and dq_out.output[0] == original.output[0]
        assert conv.attribute == original.attribute

    def rest(m: onnx.ModelProto) -> list:
        skip = ("Conv", "QuantizeLinear", "DequantizeLinear")
        return [(n.op_type, list(n.input), list(n.output)) for n in m.graph.node if n.op_type not in skip]

    assert rest(q) == rest(step)
    assert q.graph.input == step.graph.input and q.graph.output == step.graph.output
    used = {i for n in q.graph.node for i in n.input}
    assert all(t.name in used for t in q.graph.initializer)


def test_a_tensor_without_a_range_is_refused(step: onnx.ModelProto) -> None:
    ranges = {name: (-1.0, 1.0) for name in calibrated_tensors(step)[1:]}
    with pytest.raises(ValueError, match="no calibrated range"):
        quantize(step, ranges)
