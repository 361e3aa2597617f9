"""graph_flops.py counts a graph's convolution and matrix FLOPs as the layers' sizes say, and its
ceiling graph does the same multiply-accumulates in plain stride-1 convolutions."""

from __future__ import annotations

import json
import sys

import onnx
import torch
from torch import nn

import graph_flops


class Tiny(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3, stride=2, padding=1)  # 3x16x16 -> 8x8x8
        self.up = nn.ConvTranspose2d(8, 4, 10, stride=2, padding=4)  # 8x8x8 -> 4x16x16
        self.fc = nn.Linear(4 * 16 * 16, 5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(torch.relu(self.up(self.conv(x))).flatten(1))


def test_counts_and_ceiling(tmp_path):
    model_dir = tmp_path / "model"
    model_dir.mkdir()
    torch.onnx.export(
        Tiny().eval(),
        torch.zeros(1, 3, 16, 16),
        str(model_dir / "tiny.onnx"),
        input_names=["input"],
        output_names=["output"],
        dynamic_axes={"input": {0: "batch"}, "output": {0: "batch"}},
        opset_version=17,
    )
    (model_dir / "manifest.json").write_text(json.dumps({"graphs": {"tiny": {"file": "tiny.onnx"}}}))
    out = tmp_path / "out"
    sys.argv = ["graph_flops.py", str(model_dir), str(out)]
    graph_flops.main()
    report = json.loads((out / "flops.json").read_text())["tiny"]

    conv = 2 * 8 * 8 * 8 * 3 * 3 * 3  # out channels x out size x in channels x kernel
    up = 2 * 8 * 8 * 8 * 4 * 10 * 10  # in channels x in size x out channels x kernel
    fc = 2 * 1024 * 5
    assert report["flopsPerSample"] == conv + up + fc
    assert report["ceilingFlopsPerSample"] == conv + up + fc
    assert report["convolutions"] == 3

    ceiling = onnx.load(str(out / "tiny.onnx"))
    convs = [n for n in ceiling.graph.node if n.op_type == "Conv"]
    assert len(convs) == 3
    # The transposed convolution's ceiling: stride 1 on its 8x8 input grid, 4 x 2^2 channels, kernel 5.
    weights = {i.name: list(i.dims) for i in ceiling.graph.initializer}
    assert weights["w1"] == [16, 8, 5, 5]
    for node in convs:
        assert all(a.name != "strides" for a in node.attribute)
    assert (out / "reference.onnx").exists()
