#!/usr/bin/env python3
"""Cuts a model's step graph into one graph per PCoder and one for the head, for
bench/pcoder-graphs.ts, which races a timestep as those n + 1 calls against the step graph's one
call (issue 13 asked to measure both forms).

PCoder i's graph takes what the step graph's level i reads: the new r_(i-1) from the graph
below it (the image and E_1(x) for the first), its own update weights (the `coefficients` input,
[batch, n, 4], as in the step graph) and its state r_i, p_(i+1), g_i; it returns the new r_i,
p_i (from the second PCoder up), g_i and the error e_i [batch]. The head's graph maps the top r
to logits. The numbers are the step graph's: the graphs are its own nodes, cut.

Usage: split_step_graph.py MODEL_DIR OUT_DIR; prints each graph's file, inputs and outputs.
"""
import json
import sys
from pathlib import Path

import onnx
from onnx.utils import Extractor


def main() -> None:
    model_dir, out = Path(sys.argv[1]), Path(sys.argv[2])
    manifest = json.loads((model_dir / "manifest.json").read_text())
    step = onnx.load(str(model_dir / manifest["graphs"][manifest["step"]]["file"]))
    n = len(manifest["pcoders"])
    producer = {o: node for node in step.graph.node for o in node.output}
    # errors = Concat(Unsqueeze(e_1), ..., Unsqueeze(e_n)): the per-PCoder errors are one step up.
    errors = [producer[u].input[0] for u in producer["errors"].input]
    # The extractor finds a cut's tensors among the graph's inputs and value_info: the step
    # graph's outputs that become inputs of the part above (next_r_i) must be there too.
    step.graph.value_info.extend(step.graph.output)
    extractor = Extractor(step)
    out.mkdir(parents=True, exist_ok=True)
    graphs = []
    for i in range(1, n + 1):
        below = ["image", "drive1"] if i == 1 else [f"next_r{i - 1}"]
        state = [f"r{i}", *([f"p{i + 1}"] if i < n else []), f"g{i}"]
        outputs = [f"next_r{i}", *([f"next_p{i}"] if i > 1 else []), f"next_g{i}", errors[i - 1]]
        graphs.append((f"pcoder{i}", [*below, "coefficients", *state], outputs))
    graphs.append(("head", [f"next_r{n}"], ["logits"]))
    report = []
    for name, inputs, outputs in graphs:
        part = extractor.extract_model(inputs, outputs)
        # Inputs a part does not read (the image, for a first PCoder whose predictor ignores it).
        read = {i for node in part.graph.node for i in node.input}
        kept = [v for v in part.graph.input if v.name in read]
        del part.graph.input[:]
        part.graph.input.extend(kept)
        onnx.checker.check_model(part)
        onnx.save(part, str(out / f"{name}.onnx"))
        report.append({"file": f"{name}.onnx", "inputs": [v.name for v in kept], "outputs": outputs})
    print(json.dumps(report))


if __name__ == "__main__":
    main()
