#!/usr/bin/env python3
"""Export a model directory (ONNX graphs, manifest.json, golden.json) from a config.

    /usr/bin/python3 scripts/export_model.py --config my-model.json --out build/models/my-model
    /usr/bin/python3 scripts/export_model.py --checkpoint models/fashion-pc/checkpoint.pt --out models/fashion-pc

With --config alone the backbone and predictors keep their seeded random weights (for tests
and trials; the paper's networks come from models/predify/*.toml through import_predify.py); --input-size and --num-classes shrink them for fast tests.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import torch  # noqa: E402

from predify.config import load_config, parse_config  # noqa: E402
from predify.export import export_model  # noqa: E402
from predify.model import PredifyModel, calibrate_batchnorm  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    src = ap.add_mutually_exclusive_group(required=True)
    src.add_argument("--config", help="model config (JSON); weights are seeded random")
    src.add_argument("--checkpoint", help="checkpoint written by a training script")
    ap.add_argument("--out", required=True, help="model directory to write")
    ap.add_argument("--input-size", type=int, help="override input height and width")
    ap.add_argument("--num-classes", type=int, help="override the number of classes (labels are generated)")
    ap.add_argument("--golden", type=int, default=3, help="golden reference cases (random inputs; 0: none)")
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)

    started = time.time()
    if args.checkpoint:
        model = PredifyModel.from_checkpoint(args.checkpoint)
    else:
        raw = json.loads(Path(args.config).read_text())
        if args.input_size:
            raw["input"]["height"] = raw["input"]["width"] = args.input_size
        if args.num_classes:
            raw["backbone"]["num_classes"] = args.num_classes
            raw["labels"] = {"generate": args.num_classes}
        load_config(args.config)  # validates the file as written, before any override
        model = PredifyModel(parse_config(raw, where=args.config))
        calibrate_batchnorm(model, int(raw["backbone"].get("seed", 0)))

    gen = torch.Generator().manual_seed(1234)
    golden = torch.randn(args.golden, *model.input_shape, generator=gen) if args.golden else None
    manifest = export_model(model, args.out, golden_inputs=golden)
    print(
        f"exported {manifest['name']} ({len(manifest['pcoders'])} PCoders, input {model.input_shape}) "
        f"to {args.out} in {time.time() - started:.1f}s"
    )


if __name__ == "__main__":
    main()
