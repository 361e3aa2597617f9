"""Export a PredifyModel to ONNX graphs, a manifest.json and golden reference outputs."""

from __future__ import annotations

import copy
import hashlib
import json
from pathlib import Path
from typing import Any

import onnx
import torch
import torch.nn.functional as F
from torch import nn

from .loop_graph import loop_graph, share_weights
from .model import PredifyModel, reference_dynamics
from .predictors import FeedbackGraph
from .step_graph import StepGraph, state_names

MANIFEST_FORMAT = "predify-serve/model"
MANIFEST_VERSION = 1
OPSET = 17
GOLDEN_TIMESTEPS = 10


class MatmulAdaptiveAvgPool(nn.Module):
    """AdaptiveAvgPool2d for one fixed input size, as two matmuls.

    torch cannot export adaptive pooling whose output size does not divide the input size
    (VGG's 7x7 pool on small inputs); for a known input size it is a fixed linear map.
    """

    def __init__(self, in_hw: tuple[int, int], out_hw: tuple[int, int]):
        super().__init__()
        for axis, name in enumerate(("pool_h", "pool_w")):
            basis = torch.eye(in_hw[axis], dtype=torch.float64).reshape(in_hw[axis], 1, in_hw[axis])
            cols = F.adaptive_avg_pool1d(basis, out_hw[axis]).reshape(in_hw[axis], out_hw[axis])
            self.register_buffer(name, cols.T.contiguous().float())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.matmul(torch.matmul(self.pool_h, x), self.pool_w.t())


def exportable(module: nn.Module, example: torch.Tensor) -> nn.Module:
    """A copy of `module` in which adaptive pools are made explicit for the input size they
    see: an identity where the size does not change, a fixed average pool where the output
    divides the input, matmuls otherwise. torch exports adaptive pooling only where it can
    read the input size, which it cannot inside the step graph."""
    module = copy.deepcopy(module).eval()
    sizes: dict[nn.Module, tuple[int, int]] = {}
    hooks = [
        m.register_forward_pre_hook(lambda m, args: sizes.__setitem__(m, tuple(args[0].shape[-2:])))
        for m in module.modules()
        if isinstance(m, nn.AdaptiveAvgPool2d)
    ]
    with torch.no_grad():
        module(example)
    for h in hooks:
        h.remove()
    for parent in list(module.modules()):
        for name, child in parent.named_children():
            if child in sizes:
                out = child.output_size
                out_hw = (out, out) if isinstance(out, int) else tuple(out)
                in_hw = sizes[child]
                out_hw = tuple(in_hw[d] if out_hw[d] is None else out_hw[d] for d in range(2))
                if in_hw == out_hw:
                    setattr(parent, name, nn.Identity())
                elif any(in_hw[d] % out_hw[d] for d in range(2)):
                    setattr(parent, name, MatmulAdaptiveAvgPool(in_hw, out_hw))
                else:
                    window = tuple(in_hw[d] // out_hw[d] for d in range(2))
                    setattr(parent, name, nn.AvgPool2d(window, window))
    return module


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def io_spec(values: Any) -> list[dict[str, Any]]:
    specs = []
    for v in values:
        dims = [d.dim_param if d.dim_param else d.dim_value for d in v.type.tensor_type.shape.dim]
        # Only the batch may vary, and in the loop graph the number of steps.
        shape = [(d if d == "steps" else "batch") if isinstance(d, str) else d for d in dims]
        specs.append({"name": v.name, "type": "float32", "shape": shape})
    return specs


def add_loop_graph(out: Path, manifest: dict[str, Any]) -> None:
    """Writes loop.onnx, the step graph inside an ONNX Loop (loop_graph.py), and names it in
    `manifest`; the weights of both graphs go once into step.onnx.data."""
    step_spec = manifest["graphs"][manifest["step"]]
    step_path = out / step_spec["file"]
    step = onnx.load(str(step_path))
    loop = loop_graph(step)
    loop_path = out / "loop.onnx"
    data = out / f"{step_path.name}.data"
    share_weights({step_path: step, loop_path: loop}, data)
    shared = {"file": data.name, "sha256": sha256(data)}
    step_spec.update({"sha256": sha256(step_path), "data": shared})
    manifest["graphs"]["loop"] = {
        "file": loop_path.name,
        "sha256": sha256(loop_path),
        "data": shared,
        "inputs": io_spec(loop.graph.input),
        "outputs": io_spec(loop.graph.output),
    }
    manifest["loop"] = "loop"


def _export(module: nn.Module, args: tuple[torch.Tensor, ...], path: Path, inputs: list[str], outputs: list[str]) -> dict[str, Any]:
    axes = {name: {0: "batch"} for name in inputs + outputs}
    with torch.no_grad():
        torch.onnx.export(
            module,
            args,
            str(path),
            input_names=inputs,
            output_names=outputs,
            dynamic_axes=axes,
            opset_version=OPSET,
            do_constant_folding=True,
        )
    graph = onnx.load(str(path))
    # torch names a dimension it could not infer statically; only the batch may vary, so every
    # other dimension of an output is the example's.
    with torch.no_grad():
        results = module(*args)
    results = results if isinstance(results, tuple) else (results,)
    for value, result in zip(graph.graph.output, results):
        for d, dim in enumerate(value.type.tensor_type.shape.dim):
            if d > 0 and dim.dim_param:
                dim.ClearField("dim_param")
                dim.dim_value = int(result.shape[d])
    onnx.save(graph, str(path))
    onnx.checker.check_model(graph)
    return {
        "file": path.name,
        "sha256": sha256(path),
        "inputs": io_spec(graph.graph.input),
        "outputs": io_spec(graph.graph.output),
    }


def export_model(
    model: PredifyModel,
    out_dir: str | Path,
    golden_inputs: torch.Tensor | None = None,
    golden_names: list[str] | None = None,
    golden_labels: list[int] | None = None,
    extra: dict[str, Any] | None = None,
    keep_profiles: bool = True,
    reference: Any = None,
    golden_timesteps: int = GOLDEN_TIMESTEPS,
) -> dict[str, Any]:
    """`reference(x, timesteps)` computes the golden outputs of one image; by default the
    spec's reference_dynamics (an imported network passes its package's semantics instead)."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    model.eval()
    cfg = model.cfg
    # Two samples so that nothing in the graph is specialised to batch size 1.
    x = torch.zeros(2, *model.input_shape)

    graphs: dict[str, Any] = {}
    pcoders = []
    reps = [x]
    encoders, feedback = [], []
    with torch.no_grad():
        for i, block in enumerate(model.blocks):
            name = f"encoder{i + 1}"
            encoders.append(exportable(block, reps[-1]))
            graphs[name] = _export(encoders[-1], (reps[-1],), out / f"{name}.onnx", ["input"], ["output"])
            reps.append(block(reps[-1]))
        head = exportable(model.head, reps[-1])
        graphs["head"] = _export(head, (reps[-1],), out / "head.onnx", ["input"], ["logits"])
        for i, info in enumerate(model.info):
            name = f"feedback{i + 1}"
            graph = FeedbackGraph(model.predictors[i], info.shape, info.target_shape).eval()
            feedback.append(graph)
            graphs[name] = _export(
                graph,
                (reps[i + 1], reps[i]),
                out / f"{name}.onnx",
                ["representation", "target"],
                ["prediction", "error", "gradient"],
            )
            pcoders.append(
                {
                    "name": info.name,
                    "layer": info.layer,
                    "shape": list(info.shape),
                    "targetShape": list(info.target_shape),
                    "hyperparameters": {"beta": info.beta, "lambda": info.lam, "alpha": info.alpha},
                    "gradientScale": {"elements": info.elements, "influence": info.influence, "scale": info.scale},
                    "encoder": f"encoder{i + 1}",
                    "feedback": name,
                }
            )
        # The whole timestep in one graph (scripts/predify/step_graph.py), fed the state of
        # the feedforward pass with the weights of a running sample, so that no branch is
        # specialised away.
        n = len(model.info)
        preds = [feedback[i](reps[i + 1], reps[i])[0] for i in range(1, n)]
        state = (*reps[1:], *preds, *reps[1:])
        coefficients = torch.tensor([[0.4, 0.1, 0.5, 0.01]]).repeat(x.shape[0], n, 1)
        names = state_names(n)
        graphs["step"] = _export(
            StepGraph(encoders[1:], feedback, head).eval(),
            (x, reps[1], coefficients, *state),
            out / "step.onnx",
            ["image", "drive1", "coefficients", *names],
            ["logits", "errors", *[f"next_{name}" for name in names]],
        )

    manifest: dict[str, Any] = {
        "format": MANIFEST_FORMAT,
        "version": MANIFEST_VERSION,
        "name": cfg.name,
        "modelVersion": "1",
        "description": cfg.description,
        "input": cfg.input.to_manifest(),
        "labels": cfg.labels,
        "gradientScaling": cfg.gradient_scaling,
        "pcoders": pcoders,
        "head": "head",
        "step": "step",
        "graphs": graphs,
        "exportedWith": {"torch": torch.__version__, "onnx": onnx.__version__, "opset": OPSET},
        **(extra or {}),
    }
    add_loop_graph(out, manifest)

    if golden_inputs is not None:
        cases = []
        for k in range(golden_inputs.shape[0]):
            x_k = golden_inputs[k : k + 1]
            ref = (reference or (lambda x, t: reference_dynamics(model, x, t)))(x_k, golden_timesteps)
            with torch.no_grad():
                plain = model.feedforward(x_k)[0].tolist()  # the unmodified backbone
            case = {
                "name": golden_names[k] if golden_names else f"case{k}",
                "input": golden_inputs[k].flatten().tolist(),
                "feedforward": plain,
                **ref,
            }
            if golden_labels is not None:
                case["label"] = golden_labels[k]
            cases.append(case)
        golden_path = out / "golden.json"
        golden_path.write_text(json.dumps({"timesteps": golden_timesteps, "cases": cases}))
        manifest["golden"] = {"file": golden_path.name, "sha256": sha256(golden_path)}

    # Calibrated hyperparameter profiles (npm run calibrate) live in the manifest; a re-export
    # of the same model keeps them. They belong to the weights: calibrate again after retraining.
    previous_path = out / "manifest.json"
    if keep_profiles and previous_path.exists():
        try:
            previous = json.loads(previous_path.read_text())
        except ValueError:
            previous = {}
        if previous.get("name") == cfg.name and len(previous.get("pcoders", [])) == len(pcoders):
            for key in ("profiles", "defaultProfile", "recommendedTimesteps", "anytime", "corruptionScore"):
                if key in previous:
                    manifest[key] = previous[key]
            manifest["modelVersion"] = _next_version(previous, graphs)

    previous_path.write_text(json.dumps(manifest, indent=2) + "\n")
    return manifest


def _next_version(previous: dict[str, Any], graphs: dict[str, Any]) -> str:
    """The Open Inference Protocol's model version: kept while the graphs are the same bytes,
    raised by one when a re-export changed them (new weights are a new version to clients)."""
    version = str(previous.get("modelVersion", "1"))
    before = {name: g.get("sha256") for name, g in previous.get("graphs", {}).items()}
    after = {name: g.get("sha256") for name, g in graphs.items()}
    return version if before == after else str(int(version) + 1)
