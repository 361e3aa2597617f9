"""scripts/attack.py: white-box attacks through the dynamics, scored by the serving engine.

What is pinned here, on the shipped model with a few images and a few steps:
- a targeted BIM at a large epsilon lowers the accuracy at t = 0 against the clean images, and
  the 8-bit images stay within epsilon of the clean ones;
- the engine (npm run eval:adversarial) and the PyTorch form that made the images agree on them
  within the golden tolerance, and the engine's accuracy is the PyTorch form's;
- --through 0 is the attack on the feedforward network alone (the backbone as one module);
- the imported form of the same network (the importer's options) is accepted, a wrong one is
  refused by the golden check;
- every bad input is one line and exit 2 before any work, with no run directory left.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import attack
from predify.adversarial import Coefficients, UnrolledDynamics, linf_attack
from predify.checkpoints import package_state_dict
from predify.model import PredifyModel

ROOT = Path(__file__).resolve().parents[2]
SHIPPED = ROOT / "models" / "fashion-pc"
# validation images (Fashion-MNIST train 50000..), never the test set's final part
FEW = ["--images", "fashion-mnist:train:50000-50999", "--per-class", "1", "--count", "6", "--batch", "6"]


def run(argv) -> int:
    return attack.main([str(a) for a in argv])


@pytest.fixture(scope="module")
def bim_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("attack") / "run"
    code = run([SHIPPED, *FEW, "--epsilon", "0.15", "--steps", "5", "--through", "0,2", "--timesteps", "3", "--keep-logits", "--out", out])
    assert code == 0
    return out


def test_bim_at_a_large_epsilon_lowers_accuracy_at_t0(bim_run):
    record = json.loads((bim_run / "attack.json").read_text())
    assert record["goldenCheck"]["maxLogitScaledDiff"] <= 1e-4
    assert record["images"]["attacked"] == 6 and record["clean"]["pytorch"]["accuracy"][0] == 1.0
    assert record["targets"] == [(im["label"] + 8) % 10 for im in record["images"]["list"]]
    for a in record["attacks"]:
        assert a["pytorch"]["eightBit"]["accuracy"][0] < 1.0, a["folder"]
        assert a["largestPerturbation"]["eightBit"] <= 0.15 + 1e-6
        for file, im in zip(a["files"], record["images"]["list"]):
            adv = np.asarray(Image.open(bim_run / file), dtype=np.int16)
            clean = np.asarray(Image.open(bim_run / im["file"]), dtype=np.int16)
            assert adv.shape == (28, 28) and np.abs(adv - clean).max() <= int(0.15 * 255)


def test_the_engine_scores_the_images_as_the_pytorch_form_does(bim_run, tmp_path):
    done = subprocess.run(
        ["node", str(ROOT / "dist/cli/adversarial.js"), str(bim_run), "--out", str(tmp_path / "scored")],
        capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert done.returncode == 0, (done.stdout + done.stderr)[-3000:]
    results = json.loads((tmp_path / "scored" / "results.json").read_text())
    arm = results["arms"][0]
    assert arm["pytorchAgreement"]["maxLogitScaledDiff"] <= 1e-4
    record = json.loads((bim_run / "attack.json").read_text())
    for scored, made in zip(arm["attacks"], record["attacks"]):
        ours = [round(v / 100, 4) for v in (e["value"] for e in scored["accuracy"])]
        assert ours == pytest.approx(made["pytorch"]["eightBit"]["accuracy"], abs=1e-4)
        assert scored["accuracy"][0]["value"] < arm["clean"]["accuracy"][0]["value"]
    assert (tmp_path / "scored" / "bim-through-0.png").exists()


def test_through_0_is_the_attack_on_the_backbone_alone():
    model = PredifyModel.from_checkpoint(SHIPPED / "checkpoint.pt")
    manifest = json.loads((SHIPPED / "manifest.json").read_text())
    coefficients = [Coefficients(0.4, 0.4, 0.01, pc["gradientScale"]["scale"]) for pc in manifest["pcoders"]]
    dynamics = UnrolledDynamics(model, coefficients, [0.286], [0.353])
    gen = torch.Generator().manual_seed(0)
    x = torch.rand(4, 1, 28, 28, generator=gen)
    y = torch.tensor([0, 3, 5, 9])
    ce = torch.nn.CrossEntropyLoss(reduction="none")
    through0 = linf_attack(lambda a: ce(dynamics(dynamics.normalise(a), 0)[-1], y), x, 0.1, 5, 0.025, True, torch.Generator().manual_seed(7))
    backbone = linf_attack(lambda a: ce(model.backbone(dynamics.normalise(a)), y), x, 0.1, 5, 0.025, True, torch.Generator().manual_seed(7))
    assert torch.equal(through0, backbone)
    deeper = linf_attack(lambda a: ce(dynamics(dynamics.normalise(a), 3)[-1], y), x, 0.1, 5, 0.025, True, torch.Generator().manual_seed(7))
    assert not torch.equal(through0, deeper)


def test_the_importers_options_rebuild_the_form_and_a_wrong_one_is_refused(tmp_path, capsys):
    plain = tmp_path / "model"
    shutil.copytree(SHIPPED, plain, ignore=shutil.ignore_patterns("checkpoint.pt", "config.json", "samples"))
    source = ["--config", ROOT / "models/predify/fashion-pc.toml", "--backbone-module", f"{ROOT / 'models/predify/fashion_pc.py'}:build"]
    # The shipped network in the Predify package's layout, as an imported model's source is.
    model = PredifyModel.from_checkpoint(SHIPPED / "checkpoint.pt")
    manifest = json.loads((SHIPPED / "manifest.json").read_text())
    sets = [pc["hyperparameters"] for pc in manifest["pcoders"]]
    c_sqrt = [pc["gradientScale"]["influence"] ** 0.5 for pc in manifest["pcoders"]]
    torch.save(package_state_dict(model.backbone, list(model.predictors), sets, True, c_sqrt), tmp_path / "pnet.pth")
    args = [plain, *FEW, "--count", "2", "--epsilon", "0.1", "--steps", "1", "--timesteps", "1"]
    assert run([*args, *source, "--weights", tmp_path / "pnet.pth", "--out", tmp_path / "ok"]) == 0
    assert json.loads((tmp_path / "ok" / "attack.json").read_text())["goldenCheck"]["maxLogitScaledDiff"] <= 1e-4
    capsys.readouterr()
    assert run([*args, *source, "--random-weights", "3", "--out", tmp_path / "wrong"]) == 2
    line = capsys.readouterr().err.strip()
    assert line.startswith("attack: the PyTorch form differs from the served graphs") and "\n" not in line
    assert not (tmp_path / "wrong").exists()


def refused(argv, capsys) -> str:
    capsys.readouterr()
    assert run(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0, err
    return err


@pytest.mark.parametrize("eps", ["0", "1.5", "-0.1"])
def test_an_epsilon_outside_0_1_is_refused(tmp_path, capsys, eps):
    line = refused([SHIPPED, *FEW, "--epsilon", f"0.1,{eps}", "--out", tmp_path / "run"], capsys)
    assert f"--epsilon {float(eps):g}" in line and "(0, 1]" in line
    assert not (tmp_path / "run").exists()


def test_a_model_without_a_pytorch_source_is_refused(tmp_path, capsys):
    bare = tmp_path / "model"
    shutil.copytree(SHIPPED, bare, ignore=shutil.ignore_patterns("checkpoint.pt", "samples"))
    line = refused([bare, *FEW, "--epsilon", "0.1", "--out", tmp_path / "run"], capsys)
    assert "no PyTorch source" in line and "--config" in line
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("classes,words", [(1, "at least 2 classes"), (2, "--target-offset")])
def test_a_target_rule_without_another_class_is_refused(tmp_path, capsys, classes, words):
    model = tmp_path / "model"
    shutil.copytree(SHIPPED, model, ignore=shutil.ignore_patterns("samples"))
    manifest = json.loads((model / "manifest.json").read_text())
    manifest["labels"] = manifest["labels"][:classes]
    (model / "manifest.json").write_text(json.dumps(manifest))
    line = refused([model, *FEW, "--epsilon", "0.1", "--out", tmp_path / "run"], capsys)
    assert words in line
    assert not (tmp_path / "run").exists()


def test_an_imported_network_is_attacked_from_the_importers_options(tmp_path):
    # A ResNet-18 brought as the Predify package's state dict (seeded random weights), imported at
    # 32 px: attack.py rebuilds it from the importer's options, and the engine scores its images.
    common = ["--config", ROOT / "models/predify/presnet18.toml", "--backbone", "resnet18", "--input-size", "32"]
    fixtures = [str(a) for a in ["/usr/bin/python3", ROOT / "scripts/tests/predify_fixtures.py", *common, "--layout", "package", "--out", tmp_path / "fx"]]
    subprocess.run(fixtures, check=True, capture_output=True)
    weights = ["--weights", tmp_path / "fx" / "pnet.pth"]
    imported = [str(a) for a in ["/usr/bin/python3", ROOT / "scripts/import_predify.py", *common, *weights, "--name", "presnet18", "--out", tmp_path / "model"]]
    subprocess.run(imported, check=True, capture_output=True)
    images = tmp_path / "images"
    rng = np.random.default_rng(0)
    # ImageNet's layout: folders named by synset, mapped to class indices by a class map.
    for k in range(3):
        (images / f"n0{k}").mkdir(parents=True)
        Image.fromarray(rng.integers(0, 256, (40, 48, 3), dtype=np.uint8)).save(images / f"n0{k}" / f"{k}.png")
    (tmp_path / "classes.csv").write_text("folder,label\nn00,7\nn01,class3\nn02,0\n")
    out = tmp_path / "run"
    code = run([tmp_path / "model", *common, *weights, "--images", images, "--class-map", tmp_path / "classes.csv", "--keep-misclassified", "--epsilon", "0.05",
                "--steps", "2", "--through", "0,1", "--timesteps", "2", "--keep-logits", "--out", out])  # fmt: skip
    assert code == 0
    record = json.loads((out / "attack.json").read_text())
    assert record["images"]["attacked"] == 3 and record["goldenCheck"]["maxLogitScaledDiff"] <= 1e-4
    assert sorted(im["label"] for im in record["images"]["list"]) == [0, 3, 7]
    done = subprocess.run(
        ["node", str(ROOT / "dist/cli/adversarial.js"), str(out), "--out", str(tmp_path / "scored")],
        capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert done.returncode == 0, (done.stdout + done.stderr)[-3000:]
    arm = json.loads((tmp_path / "scored" / "results.json").read_text())["arms"][0]
    assert arm["pytorchAgreement"]["maxLogitScaledDiff"] <= 1e-4
