"""Static int8 quantisation of a step graph, for a model variant that trades a little accuracy for
speed on CPUs with 8-bit dot products (docs/int8.md).

Every convolution whose weights are constant is put in QDQ form: its input and output pass through
QuantizeLinear/DequantizeLinear with a per-tensor uint8 scale and zero point calibrated on real
dynamics, its weights are int8 with one symmetric scale per output channel, and its bias int32 at
the product of the two scales. onnxruntime's optimiser fuses each such group into one QLinearConv;
without the output's Q/DQ pair it would not, and the graph would only get slower. The update, the
errors, the head and the interpolation matrices stay in float32.

The calibration ranges come from running the model's own step graph with these tensors added as
outputs (`instrument`), which `npm run quantize` does through the serving engine.
"""

from __future__ import annotations

import copy

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper


def _constants(graph: onnx.GraphProto) -> dict[str, TensorProto]:
    """Initializers by name, and the outputs of Identity nodes that only rename one (the
    exporter shares equal weights that way) under their own names."""
    found = {t.name: t for t in graph.initializer}
    for node in graph.node:
        if node.op_type == "Identity" and node.input[0] in found:
            found[node.output[0]] = found[node.input[0]]
    return found


def _quantizable(node: onnx.NodeProto, constant: dict[str, TensorProto]) -> bool:
    """A convolution whose weights (and bias, if any) are constant."""
    bias = node.input[2] if len(node.input) > 2 else ""
    return node.op_type == "Conv" and node.input[1] in constant and (not bias or bias in constant)


def calibrated_tensors(model: onnx.ModelProto) -> list[str]:
    """The tensors whose range quantisation needs: each constant-weight Conv's input and output."""
    constant = _constants(model.graph)
    names: list[str] = []
    for node in model.graph.node:
        if _quantizable(node, constant):
            for name in (node.input[0], node.output[0]):
                if name not in names:
                    names.append(name)
    return names


def instrument(model: onnx.ModelProto, names: list[str]) -> onnx.ModelProto:
    """A copy of `model` that also returns `names` (float tensors), for calibration."""
    out = copy.deepcopy(model)
    present = {o.name for o in out.graph.output}
    for name in names:
        if name not in present:
            out.graph.output.append(helper.make_tensor_value_info(name, TensorProto.FLOAT, None))
    return out


def activation_scale(low: float, high: float) -> tuple[float, int]:
    """uint8 scale and zero point for values in [low, high]; the range always holds 0, which
    must be exact (zero padding, ReLU)."""
    low, high = min(float(low), 0.0), max(float(high), 0.0)
    if high - low < 1e-12:
        return 1.0, 0
    scale = (high - low) / 255.0
    zero = int(np.clip(round(-low / scale), 0, 255))
    return scale, zero


def channel_scales(weight: np.ndarray) -> np.ndarray:
    """One symmetric int8 scale per output channel (127 levels each side, so that no product of
    the 8-bit dot product can overflow)."""
    peak = np.abs(weight.reshape(weight.shape[0], -1)).max(axis=1)
    return np.where(peak > 0, peak / 127.0, 1.0).astype(np.float32)


def quantize(model: onnx.ModelProto, ranges: dict[str, tuple[float, float]]) -> onnx.ModelProto:
    """`model` with every constant-weight Conv in QDQ int8 form, activations scaled by `ranges`
    (each tensor of calibrated_tensors: its observed minimum and maximum)."""
    out = copy.deepcopy(model)
    g = out.graph
    initializers = _constants(g)
    missing = [n for n in calibrated_tensors(model) if n not in ranges]
    if missing:
        raise ValueError(f"no calibrated range for {', '.join(missing[:5])}{' …' if len(missing) > 5 else ''}")
    added: list[TensorProto] = []
    nodes: list[onnx.NodeProto] = []
    # A tensor feeding several convolutions is quantised once.
    dequantized: dict[str, str] = {}

    def q_dq(name: str, target: str, bounds: tuple[float, float]) -> list[onnx.NodeProto]:
        scale, zero = activation_scale(*bounds)
        tag = f"{name}_int8"
        added.append(numpy_helper.from_array(np.array(scale, np.float32), f"{tag}_scale"))
        added.append(numpy_helper.from_array(np.array(zero, np.uint8), f"{tag}_zero"))
        return [
            helper.make_node("QuantizeLinear", [name, f"{tag}_scale", f"{tag}_zero"], [f"{tag}_q"]),
            helper.make_node("DequantizeLinear", [f"{tag}_q", f"{tag}_scale", f"{tag}_zero"], [target]),
        ]

    def per_channel(values: np.ndarray, scale: np.ndarray, name: str) -> str:
        """A constant stored quantised, one scale per output channel, read through a DQ node."""
        zero = np.zeros(scale.shape[0], values.dtype)
        added.extend(numpy_helper.from_array(a, f"{name}{suffix}") for a, suffix in ((values, ""), (scale, "_scale"), (zero, "_zero")))
        nodes.append(helper.make_node("DequantizeLinear", [name, f"{name}_scale", f"{name}_zero"], [f"{name}_dq"], axis=0))
        return f"{name}_dq"

    for k, node in enumerate(g.node):
        if not _quantizable(node, initializers):
            nodes.append(node)
            continue
        tag = f"conv{k}_int8"
        x = node.input[0]
        if x not in dequantized:
            dequantized[x] = f"{x}_int8_dq"
            nodes += q_dq(x, dequantized[x], ranges[x])
        x_scale, _ = activation_scale(*ranges[x])

        weight = numpy_helper.to_array(initializers[node.input[1]]).astype(np.float32)
        w_scale = channel_scales(weight)
        shape = (-1,) + (1,) * (weight.ndim - 1)
        w_q = np.clip(np.round(weight / w_scale.reshape(shape)), -127, 127).astype(np.int8)
        inputs = [dequantized[x], per_channel(w_q, w_scale, f"{tag}_w")]
        if len(node.input) > 2 and node.input[2]:
            bias = numpy_helper.to_array(initializers[node.input[2]]).astype(np.float64)
            b_scale = (x_scale * w_scale.astype(np.float64)).astype(np.float32)
            b_q = np.clip(np.round(bias / b_scale), -(2**31), 2**31 - 1).astype(np.int32)
            inputs.append(per_channel(b_q, b_scale, f"{tag}_b"))
        y = node.output[0]
        conv = helper.make_node("Conv", inputs, [f"{tag}_y"], name=node.name or tag)
        conv.attribute.extend(node.attribute)
        nodes.append(conv)
        # What used to be y is now the dequantised output, so its consumers need no change.
        nodes += q_dq(f"{tag}_y", y, ranges[y])

    # Renamings of weights that now only fed the float convolutions go, and those weights with them.
    outputs = {o.name for o in g.output}
    while True:
        used = {i for n in nodes for i in n.input} | outputs
        dead = [n for n in nodes if n.op_type == "Identity" and n.output[0] not in used]
        if not dead:
            break
        nodes = [n for n in nodes if n not in dead]
    del g.node[:]
    g.node.extend(nodes)
    used = {i for n in g.node for i in n.input}
    kept = [t for t in g.initializer if t.name in used]
    del g.initializer[:]
    g.initializer.extend(kept + [t for t in added if t.name in used])
    onnx.checker.check_model(out)
    return out
