"""Predify any CNN: where a PCoder may sit, and that cutting a network there keeps the package's
semantics.

Each network is imported with seeded random weights, and the dynamics of its cut form (encoder
blocks and head, run by model.reference_dynamics) are held to package_reference.py, which runs
the whole backbone with forward hooks as the Predify package does, for t = 0..5. The exported
ONNX graphs of ResNet-18, MobileNetV3-Small, ConvNeXt-Tiny and DenseNet-121 are held to the same
reference by the engine (test/engine/paper-models.test.ts).
"""

import os
import stat
import sys
from pathlib import Path

import pytest
import torch

import import_predify
from predify.model import reference_dynamics
from predify.tracing import CutError, TracedBackbone

ROOT = Path(__file__).resolve().parents[2]
PREDIFY = ROOT / "test" / "fixtures" / "predify"
PRESNET = ROOT / "models" / "predify" / "presnet18.toml"


def toml(tmp_path, modules, name="Trial", gradient_scaling=True, predictors=None):
    lines = [f'name = "{name}"', "input_size = [3, 224, 224]", f"gradient_scaling = {str(gradient_scaling).lower()}"]
    for i, module in enumerate(modules):
        lines += ["[[pcoders]]", f'module = "{module}"', "hyperparameters = { feedforward = 0.4, feedback = 0.2, pc = 0.05 }"]
        if predictors and predictors[i]:
            lines.append(f'predictor = "{predictors[i]}"')
    path = tmp_path / f"{name}.toml"
    path.write_text("\n".join(lines) + "\n")
    return path


def build(config, *backbone, size=32):
    args = import_predify.parse_args(["--config", str(config), *backbone, "--random-weights", "5", "--input-size", str(size), "--out", "unused"])
    return import_predify.build_network(args)


def assert_same_dynamics(model, reference, size):
    x = torch.randn(1, 3, size, size, generator=torch.Generator().manual_seed(11))
    ours = reference_dynamics(model, x, 5)
    package = reference.run(x, 5)
    logits, theirs = torch.tensor(ours["logits"]), torch.tensor(package["logits"])
    scale = max(1.0, float(theirs.abs().max()))
    assert float((logits - theirs).abs().max()) / scale <= 1e-4
    errors, their_errors = torch.tensor(ours["errors"]), torch.tensor(package["errors"])
    assert float(((errors - their_errors).abs() / their_errors.abs().clamp_min(1e-12)).max()) <= 1e-4
    # The dynamics did something: later timesteps differ from the feedforward pass.
    assert float((theirs[5] - theirs[0]).abs().max()) > 1e-6


NETWORKS = [
    ("resnet18", ["layer1", "layer2", "layer3", "layer4"], 32),
    # Residual blocks as places, one inside a stage.
    ("resnet18", ["maxpool", "layer1[0]", "layer2[1]"], 32),
    ("mobilenet_v3_small", ["features[0]", "features[1]", "features[3]", "features[8]", "features[12]"], 32),
    ("convnext_tiny", ["features[1]", "features[3]", "features[5]", "features[7]"], 32),
    ("densenet121", ["features.denseblock1", "features.transition1", "features.transition2", "features.denseblock4"], 32),
    # ShuffleNet's channel shuffle unpacks x.size(), which torch.fx cannot follow: its blocks are
    # kept whole, and PCoders sit at their outputs.
    ("shufflenet_v2_x0_5", ["stage2[1]", "stage3", "conv5"], 64),
    ("regnet_y_400mf", ["stem", "trunk_output.block1", "trunk_output.block2", "trunk_output.block3"], 32),
    ("googlenet", ["maxpool2", "inception3b", "inception4e"], 64),
]


@pytest.mark.parametrize("arch, modules, size", NETWORKS, ids=[f"{a}@{','.join(m)}" for a, m, _ in NETWORKS])
def test_cut_network_keeps_the_packages_semantics(tmp_path, arch, modules, size):
    model, reference, source = build(toml(tmp_path, modules), "--backbone", arch, size=size)
    assert source["modules"] == modules
    assert_same_dynamics(model, reference, size)


def test_at_a_residual_stage_the_hook_replaces_the_stages_output(tmp_path):
    """What package_reference.py does at layer1 of a ResNet: the stage runs as it is (its
    residual additions on feedforward values), then the hook replaces its output, and layer2
    (and so the rest of the network) runs on the PCoder's representation."""
    model, reference, _ = build(toml(tmp_path, ["layer1"]), "--backbone", "resnet18")
    backbone = reference.backbone
    stage_out, next_in = [], []
    # Registered before the reference's hooks, so it sees the stage's own output.
    handles = [
        backbone.layer1.register_forward_hook(lambda m, i, o: stage_out.append(o.clone())),
        backbone.layer2.register_forward_pre_hook(lambda m, i: next_in.append(i[0].clone())),
    ]
    x = torch.randn(1, 3, 32, 32, generator=torch.Generator().manual_seed(2))
    try:
        run = reference.run(x, 3)
    finally:
        for h in handles:
            h.remove()
    assert len(stage_out) == len(next_in) == 4
    # t = 0: the representation is the feedforward output.
    assert torch.equal(stage_out[0], next_in[0])
    for t in range(1, 4):
        # The stage's output is its feedforward drive on the same image: the same every pass.
        assert torch.allclose(stage_out[t], stage_out[0])
        # What layer2 receives is the PCoder's update of it, not the stage's output ...
        assert float((next_in[t] - stage_out[t]).abs().max()) > 1e-4
        # ... and the rest of the network runs on it: layer2 .. fc on that input give the logits.
        # (The reference's hooks are gone by now: these are the plain modules.)
        with torch.no_grad():
            h = backbone.layer2(next_in[t])
            h = backbone.fc(torch.flatten(backbone.avgpool(backbone.layer4(backbone.layer3(h))), 1))
        assert torch.allclose(h[0], torch.tensor(run["logits"][t]), atol=1e-5)
    # Our encoder block 1 ends at layer1's output, as the hook sees it.
    with torch.no_grad():
        assert torch.allclose(model.blocks[0](x), stage_out[0])


USER_NETWORK = '''
import torch
from torch import nn


class Residual(nn.Module):
    def __init__(self, channels):
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(channels, channels, 3, padding=1), nn.BatchNorm2d(channels), nn.ReLU())

    def forward(self, x):
        return torch.relu(x + self.body(x))


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, 16, 3, stride=2, padding=1), nn.ReLU())
        self.stage1 = Residual(16)
        self.down = nn.Conv2d(16, 32, 3, stride=2, padding=1)
        self.stage2 = nn.Sequential(Residual(32), Residual(32))
        self.fc = nn.Linear(32, 7)

    def forward(self, x):
        x = self.stage2(self.down(self.stage1(self.stem(x))))
        return self.fc(x.mean(dim=(2, 3)))


def build():
    return Net()
'''


def test_the_users_own_network(tmp_path, capsys):
    file = tmp_path / "mynet.py"
    file.write_text(USER_NETWORK)
    config = toml(tmp_path, ["stem", "stage1", "stage2[0]", "stage2"], name="Mine")
    model, reference, source = build(config, "--backbone-module", f"{file}:build")
    assert source["backbone"] == "mynet.py:build"
    assert len(source["backboneOrigin"]["sha256"]) == 64
    assert_same_dynamics(model, reference, 32)
    # Imported as a model directory with 7 classes named class0..class6.
    out = tmp_path / "model"
    code = import_predify.main(["--config", str(config), "--backbone-module", f"{file}:build", "--random-weights", "1", "--input-size", "32", "--golden", "0", "--out", str(out)])
    assert code == 0, capsys.readouterr().err
    manifest = __import__("json").loads((out / "manifest.json").read_text())
    assert manifest["labels"] == [f"class{k}" for k in range(7)]
    # Inside a residual block is refused, with the places around it.
    bad = toml(tmp_path, ["stem", "stage1.body[0]"], name="Bad")
    code = import_predify.main(["--config", str(bad), "--backbone-module", f"{file}:build", "--random-weights", "1", "--input-size", "32", "--out", str(tmp_path / "bad")])
    err = capsys.readouterr().err.strip()
    assert code == 2
    assert "PCoder 2: module 'stage1.body[0]' is not on the main path" in err
    assert err.endswith("the nearest places that work are stem[1] and stage1")


@pytest.mark.parametrize(
    "spec, message",
    [
        ("mynet.py", "write FILE.py:FACTORY"),
        ("missing.py:build", "missing.py: no such file"),
        ("mynet.py:nope", "has no function nope"),
        ("mynet.py:broken", "broken() failed: RuntimeError: no weights here"),
        ("mynet.py:not_a_module", "returned int, not a torch.nn.Module"),
    ],
)
def test_users_module_refusals(tmp_path, capsys, spec, message):
    (tmp_path / "mynet.py").write_text(USER_NETWORK + "\ndef broken():\n    raise RuntimeError('no weights here')\n\n\ndef not_a_module():\n    return 3\n")
    config = toml(tmp_path, ["stem"])
    os.chdir(tmp_path)
    code = import_predify.main(["--config", str(config), "--backbone-module", spec, "--random-weights", "1", "--out", str(tmp_path / "m")])
    err = capsys.readouterr().err.strip()
    assert code == 2 and message in err and len(err.splitlines()) == 1
    assert not (tmp_path / "m").exists()


PLACE_REFUSALS = [
    (
        "resnet18",
        "layer3[1].conv1",
        "PCoder 1: module 'layer3[1].conv1' is not on the main path: values computed before its output are used after it "
        "(a residual or parallel branch), so replacing its output would not change them; the nearest places that work are layer3[0] and layer3[1]",
    ),
    ("resnet18", "layer2[0].relu", "PCoder 1: module 'layer2[0].relu' is called 2 times in one forward pass"),
    ("resnet18", "layer9", "PCoder 1: module 'layer9' is not in the resnet18 backbone"),
    ("resnet18", "fc", "PCoder 1: module 'fc' gives the logits"),
    ("resnet18", "layer1[0", "'layer1[0' is not a module path"),
    # DenseNet's forward applies F.relu(..., inplace=True) to its features' output.
    ("densenet121", "features", "PCoder 1: module 'features''s output is changed in place afterwards (relu)"),
    ("mobilenet_v3_small", "classifier[0]", "module 'classifier[0]' gives (1, 1024); a PCoder needs a 4-D (N, C, H, W) representation"),
    ("shufflenet_v2_x0_5", "stage2[1].branch2", "is inside stage2[1], whose forward torch.fx cannot trace; a PCoder can sit at stage2[1]'s output"),
    ("vit_b_16", "encoder", "torch.fx cannot trace the vit_b_16 backbone's own forward pass"),
]


@pytest.mark.parametrize("arch, module, message", PLACE_REFUSALS, ids=[f"{a}:{m}" for a, m, _ in PLACE_REFUSALS])
def test_places_that_do_not_work_are_refused_with_the_reason(tmp_path, capsys, arch, module, message):
    config = toml(tmp_path, [module])
    size = "224" if arch == "vit_b_16" else "64"
    code = import_predify.main(["--config", str(config), "--backbone", arch, "--random-weights", "1", "--input-size", size, "--out", str(tmp_path / "m")])
    err = capsys.readouterr().err.strip()
    assert code == 2
    assert message in err
    assert len(err.splitlines()) == 1
    assert not (tmp_path / "m").exists()


def test_two_pcoders_at_one_place_and_out_of_order(tmp_path, capsys):
    config = toml(tmp_path, ["layer1", "layer1[1]"])
    code = import_predify.main(["--config", str(config), "--backbone", "resnet18", "--random-weights", "1", "--out", str(tmp_path / "m")])
    assert code == 2 and "PCoders 1 and 2 sit at the same place (layer1 and layer1[1] give the same output)" in capsys.readouterr().err
    config = toml(tmp_path, ["layer2", "layer1"])
    code = import_predify.main(["--config", str(config), "--backbone", "resnet18", "--random-weights", "1", "--out", str(tmp_path / "m")])
    assert code == 2 and "PCoder 2 sits at or before PCoder 1's place" in capsys.readouterr().err


def test_unknown_backbone_names_suggest_close_ones(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_:
        import_predify.parse_args(["--config", "x.toml", "--backbone", "resnet-18", "--random-weights", "0", "--out", "m"])
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    assert "'resnet-18' is not a torchvision classification model (did you mean resnet18" in err
    assert "--backbone-module FILE.py:FACTORY" in err


def test_every_torchvision_cnn_has_places():
    """Each convolutional classifier torchvision builds traces, and has a place after its stem."""
    from predify.backbones import torchvision_backbone, torchvision_classifiers

    transformers = ("vit_", "swin_", "maxvit_")
    for arch in torchvision_classifiers():
        if arch.startswith(transformers) or arch.endswith(("_large", "_128gf", "_32gf", "_16gf", "b7", "b6", "_l", "_m", "101_2", "152")):
            continue  # big ones only take time; their families are covered by smaller members
        traced = TracedBackbone(torchvision_backbone(arch, 10), arch)
        places = [n for n in traced.nodes if traced.is_place(n) and traced.names_at(n)]
        assert len(places) >= 4, arch


def test_model_directory_is_world_readable_whatever_the_umask(tmp_path, capsys):
    old = os.umask(0o077)
    try:
        out = tmp_path / "model"
        code = import_predify.main(["--config", str(toml(tmp_path, ["layer1", "layer2"])), "--backbone", "resnet18", "--random-weights", "1", "--input-size", "32", "--golden", "0", "--out", str(out)])
    finally:
        os.umask(old)
    assert code == 0, capsys.readouterr().err
    assert stat.S_IMODE(out.stat().st_mode) == 0o755
    modes = {p.name: stat.S_IMODE(p.stat().st_mode) for p in out.iterdir()}
    assert modes and set(modes.values()) == {0o644}, modes


def test_summary_says_which_values_were_used_and_where_they_came_from(tmp_path, capsys):
    from test_import_predify import fixture

    fx = fixture(tmp_path, PRESNET, "resnet18", "package")
    out = tmp_path / "model"
    code = import_predify.main(["--config", str(PRESNET), "--backbone", "resnet18", "--weights", str(fx / "pnet.pth"), "--input-size", "32", "--golden", "0", "--out", str(out)])
    assert code == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines[0].startswith("imported presnet18: 4 PCoders on resnet18, input 32x32, weights: package")
    # The fixture's buffers differ from the TOML (0.3/0.3/0.01): the buffers are used, and said so.
    assert lines[1].startswith("  pcoder1 at layer1 64x8x8: beta/lambda/alpha 0.25/0.325/0.02 from the checkpoint (the TOML says 0.3/0.3/0.01)")
    assert "C_sqrt from the checkpoint" in lines[1]
    assert "lambda unused at the top" in lines[4]
    # Without a checkpoint: the TOML's values, or the package's defaults where it has none.
    config = tmp_path / "partial.toml"
    config.write_text('name = "P"\ninput_size = [3, 224, 224]\n[[pcoders]]\nmodule = "layer1"\nhyperparameters = { feedforward = 0.2, feedback = 0.1, pc = 0.03 }\n[[pcoders]]\nmodule = "layer2"\n')
    code = import_predify.main(["--config", str(config), "--backbone", "resnet18", "--random-weights", "2", "--input-size", "32", "--golden", "0", "--out", str(tmp_path / "p")])
    lines = capsys.readouterr().out.strip().splitlines()
    assert "beta/lambda/alpha 0.2/0.1/0.03 from the TOML; no gradient scaling" in lines[1]
    assert "beta/lambda/alpha 0.3/0/0.01 from the package default; lambda unused at the top" in lines[2]


if __name__ == "__main__":
    sys.exit(pytest.main([__file__, "-q"]))
