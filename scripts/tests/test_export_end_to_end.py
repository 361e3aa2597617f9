"""A freshly exported small random model, run by the TypeScript engine, matches the PyTorch
reference on it; and the manifest describes everything the server needs."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import onnx
import pytest
import torch

from predify.config import parse_config
from predify.export import export_model, sha256
from predify.model import PredifyModel

ROOT = Path(__file__).resolve().parents[2]
CHECK_GOLDEN = ROOT / "dist" / "cli" / "check-golden.js"

SMALL = {
    "name": "tiny-random",
    "backbone": {"arch": "fashion-cnn", "num_classes": 10, "seed": 3},
    "input": {"channels": 1, "height": 28, "width": 28, "mean": [0.5], "std": [0.25]},
    "labels": {"generate": 10},
    "hyperparameters": {"beta": 0.7, "lambda": 0.2, "alpha": 0.05},
    "gradient_scaling": True,
    "pcoders": [
        {"layer": "relu1"},  # default predictor: bilinear upsample + 3x3 ConvTranspose2d
        {"layer": "relu2", "predictor": [{"type": "upsample", "mode": "nearest"}, {"type": "conv", "kernel": 5, "padding": 2}, {"type": "relu"}]},
        {"layer": "relu3", "hyperparameters": {"beta": 0.9, "alpha": 0.2}},
    ],
}


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("tiny")
    torch.manual_seed(0)
    model = PredifyModel(parse_config(json.loads(json.dumps(SMALL))))
    # Non-trivial BatchNorm statistics, so the graphs carry them.
    for m in model.backbone.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.uniform_(-0.2, 0.2)
            m.running_var.uniform_(0.5, 1.5)
    golden = torch.randn(3, 1, 28, 28, generator=torch.Generator().manual_seed(5))
    export_model(model, out, golden_inputs=golden)
    return out


def test_manifest_is_complete(exported: Path) -> None:
    m = json.loads((exported / "manifest.json").read_text())
    assert m["format"] == "predify-serve/model" and m["version"] == 1
    assert m["input"]["channels"] == 1 and m["input"]["resize"] in ("contain", "cover", "fill")
    assert len(m["labels"]) == 10
    assert [pc["hyperparameters"] for pc in m["pcoders"]] == [
        {"beta": 0.7, "lambda": 0.2, "alpha": 0.05},
        {"beta": 0.7, "lambda": 0.2, "alpha": 0.05},
        {"beta": 0.9, "lambda": 0.0, "alpha": 0.2},  # the top PCoder has no feedback
    ]
    for pc in m["pcoders"]:
        scale = pc["gradientScale"]
        assert scale["scale"] == pytest.approx(scale["elements"] / scale["influence"] ** 0.5)
    for name, graph in m["graphs"].items():
        assert graph["sha256"] == sha256(exported / graph["file"]), name
        # The loop graph's state is [batch, ...]; its weights and answers are [steps, batch, ...].
        lead = [t["shape"][0] for t in graph["inputs"] + graph["outputs"] if t["shape"][0] != "batch"]
        assert lead == ([] if name != "loop" else ["steps"] * 3), name
    assert m["step"] == "step" and m["loop"] == "loop"


def test_step_and_loop_graphs_keep_their_weights_once(exported: Path) -> None:
    m = json.loads((exported / "manifest.json").read_text())
    step, loop = m["graphs"]["step"], m["graphs"]["loop"]
    assert step["data"] == loop["data"] and step["data"]["file"] == "step.onnx.data"
    data = exported / step["data"]["file"]
    assert step["data"]["sha256"] == sha256(data)
    # Each graph alone is small; the shared file holds the weights once: about one step graph's.
    inline = onnx.load(str(exported / step["file"]))  # loads the external data back in
    whole = len(inline.SerializeToString())
    assert (exported / step["file"]).stat().st_size < 0.05 * whole
    assert (exported / loop["file"]).stat().st_size < 0.05 * whole
    assert whole * 0.9 < data.stat().st_size < whole * 1.1


def test_loop_graph_reads_repacked_matrices_from_the_outer_graph(exported: Path) -> None:
    """onnxruntime keeps a Loop body's own weights beside the copies its Gemm and MatMul kernels
    repack, so those matrices sit in the outer graph; convolution weights stay in the body,
    where the optimiser can change their layout (test/model/weights-resident.test.ts measures
    what this saves on PVGG16)."""
    loop = onnx.load(str(exported / "loop.onnx"), load_external_data=False)
    body = next(n for n in loop.graph.node if n.op_type == "Loop").attribute[0].g
    outer = {t.name for t in loop.graph.initializer}
    inner = {t.name for t in body.initializer}
    # The classifier's Gemm. The MatMuls here upsample; their matrices are the left operand or
    # computed in the graph, and stay in the body.
    classifier = {n.input[1] for n in body.node if n.op_type == "Gemm"}
    convolved = {n.input[1] for n in body.node if n.op_type in ("Conv", "ConvTranspose")}
    assert classifier == {"head.fc.weight"} and classifier <= outer
    assert convolved and convolved <= inner
    assert not outer & inner


def test_typescript_engine_matches_reference(exported: Path) -> None:
    if not CHECK_GOLDEN.exists():
        pytest.fail(f"{CHECK_GOLDEN} is missing: run `npm run build` first")
    run = subprocess.run(["node", str(CHECK_GOLDEN), str(exported)], capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stdout + run.stderr
    report = json.loads(run.stdout)
    assert report["cases"] == 3 and report["timesteps"] == 10
    assert report["maxLogitDiff"] <= 1e-4
    assert report["maxBatchDiff"] <= 1e-5
    assert report["loop"]["maxLogitDiff"] <= 1e-4 and report["loop"]["maxBatchDiff"] <= 1e-5
