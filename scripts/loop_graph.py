#!/usr/bin/env python3
"""A graph that runs K timesteps in one call, the state carried inside: an ONNX Loop around a
model's step graph (scripts/predify/step_graph.py). docs/gpu.md says why: on a GPU it keeps
the state on the device, which onnxruntime-node offers no other way to do.

Inputs: image, drive1, `coefficients_all` [steps, batch, n, 4] (each step's update weights,
so a sample may start inside the chunk; their first dimension is the number of steps K) and
`init_<state>` for each state tensor of the step graph. Outputs: `final_<state>` after the last
step, and `all_logits` [steps, batch, classes] and `all_errors` [steps, batch, n], a row a step.

Usage: loop_graph.py MODEL_DIR [OUT_FILE]. With OUT_FILE, writes the graph there and nothing
else (bench/loop-vs-step.ts). Without, writes MODEL_DIR/loop.onnx and names it in the manifest
(`loop`), which lets the engine run up to ENGINE_STEPS_PER_CALL timesteps per call; it holds
every weight of the step graph once more.
"""
import json
import sys
from pathlib import Path

import onnx
from onnx import TensorProto, helper

sys.path.insert(0, str(Path(__file__).resolve().parent))

from predify.export import sha256  # noqa: E402

FIXED = ("image", "drive1", "coefficients")


def loop_graph(step: onnx.ModelProto) -> onnx.ModelProto:
    g = step.graph
    state = [i for i in g.input if i.name not in FIXED]
    names = [i.name for i in state]
    # The body: the step graph's nodes as they are, its `coefficients` taken from this step's
    # row, image and drive1 read from the outer scope.
    body_inputs = [
        helper.make_tensor_value_info("iteration", TensorProto.INT64, []),
        helper.make_tensor_value_info("cond_in", TensorProto.BOOL, []),
        *[helper.make_tensor_value_info(n, TensorProto.FLOAT, None) for n in names],
    ]
    body_outputs = [
        helper.make_tensor_value_info("cond_out", TensorProto.BOOL, []),
        *[helper.make_tensor_value_info(f"next_{n}", TensorProto.FLOAT, None) for n in names],
        helper.make_tensor_value_info("logits", TensorProto.FLOAT, None),
        helper.make_tensor_value_info("errors", TensorProto.FLOAT, None),
    ]
    nodes = [
        helper.make_node("Gather", ["coefficients_all", "iteration"], ["coefficients"], axis=0),
        helper.make_node("Identity", ["cond_in"], ["cond_out"]),
        *g.node,
    ]
    body = helper.make_graph(nodes, "timestep", body_inputs, body_outputs, list(g.initializer))

    def dims(value: onnx.ValueInfoProto) -> list:
        return [d.dim_param or d.dim_value for d in value.type.tensor_type.shape.dim]

    coefficients = next(i for i in g.input if i.name == "coefficients")
    logits = next(o for o in g.output if o.name == "logits")
    errors = next(o for o in g.output if o.name == "errors")
    inputs = [
        *[i for i in g.input if i.name in ("image", "drive1")],
        helper.make_tensor_value_info("coefficients_all", TensorProto.FLOAT, ["steps", *dims(coefficients)]),
        *[helper.make_tensor_value_info(f"init_{i.name}", TensorProto.FLOAT, dims(i)) for i in state],
    ]
    outputs = [
        *[helper.make_tensor_value_info(f"final_{i.name}", TensorProto.FLOAT, dims(i)) for i in state],
        helper.make_tensor_value_info("all_logits", TensorProto.FLOAT, ["steps", *dims(logits)]),
        helper.make_tensor_value_info("all_errors", TensorProto.FLOAT, ["steps", *dims(errors)]),
    ]
    nodes = [
        # The trip count is the weights' first dimension: no integer input to feed.
        helper.make_node("Shape", ["coefficients_all"], ["weights_shape"], start=0, end=1),
        helper.make_node("Squeeze", ["weights_shape"], ["steps"]),
        helper.make_node("Constant", [], ["always"], value=helper.make_tensor("always", TensorProto.BOOL, [], [True])),
        helper.make_node(
            "Loop",
            ["steps", "always", *[f"init_{n}" for n in names]],
            [*[f"final_{n}" for n in names], "all_logits", "all_errors"],
            body=body,
        ),
    ]
    model = helper.make_model(helper.make_graph(nodes, "steps", inputs, outputs), opset_imports=step.opset_import)
    model.ir_version = step.ir_version
    return model


def io_spec(values) -> list:
    return [
        {
            "name": v.name,
            "type": "float32",
            "shape": [
                ("steps" if d.dim_param == "steps" else "batch") if d.dim_param else d.dim_value
                for d in v.type.tensor_type.shape.dim
            ],
        }
        for v in values
    ]


def main() -> None:
    model_dir = Path(sys.argv[1])
    manifest_file = model_dir / "manifest.json"
    manifest = json.loads(manifest_file.read_text())
    if "step" not in manifest:
        sys.exit(f"{model_dir} has no step graph: re-export it")
    model = loop_graph(onnx.load(str(model_dir / manifest["graphs"][manifest["step"]]["file"])))
    if len(sys.argv) > 2:
        onnx.save(model, sys.argv[2])
        return
    out = model_dir / "loop.onnx"
    onnx.save(model, str(out))
    manifest["graphs"]["loop"] = {
        "file": out.name,
        "sha256": sha256(out),
        "inputs": io_spec(model.graph.input),
        "outputs": io_spec(model.graph.output),
    }
    manifest["loop"] = "loop"
    manifest_file.write_text(json.dumps(manifest, indent=2) + "\n")
    print(f"wrote {out} and named it in {manifest_file}")


if __name__ == "__main__":
    main()
