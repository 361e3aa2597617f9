"""The exporter applies the service's hyperparameter rule: the shared cases in
test/fixtures/hyperparameter-cases.json (also read by test/model/hyperparameters.test.ts) are
accepted, refused and normalised the same way on both sides."""

import json
from pathlib import Path

import pytest

from predify.config import ConfigError, parse_config
from predify.hyperparameters import HyperparameterError, normalise

CASES = json.loads((Path(__file__).resolve().parents[2] / "test" / "fixtures" / "hyperparameter-cases.json").read_text())["cases"]


@pytest.mark.parametrize("case", CASES, ids=[c["name"] for c in CASES])
def test_rule(case):
    if "normalised" in case:
        assert normalise(case["sets"]) == case["normalised"]
    else:
        with pytest.raises(HyperparameterError) as err:
            normalise(case["sets"])
        assert err.value.pcoders == case["refused"]


@pytest.mark.parametrize("case", CASES, ids=[c["name"] for c in CASES])
def test_config_applies_the_rule(case):
    raw = {
        "name": "t",
        "backbone": {"arch": "fashion-cnn", "num_classes": 2},
        "input": {"channels": 1, "height": 28, "width": 28},
        "labels": ["a", "b"],
        "pcoders": [{"layer": str(i), "hyperparameters": h} for i, h in enumerate(case["sets"])],
    }
    if "normalised" in case:
        cfg = parse_config(raw)
        got = [{"beta": pc.beta, "lambda": pc.lam, "alpha": pc.alpha} for pc in cfg.pcoders]
        assert got == case["normalised"]
    else:
        with pytest.raises(ConfigError, match=f"PCoder {case['refused'][0]}:"):
            parse_config(raw)
