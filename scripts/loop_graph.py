#!/usr/bin/env python3
"""Adds the loop graph (scripts/predify/loop_graph.py) to a model directory exported before
the exporter wrote one, so that the engine can run up to ENGINE_STEPS_PER_CALL timesteps per
call. The step and loop graphs' weights then live once, in step.onnx.data.

Usage: loop_graph.py [--replace] MODEL_DIR [OUT_FILE]. With OUT_FILE, writes only the loop
graph there, its weights inside it (bench/loop-vs-step.ts). --replace writes the loop graph of
a model that has one again, in this version's layout (models exported before 2026-12-03 held
their classifier's weights twice when served, docs/model-repository.md); the numbers it
computes do not change, so neither does the model's version.
"""
import json
import sys
from pathlib import Path

import onnx

sys.path.insert(0, str(Path(__file__).resolve().parent))

from predify.export import add_loop_graph  # noqa: E402
from predify.loop_graph import loop_graph  # noqa: E402


def main() -> None:
    args = sys.argv[1:]
    replace = "--replace" in args
    args = [a for a in args if a != "--replace"]
    model_dir = Path(args[0])
    manifest_file = model_dir / "manifest.json"
    manifest = json.loads(manifest_file.read_text())
    if "step" not in manifest:
        sys.exit(f"{model_dir} has no step graph: re-export it")
    if len(args) > 1:
        step = onnx.load(str(model_dir / manifest["graphs"][manifest["step"]]["file"]))
        onnx.save(loop_graph(step), args[1])
        return
    if "loop" in manifest and not replace:
        sys.exit(f"{model_dir} has a loop graph already (--replace writes it again)")
    add_loop_graph(model_dir, manifest)
    manifest_file.write_text(json.dumps(manifest, indent=2) + "\n")
    print(f"wrote {model_dir / 'loop.onnx'} and named it in {manifest_file}")


if __name__ == "__main__":
    main()
