#!/usr/bin/env python3
"""A graph that runs K timesteps in one call, the state carried inside: an ONNX Loop around a
model's step graph (scripts/predify/step_graph.py). docs/gpu.md says why: on a GPU it keeps
the state on the device, which onnxruntime-node offers no other way to do.

Inputs: `steps` (int64 scalar K), image, drive1, `coefficients_all` [K, batch, n, 4] (each
step's update weights, so a sample may start inside the chunk) and `init_<state>` for each state
tensor of the step graph. Outputs: `final_<state>` after the last step, and `all_logits`
[K, batch, classes] and `all_errors` [K, batch, n], one row per step.

Usage: loop_graph.py MODEL_DIR OUT_FILE. Not part of the exported model (yet): the engine
runs the step graph; bench/loop-vs-step.ts measures the two against each other.
"""
import sys

import onnx
from onnx import TensorProto, helper

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
    inputs = [
        helper.make_tensor_value_info("steps", TensorProto.INT64, []),
        *[i for i in g.input if i.name in ("image", "drive1")],
        helper.make_tensor_value_info("coefficients_all", TensorProto.FLOAT, ["steps", *dims(coefficients)]),
        *[helper.make_tensor_value_info(f"init_{i.name}", TensorProto.FLOAT, dims(i)) for i in state],
    ]
    outputs = [
        *[helper.make_tensor_value_info(f"final_{i.name}", TensorProto.FLOAT, dims(i)) for i in state],
        helper.make_tensor_value_info("all_logits", TensorProto.FLOAT, None),
        helper.make_tensor_value_info("all_errors", TensorProto.FLOAT, None),
    ]
    nodes = [
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


def main() -> None:
    model_dir, out = sys.argv[1], sys.argv[2]
    onnx.save(loop_graph(onnx.load(f"{model_dir}/step.onnx")), out)


if __name__ == "__main__":
    main()
