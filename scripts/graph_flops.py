#!/usr/bin/env python3
"""FLOPs of every graph of a model, counted from the ONNX graphs themselves, and a ceiling
graph per graph: the same convolution work in the form onnxruntime runs fastest.

For each graph of the manifest, shapes are inferred at batch 1 and every Conv, ConvTranspose,
Gemm and MatMul counted as 2 x multiply-accumulates (element-wise operations, pooling and
normalisation are not counted: they are a small share and no ceiling exists for them). The
ceiling graph holds one plain, stride-1 Conv per counted convolution, each on its own input,
with the same multiply-accumulates:

- a Conv keeps its channels, kernel, groups and output size, at stride 1;
- a ConvTranspose of stride s becomes the stride-1 Conv on its input grid that computes it
  (channels out x s^2, kernel ceil(k / s)), the form with the same work;
- a Gemm or MatMul becomes a 1x1 Conv of the same sizes.

Writes <out>/<graph>.onnx (the ceiling graphs), <out>/reference.onnx (a plain 3x3
convolution, 64 to 64 channels at 28 x 28: the machine's reference) and <out>/flops.json;
bench/ceiling.ts reads them. Usage: graph_flops.py MODEL_DIR OUT_DIR
"""
import json
import math
import sys
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper, shape_inference


# (in channels, out channels, kernel, group, out height, out width) of the reference convolution
REFERENCE = (64, 64, 3, 1, 28, 28)


def with_batch_one(model: onnx.ModelProto) -> onnx.ModelProto:
    for value in list(model.graph.input) + list(model.graph.output):
        dims = value.type.tensor_type.shape.dim
        if dims and dims[0].dim_param:
            dims[0].ClearField("dim_param")
            dims[0].dim_value = 1
    return shape_inference.infer_shapes(model)


def shapes_of(model: onnx.ModelProto) -> dict:
    shapes = {}
    for value in list(model.graph.value_info) + list(model.graph.input) + list(model.graph.output):
        dims = value.type.tensor_type.shape.dim
        shapes[value.name] = [d.dim_value for d in dims]
    for init in model.graph.initializer:
        shapes[init.name] = list(init.dims)
    return shapes


def attribute(node, name, default):
    for a in node.attribute:
        if a.name == name:
            return helper.get_attribute_value(a)
    return default


def count(model_file: Path):
    """(FLOPs per sample, the plain convolutions of the ceiling) for one graph."""
    model = with_batch_one(onnx.load(str(model_file)))
    shapes = shapes_of(model)
    flops = 0
    plain = []  # (in channels, out channels, kernel, group, out height, out width)
    for node in model.graph.node:
        if node.op_type in ("Conv", "ConvTranspose"):
            x, w = shapes[node.input[0]], shapes[node.input[1]]
            y = shapes[node.output[0]]
            group = attribute(node, "group", 1)
            kh, kw = w[2], w[3]
            if node.op_type == "Conv":
                cin, cout = x[1], y[1]
                macs = cout * y[2] * y[3] * (cin // group) * kh * kw
                plain.append((cin, cout, kh, group, y[2], y[3]))
            else:
                cin, cout = x[1], y[1]
                macs = cin * x[2] * x[3] * (cout // group) * kh * kw
                s = attribute(node, "strides", [1, 1])[0]
                k = math.ceil(kh / s)
                if group == 1:
                    plain.append((cin, cout * s * s, k, 1, x[2], x[3]))
                else:
                    plain.append((cin, cout * s * s, k, group, x[2], x[3]))
            flops += 2 * macs
        elif node.op_type in ("Gemm", "MatMul"):
            a, b = shapes[node.input[0]], shapes[node.input[1]]
            transposed = node.op_type == "Gemm" and attribute(node, "transB", 0)
            k, n = (b[1], b[0]) if transposed else (b[0], b[1])
            m = int(np.prod(a[:-1])) if a else 1
            flops += 2 * m * k * n
            plain.append((k, n, 1, 1, 1, m))
    return flops, plain


def ceiling_graph(plain, file: Path) -> None:
    rng = np.random.default_rng(0)
    inputs, outputs, nodes, inits = [], [], [], []
    for j, (cin, cout, k, group, h, w) in enumerate(plain):
        pad = k // 2
        # Output h x w at stride 1: the input is as large as the output plus what the kernel eats.
        hin, win = h + k - 1 - 2 * pad, w + k - 1 - 2 * pad
        inputs.append(helper.make_tensor_value_info(f"x{j}", TensorProto.FLOAT, ["batch", cin, hin, win]))
        outputs.append(helper.make_tensor_value_info(f"y{j}", TensorProto.FLOAT, None))
        weight = rng.standard_normal((cout, cin // group, k, k)).astype(np.float32) * 0.01
        inits.append(numpy_helper.from_array(weight, f"w{j}"))
        nodes.append(
            helper.make_node(
                "Conv", [f"x{j}", f"w{j}"], [f"y{j}"], kernel_shape=[k, k], pads=[pad] * 4, group=group
            )
        )
    graph = helper.make_graph(nodes, "ceiling", inputs, outputs, inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, str(file))


def main() -> None:
    model_dir, out = Path(sys.argv[1]), Path(sys.argv[2])
    out.mkdir(parents=True, exist_ok=True)
    manifest = json.loads((model_dir / "manifest.json").read_text())
    report = {}
    for name, spec in manifest["graphs"].items():
        flops, plain = count(model_dir / spec["file"])
        ceiling_flops = sum(2 * cout * h * w * (cin // g) * k * k for cin, cout, k, g, h, w in plain)
        if plain:
            ceiling_graph(plain, out / f"{name}.onnx")
        report[name] = {
            "flopsPerSample": flops,
            "ceiling": f"{name}.onnx" if plain else None,
            "ceilingFlopsPerSample": ceiling_flops,
            "convolutions": len(plain),
        }
    # The machine's reference: the plain 3x3 convolution onnxruntime runs fastest here.
    ceiling_graph([REFERENCE], out / "reference.onnx")
    (out / "flops.json").write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()
