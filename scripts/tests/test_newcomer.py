"""What a newcomer tripped on, each now one clear line: checking the goldens of a model that
has none, and a model whose classes have no names."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import import_predify

ROOT = Path(__file__).resolve().parents[2]
USER_NET = '''
from torch import nn


def build():
    return nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(1), nn.Linear(4, 7))
'''


def test_placeholder_class_names_are_said_and_check_golden_without_goldens_is_one_line(tmp_path, capsys):
    (tmp_path / "net.py").write_text(USER_NET)
    (tmp_path / "net.toml").write_text('name = "Seven"\ninput_size = [3, 16, 16]\n\n[[pcoders]]\nmodule = "1"\n')
    out = tmp_path / "seven"
    code = import_predify.main(["--config", str(tmp_path / "net.toml"), "--backbone-module", f"{tmp_path / 'net.py'}:build",
                                "--random-weights", "1", "--golden", "0", "--out", str(out)])  # fmt: skip
    assert code == 0
    captured = capsys.readouterr()
    assert "warning: the model has 7 classes and no --labels: they are named class0..class6" in captured.err
    assert "labels: placeholders class0..class6 (no --labels given)" in captured.out
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["labels"][6] == "class6" and manifest["source"]["labels"] == "placeholder"

    done = subprocess.run(["node", str(ROOT / "dist" / "cli" / "check-golden.js"), str(out)], capture_output=True, text=True, timeout=120)
    lines = done.stderr.strip().splitlines()
    assert done.returncode == 2 and len(lines) == 1, done.stderr
    assert "has no golden cases (imported with --golden 0?)" in lines[0]
