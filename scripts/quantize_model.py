#!/usr/bin/env python3
"""The Python half of `npm run quantize` (src/cli/quantize.ts), which runs the calibration.

    quantize_model.py instrument MODEL_DIR OUT_FILE
        writes MODEL_DIR's step graph with the tensors calibration needs added as outputs, and
        prints their names as a JSON list
    quantize_model.py write MODEL_DIR OUT_DIR RANGES_JSON [--name NAME]
        writes OUT_DIR: MODEL_DIR as an int8 variant (scripts/predify/quantize.py), its step and
        loop graphs quantised with the ranges ({"ranges": {tensor: [min, max]}, "calibration": {...}})
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path

import onnx

sys.path.insert(0, str(Path(__file__).resolve().parent))

from predify.export import add_loop_graph, io_spec, sha256  # noqa: E402
from predify.quantize import calibrated_tensors, instrument, quantize  # noqa: E402

# What the variant does not take over: the step and loop graphs are written anew; the golden
# outputs are float32's (an int8 variant is checked against its source by `npm run quantize`).
NOT_COPIED = {"step.onnx", "loop.onnx", "step.onnx.data", "golden.json", "checkpoint.pt"}


def step_of(model_dir: Path, manifest: dict) -> onnx.ModelProto:
    if "step" not in manifest:
        sys.exit(f"{model_dir} has no step graph: re-export it")
    return onnx.load(str(model_dir / manifest["graphs"][manifest["step"]]["file"]))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="command", required=True)
    ins = sub.add_parser("instrument")
    ins.add_argument("model_dir", type=Path)
    ins.add_argument("out_file", type=Path)
    wr = sub.add_parser("write")
    wr.add_argument("model_dir", type=Path)
    wr.add_argument("out_dir", type=Path)
    wr.add_argument("ranges", type=Path)
    wr.add_argument("--name", help="the variant's model name (default: <name>-int8)")
    args = ap.parse_args()

    manifest = json.loads((args.model_dir / "manifest.json").read_text())
    step = step_of(args.model_dir, manifest)
    if args.command == "instrument":
        names = calibrated_tensors(step)
        onnx.save(instrument(step, names), str(args.out_file))
        print(json.dumps(names))
        return

    if args.out_dir.resolve() == args.model_dir.resolve():
        sys.exit("the variant needs a directory of its own")
    record = json.loads(args.ranges.read_text())
    ranges = {name: (float(lo), float(hi)) for name, (lo, hi) in record["ranges"].items()}
    quantized = quantize(step, ranges)
    args.out_dir.mkdir(parents=True, exist_ok=True)
    for item in args.model_dir.iterdir():
        if item.name in NOT_COPIED or item.name == "manifest.json":
            continue
        target = args.out_dir / item.name
        if item.is_dir():
            shutil.copytree(item, target, dirs_exist_ok=True)
        else:
            shutil.copy2(item, target)
    for stale in NOT_COPIED:
        (args.out_dir / stale).unlink(missing_ok=True)
    step_path = args.out_dir / manifest["graphs"][manifest["step"]]["file"]
    onnx.save(quantized, str(step_path))
    source = manifest["name"]
    manifest["name"] = args.name or f"{source}-int8"
    manifest["description"] = f"{manifest.get('description', source)} (int8 variant of {source})"
    manifest["graphs"][manifest["step"]] = {
        "file": step_path.name,
        "sha256": sha256(step_path),
        "inputs": io_spec(quantized.graph.input),
        "outputs": io_spec(quantized.graph.output),
    }
    manifest.pop("golden", None)
    manifest.pop("loop", None)
    manifest["graphs"].pop("loop", None)
    manifest["quantization"] = {
        "source": source,
        "scheme": "static QDQ: convolutions with uint8 activations (per tensor) and int8 weights (per output channel)",
        "graphs": [manifest["step"], "loop"],
        "convolutions": sum(1 for n in quantized.graph.node if n.op_type == "Conv"),
        "calibration": record.get("calibration", {}),
    }
    add_loop_graph(args.out_dir, manifest)
    (args.out_dir / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
    print(json.dumps({"model": manifest["name"], "dir": str(args.out_dir)}))


if __name__ == "__main__":
    main()
