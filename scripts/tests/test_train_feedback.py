"""scripts/train_feedback.py: the paper's unsupervised feedback training of any CNN.

What is pinned here:
- on the shipped backbone, a short run lowers every PCoder's held-out reconstruction loss well
  below its value at initialisation, and the result serves (the engine matches its goldens);
- the same on a torchvision ResNet-18 at 32 px with images from a folder, decoded by the
  service's own decoder;
- the backbone comes out bit-identical; --resume reaches exactly the uninterrupted run's
  weights; two gloo processes under torchrun reach one process's weights (same global batch);
- the package-layout checkpoint holds what the package's network has, and the importer reads it;
- each bad input is one line, exit 2, before training, with no model directory left.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

import train_feedback
from predify.checkpoints import PackageCheckpoint

ROOT = Path(__file__).resolve().parents[2]
CHECK_GOLDEN = ROOT / "dist" / "cli" / "check-golden.js"
SHIPPED = [
    "--config", str(ROOT / "models/predify/fashion-pc.toml"),
    "--backbone-module", str(ROOT / "models/predify/fashion_pc.py") + ":build",
    "--weights", str(ROOT / "models/fashion-pc/checkpoint.pt"),
    "--mean", "0.286", "--std", "0.353", "--resize", "contain",
    "--labels", str(ROOT / "models/predify/fashion-labels.txt"),
    "--threads", "2",
]  # fmt: skip


def run(argv: list[str]) -> int:
    return train_feedback.main([str(a) for a in argv])


def pmodules(path: Path) -> dict[str, torch.Tensor]:
    return {k: v for k, v in torch.load(path).items() if ".pmodule." in k}


def check_golden(model_dir: Path) -> dict:
    done = subprocess.run(["node", str(CHECK_GOLDEN), str(model_dir)], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    return json.loads(done.stdout)


@pytest.fixture(scope="module")
def shipped_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("shipped") / "run"
    code = run([*SHIPPED, "--images", "fashion-mnist:train:0-2999", "--epochs", "2", "--name", "fashion-pc-reconstruct", "--out", out])
    assert code == 0
    return out


def test_the_shipped_backbones_feedback_learns_to_reconstruct(shipped_run):
    record = json.loads((shipped_run / "training.json").read_text())
    initial, final = record["validationLoss"]["initial"], record["validationLoss"]["final"]
    assert len(initial) == len(final) == 3
    # Two epochs on 2850 images: measured 0.01x, 0.46x and 0.52x of the loss at
    # initialisation. Well below means at most 0.7x at every PCoder.
    for i, (a, b) in enumerate(zip(initial, final), 1):
        assert b < 0.7 * a, f"pcoder{i}: {a} -> {b}"
    assert record["feedbackObjective"] == "reconstruct"
    assert record["trainImages"] + record["validationImages"] == 3000
    assert record["validationImages"] == 150
    assert [e["epoch"] for e in record["history"]] == [0, 1, 2]
    assert all(len(e["train"]) == 3 for e in record["history"][1:])
    assert (shipped_run / "training.png").stat().st_size > 10_000
    manifest = json.loads((shipped_run / "model" / "manifest.json").read_text())
    assert manifest["name"] == "fashion-pc-reconstruct"
    assert manifest["training"]["feedbackObjective"] == "reconstruct"
    assert manifest["training"]["images"]["digest"] == record["images"]["digest"]
    assert manifest["labels"][9] == "Ankle boot"


def test_the_trained_model_serves_as_its_goldens_say(shipped_run):
    report = check_golden(shipped_run / "model")
    assert report["cases"] == 2 and report["maxLogitScaledDiff"] < 1e-4


def test_the_backbone_is_untouched_and_the_checkpoint_is_the_packages_layout(shipped_run):
    state = torch.load(shipped_run / "checkpoint.pth")
    original = torch.load(ROOT / "models/fashion-pc/checkpoint.pt")["backbone"]
    backbone = {k[len("backbone."):]: v for k, v in state.items() if k.startswith("backbone.")}
    assert backbone.keys() == original.keys()
    for k, v in original.items():  # parameters and batch-norm buffers, bit for bit
        assert torch.equal(backbone[k], v), k
    parsed = PackageCheckpoint(state, 3)  # refuses any key the package's network does not have
    assert all(parsed.predictors) and all(c is not None and c > 0 for c in parsed.c_sqrt)
    # Shared hyperparameters: the buffers and the auxiliary parameters the package registers.
    assert {k for k in state if not k.startswith(("backbone.", "pcoder"))} == {"ffm", "fbm", "erm", "ff_part", "fb_part", "mem_part", "errorm"}
    assert float(state["ffm"]) == pytest.approx(0.8) and float(state["mem_part"]) == pytest.approx(0.1)


def test_a_resnet18_from_a_folder_of_images(tmp_path):
    from PIL import Image

    images = tmp_path / "images"
    rng = np.random.default_rng(0)
    for k in range(120):
        folder = images / ("cats" if k % 2 else "dogs")
        folder.mkdir(parents=True, exist_ok=True)
        # Smooth images of other sizes than the model's: resized by the service's decoder.
        base = rng.random((6, 5, 3))
        pixels = (np.kron(base, np.ones((8, 8, 1))) * 255).astype(np.uint8)
        Image.fromarray(pixels).save(folder / f"{k:03d}.{'png' if k % 3 else 'jpg'}")
    (images / "notes.txt").write_text("not an image")
    out = tmp_path / "run"
    code = run(["--config", ROOT / "models/predify/presnet18.toml", "--backbone", "resnet18", "--random-backbone", "1", "--input-size", "32",
                "--images", images, "--epochs", "3", "--batch-size", "16", "--optimizer", "adam", "--threads", "2", "--out", out])  # fmt: skip
    assert code == 0
    index = json.loads((out / "pixels" / "index.json").read_text())
    assert index["count"] == 120 and index["ignored"] == 1 and index["geometry"]["height"] == 32
    record = json.loads((out / "training.json").read_text())
    initial, final = record["validationLoss"]["initial"], record["validationLoss"]["final"]
    assert len(final) == 4 and all(b < a for a, b in zip(initial, final)), (initial, final)
    check_golden(out / "model")


def test_resume_reaches_the_uninterrupted_runs_weights(tmp_path, capsys):
    base = [*SHIPPED, "--images", "fashion-mnist:train:0-639", "--batch-size", "64", "--golden", "0", "--objective", "denoise"]
    assert run([*base, "--epochs", "2", "--out", tmp_path / "whole"]) == 0
    assert run([*base, "--epochs", "1", "--out", tmp_path / "cut"]) == 0
    assert run([*base, "--epochs", "2", "--out", tmp_path / "cut", "--resume"]) == 0
    assert "resuming after epoch 1 of 2" in capsys.readouterr().out
    whole, cut = pmodules(tmp_path / "whole/checkpoint.pth"), pmodules(tmp_path / "cut/checkpoint.pth")
    assert whole.keys() == cut.keys() and all(torch.equal(whole[k], cut[k]) for k in whole)
    # A resume against another configuration names what differs.
    assert run([*base, "--epochs", "3", "--lr", "0.01", "--out", tmp_path / "cut", "--resume"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--resume: this run's optimizer is ['rmsprop', 0.01," in err[0]
    assert run([*base, "--epochs", "3", "--out", tmp_path / "cut", "--resume", "--seed", "4"]) == 2
    assert "seed is 4, the saved run's 0" in capsys.readouterr().err


def test_two_gloo_processes_under_torchrun_equal_one(tmp_path):
    base = [*SHIPPED, "--images", "fashion-mnist:train:0-767", "--epochs", "1", "--golden", "0"]
    base = [str(a) for a in base]
    base[base.index("--threads") + 1] = "1"  # one thread per process, two processes
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    one = subprocess.run([sys.executable, str(ROOT / "scripts/train_feedback.py"), *base, "--batch-size", "64", "--out", str(tmp_path / "one")],
                         capture_output=True, text=True, env=env, timeout=600)  # fmt: skip
    assert one.returncode == 0, one.stderr[-2000:]
    # --redirects/--tee: Debian's torchrun (torch 1.13 on Python 3.11) cannot parse their default "0".
    two = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--redirects", "1", "--tee", "1",
                          str(ROOT / "scripts/train_feedback.py"), *base, "--batch-size", "32", "--out", str(tmp_path / "two")],
                         capture_output=True, text=True, env=env, timeout=600)  # fmt: skip
    assert two.returncode == 0, (two.stdout + two.stderr)[-3000:]
    assert "global batch 64 = 32 x 2 processes" in two.stdout
    a, b = pmodules(tmp_path / "one/checkpoint.pth"), pmodules(tmp_path / "two/checkpoint.pth")
    assert a.keys() == b.keys()
    # The gradient mean of two halves vs of the whole: equal up to float rounding (8e-7 seen).
    assert max(float((a[k] - b[k]).abs().max()) for k in a) < 1e-5
    t1, t2 = json.loads((tmp_path / "one/training.json").read_text()), json.loads((tmp_path / "two/training.json").read_text())
    assert t2["processes"] == 2 and t1["globalBatch"] == t2["globalBatch"] == 64
    assert (tmp_path / "two" / "model" / "manifest.json").exists()


def refused(argv, capsys) -> str:
    code = run(argv)
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1, err
    return err[0]


def test_bad_input_is_one_line_before_training_and_leaves_no_model(tmp_path, capsys):
    out = tmp_path / "run"
    empty = tmp_path / "empty"
    empty.mkdir()
    assert "no images" in refused([*SHIPPED, "--images", empty, "--out", out], capsys)
    assert "fewer than one global batch of 64" in refused([*SHIPPED, "--images", "fashion-mnist:train:0-49", "--out", out], capsys)
    bad_place = tmp_path / "bad.toml"
    bad_place.write_text((ROOT / "models/predify/fashion-pc.toml").read_text().replace('module = "relu2"', 'module = "relu9"'))
    line = refused([*SHIPPED[:1], bad_place, *SHIPPED[2:], "--images", "fashion-mnist:train:0-999", "--out", out], capsys)
    assert "relu9" in line
    # An undecodable image stops the run naming it; --skip-unreadable counts and lists it.
    images = tmp_path / "images"
    images.mkdir()
    from PIL import Image

    for k in range(70):
        Image.fromarray(np.full((28, 28), k, np.uint8)).save(images / f"{k:02d}.png")
    (images / "broken.jpg").write_bytes(b"\xff\xd8 not really a jpeg")
    line = refused([*SHIPPED, "--images", images, "--batch-size", "16", "--out", out], capsys)
    assert "broken.jpg: cannot be decoded" in line and "--skip-unreadable" in line
    assert not (out / "model").exists() and not (out / "checkpoint.pth").exists()
    assert run([*SHIPPED, "--images", images, "--skip-unreadable", "--batch-size", "16", "--epochs", "1", "--golden", "0", "--out", out]) == 0
    assert "1 unreadable, left out: broken.jpg" in capsys.readouterr().out
    manifest = json.loads((out / "model" / "manifest.json").read_text())
    assert [u["file"] for u in manifest["training"]["images"]["unreadable"]] == ["broken.jpg"]


def test_cuda_out_of_memory_suggests_a_smaller_batch(tmp_path, capsys, monkeypatch):
    def oom(*_args, **_kwargs):
        raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")

    monkeypatch.setattr(train_feedback, "train", oom)
    line = refused([*SHIPPED, "--images", "fashion-mnist:train:0-999", "--batch-size", "512", "--out", tmp_path / "run"], capsys)
    assert "out of memory at --batch-size 512" in line and "smaller" in line
    assert not (tmp_path / "run" / "model").exists()


def test_the_trained_model_is_studied_by_npm_run_eval(shipped_run, tmp_path):
    done = subprocess.run(
        ["node", str(ROOT / "dist/cli/eval.js"), "--model", str(shipped_run / "model"), "--corruptions", "gaussian_noise",
         "--severities", "3", "--timesteps", "2", "--per-class", "3", "--clean-per-class", "3", "--out", str(tmp_path / "study")],
        capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert done.returncode == 0, (done.stdout + done.stderr)[-3000:]
    results = json.loads((tmp_path / "study" / "results.json").read_text())
    assert results["model"] == "fashion-pc-reconstruct" and results["timesteps"] == 2
    assert len(results["clean"]["accuracy"]) == 3


def test_epochs_0_makes_the_untrained_control_that_eval_controls_runs(shipped_run, tmp_path):
    # The untrained-feedback control: the same backbone, the PCoders as --seed initialises them.
    out = tmp_path / "untrained"
    assert run([*SHIPPED, "--images", "fashion-mnist:train:0-499", "--epochs", "0", "--seed", "3", "--golden", "1", "--out", out]) == 0
    record = json.loads((out / "training.json").read_text())
    assert [e["epoch"] for e in record["history"]] == [0]
    trained = json.loads((shipped_run / "model" / "manifest.json").read_text())["graphs"]
    untrained = json.loads((out / "model" / "manifest.json").read_text())["graphs"]
    for name in ("encoder1", "encoder2", "encoder3", "head"):
        assert untrained[name]["sha256"] == trained[name]["sha256"], name
    assert untrained["feedback1"]["sha256"] != trained["feedback1"]["sha256"]
    check_golden(out / "model")
    study = tmp_path / "study"
    done = subprocess.run(
        ["node", str(ROOT / "dist/cli/eval.js"), "--model", str(shipped_run / "model"), "--corruptions", "gaussian_noise",
         "--severities", "4", "--timesteps", "3", "--per-class", "3", "--clean-per-class", "3",
         "--controls", "--untrained-feedback", str(out / "model"), "--out", str(study)],
        capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert done.returncode == 0, (done.stdout + done.stderr)[-3000:]
    results = json.loads((study / "results.json").read_text())
    controls = results["controls"]
    assert list(controls) == ["untrained-feedback", "no-feedback-term", "no-error-gradient"]
    control = controls["untrained-feedback"]
    # t = 0 is the backbone alone in both; the feedback acts from t = 1 on
    assert control["clean"]["accuracy"][0] == results["clean"]["accuracy"][0]
    assert control["modelAgainstControl"]["corruptedMean"][0]["change"] == 0
    assert control["clean"]["accuracy"][1:] != results["clean"]["accuracy"][1:] or control["corruptedMean"][1:] != results["corruptedMean"][1:]
    assert "## Controls" in (study / "results.md").read_text()
