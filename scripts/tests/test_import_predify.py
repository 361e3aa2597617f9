"""scripts/import_predify.py: what it reads, what it refuses, and what it writes.

The numbers of imported networks are checked against the package's semantics by the
TypeScript suite (test/engine/paper-models.test.ts); here: the default predictor rule,
hyperparameters (shared, separate, from the checkpoint's buffers), C from the checkpoint, and
every refusal, each exiting 2 with one line and leaving no model directory.
"""

import json
import pickle
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from torch import nn

import import_predify
from predify.predify_toml import default_predictor
from predify.tracing import TracedBackbone, shapes_at

ROOT = Path(__file__).resolve().parents[2]
PEFF = ROOT / "models" / "predify" / "pefficientnet_b0.toml"
PVGG = ROOT / "models" / "predify" / "pvgg16.toml"
FIXTURES = ROOT / "scripts" / "tests" / "predify_fixtures.py"


def describe(module: nn.Module) -> list[tuple]:
    """A predictor as (kind, ...) tuples, to compare with hand-written expectations."""
    out = []
    for m in module.modules():
        if isinstance(m, nn.Upsample):
            # align_corners None is what bilinear does without it: False.
            out.append(("up", tuple(m.scale_factor), m.mode, bool(m.align_corners)))
        elif isinstance(m, nn.ConvTranspose2d):
            out.append(("convT", m.in_channels, m.out_channels, m.kernel_size, m.stride, m.padding))
    return out


def up2():
    return ("up", (2.0, 2.0), "bilinear", False)


def convt(cin, cout):
    return ("convT", cin, cout, (3, 3), (1, 1), (1, 1))


# By hand, from the architectures at 224 x 224: each level's (C, H, W) and the rule (upsample
# by the spatial ratio where it is not 1, then a 3x3 transposed convolution to C below).
EXPECTED_DEFAULTS = {
    "vgg16": (
        ["features[3]", "features[8]", "features[15]", "features[22]", "features[29]"],
        [
            [convt(64, 3)],
            [up2(), convt(128, 64)],
            [up2(), convt(256, 128)],
            [up2(), convt(512, 256)],
            [up2(), convt(512, 512)],
        ],
    ),
    "efficientnet_b0": (
        [f"features[{k}]" for k in range(8)],
        [
            [up2(), convt(32, 3)],  # stem 32x112x112 -> image 3x224x224
            [convt(16, 32)],  # 16x112x112 -> 32x112x112
            [up2(), convt(24, 16)],
            [up2(), convt(40, 24)],
            [up2(), convt(80, 40)],
            [convt(112, 80)],  # 112x14x14 -> 80x14x14
            [up2(), convt(192, 112)],
            [convt(320, 192)],
        ],
    ),
}


@pytest.mark.parametrize("arch", EXPECTED_DEFAULTS)
def test_default_predictor_rule(arch):
    modules, expected = EXPECTED_DEFAULTS[arch]
    traced = TracedBackbone(import_predify.build_backbone(arch, 1000))
    names = import_predify.resolve_places(traced, arch, modules)
    blocks, _ = traced.split([traced.calls_of(name)[0] for name in names])
    shapes = shapes_at(blocks, (3, 224, 224), modules)
    got = [describe(default_predictor(shapes[i + 1], shapes[i])) for i in range(len(modules))]
    assert got == expected
    # PEfficientNetB0's predictors in the paper are exactly this rule's.
    if arch == "efficientnet_b0":
        from predify.predify_toml import build_predictor_expression, read_toml

        cfg = read_toml(PEFF)
        assert [describe(build_predictor_expression(pc.predictor, cfg.imports)) for pc in cfg.pcoders] == expected


def test_timm_module_names_resolve_to_the_same_places():
    traced = TracedBackbone(import_predify.build_backbone("efficientnet_b0", 10))
    assert import_predify.resolve_places(traced, "efficientnet_b0", ["act1", "blocks[6]"]) == ["features.0", "features.7"]
    # The stem's own activation inside torchvision's features[0] gives the same output.
    (stem,) = import_predify.resolve_places(traced, "efficientnet_b0", ["features[0][2]"])
    assert traced.calls_of(stem) == traced.calls_of("features.0")


def run(args, tmp_path, capsys):
    out = tmp_path / "model"
    code = import_predify.main([*args, "--out", str(out), "--golden", "0"])
    err = capsys.readouterr().err.strip()
    return code, err, out


def write_toml(tmp_path, text, name="net.toml"):
    path = tmp_path / name
    path.write_text(text)
    return path


SMALL = """
name = "Small"
input_size = [3, 224, 224]
gradient_scaling = {scaling}
shared_hyperparameters = {shared}
[[pcoders]]
module = "features[0]"
hyperparameters = {{feedforward = 0.2, feedback = 0.3, pc = 0.01}}
[[pcoders]]
module = "features[1]"
hyperparameters = {{feedforward = 0.5, feedback = 0.1, pc = 0.02}}
[[pcoders]]
module = "features[2]"
hyperparameters = {{feedforward = 0.6, feedback = 0.4, pc = 0.03}}
"""


def small(tmp_path, scaling="false", shared="false", **extra):
    return write_toml(tmp_path, SMALL.format(scaling=scaling, shared=shared))


def manifest(out):
    return json.loads((out / "manifest.json").read_text())


@pytest.mark.parametrize(
    "shared, expected",
    [
        ("false", [(0.2, 0.3, 0.01), (0.5, 0.1, 0.02), (0.6, 0.0, 0.03)]),
        # Shared: every PCoder takes the first PCoder's set; the top lambda is still ignored.
        ("true", [(0.2, 0.3, 0.01), (0.2, 0.3, 0.01), (0.2, 0.0, 0.01)]),
    ],
)
def test_shared_and_separate_hyperparameters(tmp_path, capsys, shared, expected):
    cfg = small(tmp_path, shared=shared)
    code, err, out = run(["--config", str(cfg), "--backbone", "efficientnet_b0", "--random-weights", "1", "--input-size", "32"], tmp_path, capsys)
    assert code == 0, err
    got = [tuple(round(pc["hyperparameters"][k], 6) for k in ("beta", "lambda", "alpha")) for pc in manifest(out)["pcoders"]]
    assert got == expected
    assert all(pc["gradientScale"]["scale"] == 1 for pc in manifest(out)["pcoders"])


def fixture(tmp_path, config, backbone, layout, *extra):
    out = tmp_path / f"fx-{layout}"
    subprocess.run(
        [sys.executable, str(FIXTURES), "--config", str(config), "--backbone", backbone, "--input-size", "32", "--layout", layout, "--out", str(out), *extra],
        check=True,
    )
    return out


def test_package_checkpoint_hyperparameters_and_c(tmp_path, capsys):
    fx = fixture(tmp_path, PEFF, "efficientnet_b0", "package")
    state = torch.load(fx / "pnet.pth", weights_only=True)
    code, err, out = run(["--config", str(PEFF), "--backbone", "efficientnet_b0", "--weights", str(fx / "pnet.pth"), "--input-size", "32"], tmp_path, capsys)
    assert code == 0, err
    m = manifest(out)
    for i, pc in enumerate(m["pcoders"], 1):
        # The buffers' values, not the TOML's (the fixture nudged them).
        assert pc["hyperparameters"]["beta"] == pytest.approx(float(state[f"ffm{i}"]))
        assert pc["hyperparameters"]["alpha"] == pytest.approx(float(state[f"erm{i}"]))
        c_sqrt = float(state[f"pcoder{i}.C_sqrt"])
        assert m["source"]["cSqrt"][i - 1] == c_sqrt
        assert pc["gradientScale"]["scale"] == pytest.approx(pc["gradientScale"]["elements"] / c_sqrt, rel=1e-6)
    assert m["source"]["cMeasuredByImport"] == [False] * 8


def test_unset_c_is_measured_the_packages_way(tmp_path, capsys):
    fx = fixture(tmp_path, PEFF, "efficientnet_b0", "package", "--c-unset")
    code, err, out = run(["--config", str(PEFF), "--backbone", "efficientnet_b0", "--weights", str(fx / "pnet.pth"), "--input-size", "32"], tmp_path, capsys)
    assert code == 0, err
    m = manifest(out)
    assert m["source"]["cMeasuredByImport"] == [True] * 8
    # Linear predictors: C is the window of one element. PCoder 1: a bilinear doubling spreads
    # it over 4x4, the 3x3 transposed convolution over 6x6, in each of 3 channels; PCoder 2:
    # 3x3 in each of 32 channels.
    assert m["pcoders"][0]["gradientScale"]["influence"] == pytest.approx(6 * 6 * 3)
    assert m["pcoders"][1]["gradientScale"]["influence"] == pytest.approx(3 * 3 * 32)


def malicious_pickle(path):
    class Payload:
        def __reduce__(self):
            return (print, ("this ran",))

    with open(path, "wb") as f:
        pickle.dump({"backbone.x": Payload()}, f)


REFUSALS = [
    ("bad TOML", lambda t: ("name = [", None), "not valid TOML"),
    ("no input_size", lambda t: ('name = "N"\n[[pcoders]]\nmodule = "features[0]"', None), "'input_size' is missing"),
    ("unknown module", lambda t: (SMALL.format(scaling="false", shared="false").replace("features[2]", "features[42]"), None), "PCoder 3: module 'features[42]' is not in the efficientnet_b0 backbone"),
    (
        "module inside a residual branch",
        lambda t: (SMALL.format(scaling="false", shared="false").replace('"features[2]"', '"features[2][1].block"'), None),
        "PCoder 3: module 'features[2][1].block' is not on the main path",
    ),
    (
        "code in a predictor",
        lambda t: (SMALL.format(scaling="false", shared="false").replace('module = "features[1]"', 'module = "features[1]"\npredictor = "__import__(\'os\').system(\'touch /tmp/pwned\')"'), None),
        "PCoder 2: predictor: '__import__('os').system' is not a torch.nn constructor",
    ),
    (
        "a predictor that does not reach the level below",
        lambda t: (SMALL.format(scaling="false", shared="false").replace('module = "features[1]"', 'module = "features[1]"\npredictor = "Sequential(ConvTranspose2d(16, 32, kernel_size=3, stride=2, padding=1))"'), None),
        "PCoder 2: predictor output (32, 31, 31) does not match the level below (32, 16, 16)",
    ),
    ("hyperparameters over the rule", lambda t: (SMALL.format(scaling="false", shared="false").replace("feedforward = 0.2, feedback = 0.3", "feedforward = 0.8, feedback = 0.3"), None), "PCoder 1: beta + lambda must not exceed 1"),
    ("a pickle that is not plain weights", lambda t: (SMALL.format(scaling="false", shared="false"), "pickle"), "not plain weights"),
    ("a checkpoint that does not fit", lambda t: (SMALL.format(scaling="false", shared="false"), "misfit"), "does not fit"),
]


@pytest.mark.parametrize("name, make, message", REFUSALS, ids=[r[0] for r in REFUSALS])
def test_refusals(tmp_path, capsys, name, make, message):
    text, weights = make(tmp_path)
    cfg = write_toml(tmp_path, text)
    args = ["--config", str(cfg), "--backbone", "efficientnet_b0", "--input-size", "32"]
    if weights == "pickle":
        malicious_pickle(tmp_path / "evil.pth")
        args += ["--weights", str(tmp_path / "evil.pth")]
    elif weights == "misfit":
        torch.manual_seed(0)
        state = {f"backbone.{k}": v for k, v in import_predify.build_backbone("efficientnet_b0", 10).state_dict().items()}
        state["backbone.features.0.0.weight"] = torch.zeros(8, 3, 3, 3)
        torch.save(state, tmp_path / "misfit.pth")
        args += ["--weights", str(tmp_path / "misfit.pth")]
    else:
        args += ["--random-weights", "0"]
    code, err, out = run(args, tmp_path, capsys)
    assert code == 2
    assert message in err
    assert len(err.splitlines()) == 1
    assert not out.exists()
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".model")] == []
    assert not Path("/tmp/pwned").exists()


def test_refuses_c_sqrt_without_gradient_scaling(tmp_path, capsys):
    fx = fixture(tmp_path, PEFF, "efficientnet_b0", "package")
    text = PEFF.read_text().replace("gradient_scaling = true", "gradient_scaling = false")
    cfg = write_toml(tmp_path, text)
    code, err, out = run(["--config", str(cfg), "--backbone", "efficientnet_b0", "--weights", str(fx / "pnet.pth"), "--input-size", "32"], tmp_path, capsys)
    assert code == 2
    assert "C_sqrt" in err and "gradient_scaling = false" in err
    assert not out.exists()


def test_refuses_shared_buffers_for_separate_config(tmp_path, capsys):
    text = PEFF.read_text().replace("shared_hyperparameters = false", "shared_hyperparameters = true")
    shared = write_toml(tmp_path, text, "shared.toml")
    fx = fixture(tmp_path, shared, "efficientnet_b0", "package")
    code, err, out = run(["--config", str(PEFF), "--backbone", "efficientnet_b0", "--weights", str(fx / "pnet.pth"), "--input-size", "32"], tmp_path, capsys)
    assert code == 2
    assert "shared hyperparameters" in err


def test_published_layout_with_a_timm_backbone(tmp_path, capsys):
    fx = fixture(tmp_path, PEFF, "efficientnet_b0", "published", "--timm")
    predictors = [str(fx / f"pc{i}.pth") for i in range(1, 9)]
    args = ["--config", str(PEFF), "--backbone", "efficientnet_b0", "--input-size", "32"]
    code, err, out = run([*args, "--predictor-weights", *predictors, "--backbone-weights", str(fx / "backbone.pth")], tmp_path, capsys)
    assert code == 0, err
    m = manifest(out)
    assert m["source"]["weights"] == "published+timm"
    # No buffers in this layout: the TOML's hyperparameters, and C measured at import.
    assert [pc["hyperparameters"]["beta"] for pc in m["pcoders"]] == [0.8] * 8  # the paper's text values
    assert m["source"]["cMeasuredByImport"] == [True] * 8
    # One predictor file too few is refused.
    code, err, _ = run([*args, "--predictor-weights", *predictors[:7], "--backbone-weights", str(fx / "backbone.pth")], tmp_path, capsys)
    assert code == 2 and "7 files for 8 PCoders" in err


def test_help_names_documents_that_exist(capsys):
    with pytest.raises(SystemExit):
        import_predify.parse_args(["--help"])
    text = capsys.readouterr().out
    import re

    docs = re.findall(r"docs/[\w./-]+\.md", text)
    assert docs and all((ROOT / d).is_file() for d in docs), docs
    assert "RUNS THAT FILE's CODE" in text
