"""The shipped model's backbone (fashion-cnn) for the importer and the feedback trainer:
--backbone-module models/predify/fashion_pc.py:build. Its weights are in
models/fashion-pc/checkpoint.pt (under 'backbone')."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "scripts"))

from predify.backbones import fashion_cnn  # noqa: E402


def build():
    return fashion_cnn(10)
