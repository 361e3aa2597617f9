#!/usr/bin/env python3
"""Adds the loop graph (scripts/predify/loop_graph.py) to a model directory exported before
the exporter wrote one, so that the engine can run up to ENGINE_STEPS_PER_CALL timesteps per
call. The step and loop graphs' weights then live once, in step.onnx.data.

Usage: loop_graph.py MODEL_DIR [OUT_FILE]. With OUT_FILE, writes only the loop graph there,
its weights inside it (bench/loop-vs-step.ts).
"""
import json
import sys
from pathlib import Path

import onnx

sys.path.insert(0, str(Path(__file__).resolve().parent))

from predify.export import add_loop_graph  # noqa: E402
from predify.loop_graph import loop_graph  # noqa: E402


def main() -> None:
    model_dir = Path(sys.argv[1])
    manifest_file = model_dir / "manifest.json"
    manifest = json.loads(manifest_file.read_text())
    if "step" not in manifest:
        sys.exit(f"{model_dir} has no step graph: re-export it")
    if len(sys.argv) > 2:
        step = onnx.load(str(model_dir / manifest["graphs"][manifest["step"]]["file"]))
        onnx.save(loop_graph(step), sys.argv[2])
        return
    if "loop" in manifest:
        sys.exit(f"{model_dir} has a loop graph already")
    add_loop_graph(model_dir, manifest)
    manifest_file.write_text(json.dumps(manifest, indent=2) + "\n")
    print(f"wrote {model_dir / 'loop.onnx'} and named it in {manifest_file}")


if __name__ == "__main__":
    main()
