"""A graph that runs K timesteps in one call, the state carried inside: an ONNX Loop around a
model's step graph (step_graph.py). docs/gpu.md says why: on a GPU it keeps the state on the
device, which onnxruntime-node offers no other way to do; on a CPU it saves handing the state
back to JavaScript between timesteps.

Inputs: image, drive1, `coefficients_all` [steps, batch, n, 4] (each step's update weights,
so a sample may start inside the chunk; their first dimension is the number of steps K) and
`init_<state>` for each state tensor of the step graph. Outputs: `final_<state>` after the last
step, and `all_logits` [steps, batch, classes] and `all_errors` [steps, batch, n], a row a step.

The loop graph holds the step graph's weights again. `share_weights` stores them once, in a
file both graphs read (ONNX external data), so that the loop graph costs no disk space.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import onnx
from onnx import TensorProto, helper, numpy_helper

FIXED = ("image", "drive1", "coefficients")

# Smaller tensors (shapes, scalars) stay inside each graph, as onnx's own external-data writer does.
INLINE_BELOW = 1024
# Offsets aligned for vector loads should onnxruntime map the file rather than read it.
ALIGN = 64


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
    repacked = _repacked_weights(g)
    body = helper.make_graph(
        nodes, "timestep", body_inputs, body_outputs, [t for t in g.initializer if t.name not in repacked]
    )

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
    outer = helper.make_graph(nodes, "steps", inputs, outputs, [t for t in g.initializer if t.name in repacked])
    model = helper.make_model(outer, opset_imports=step.opset_import)
    model.ir_version = step.ir_version
    return model


def _repacked_weights(graph: onnx.GraphProto) -> set[str]:
    """The weights onnxruntime's CPU kernels repack into their own layout when a session is
    created: the matrices Gemm and MatMul multiply by. Kept in the Loop body, onnxruntime holds
    the file's bytes of each beside its repacked copy (measured: PVGG16's classifier, 456 MiB,
    stayed resident twice); read from the outer graph, the original is let go once repacked.
    Every other weight stays in the body, where the graph optimiser can rewrite convolutions to
    its blocked layout (it leaves the outer graph's alone: PVGG16 ran 45% slower that way)."""
    uses: dict[str, list[tuple[str, int]]] = {}
    for node in graph.node:
        for position, name in enumerate(node.input):
            uses.setdefault(name, []).append((node.op_type, position))
    return {
        t.name
        for t in graph.initializer
        if t.name in uses and all(op in ("Gemm", "MatMul") and position == 1 for op, position in uses[t.name])
    }


def _initializers(graph: onnx.GraphProto) -> Iterator[TensorProto]:
    yield from graph.initializer
    for node in graph.node:
        for attribute in node.attribute:
            if attribute.type == onnx.AttributeProto.GRAPH:
                yield from _initializers(attribute.g)
            for sub in attribute.graphs:
                yield from _initializers(sub)


def share_weights(models: dict[Path, onnx.ModelProto], data: Path) -> None:
    """Writes `models` to their paths with every weight of 1 KiB or more stored once in `data`
    (next to them): a tensor with the same name and bytes in several graphs is written once and
    referenced by each. The models' tensors must be held in memory (onnx.load's default)."""
    placed: dict[tuple[str, bytes], tuple[int, int]] = {}
    with open(data, "wb") as f:
        for model in models.values():
            for tensor in _initializers(model.graph):
                if tensor.data_location == TensorProto.EXTERNAL:
                    raise ValueError(f"{tensor.name} is already stored outside its graph")
                raw = numpy_helper.to_array(tensor).tobytes()
                if len(raw) < INLINE_BELOW:
                    continue
                key = (tensor.name, raw)
                if key not in placed:
                    f.write(b"\0" * (-f.tell() % ALIGN))
                    placed[key] = (f.tell(), len(raw))
                    f.write(raw)
                offset, length = placed[key]
                name, data_type, dims = tensor.name, tensor.data_type, list(tensor.dims)
                tensor.Clear()
                tensor.name, tensor.data_type = name, data_type
                tensor.dims.extend(dims)
                tensor.data_location = TensorProto.EXTERNAL
                for key_, value in (("location", data.name), ("offset", str(offset)), ("length", str(length))):
                    entry = tensor.external_data.add()
                    entry.key, entry.value = key_, value
    for path, model in models.items():
        if path.parent != data.parent:
            raise ValueError(f"{path} and {data} must share a directory")
        # Serialised directly: onnx.save would try to write the external data itself.
        path.write_bytes(model.SerializeToString())
        onnx.checker.check_model(str(path))
