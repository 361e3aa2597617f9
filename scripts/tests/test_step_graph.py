"""The whole-timestep graph, stepped in PyTorch, gives the reference dynamics: for samples at
different timesteps in one batch, with their own update weights."""

from __future__ import annotations

import json

import torch

from predify.config import parse_config
from predify.model import PredifyModel, reference_dynamics
from predify.predictors import FeedbackGraph
from predify.step_graph import StepGraph

from test_export_end_to_end import SMALL


def weights(model: PredifyModel) -> torch.Tensor:
    """[n, 4] update weights of the exported hyperparameters, as the engine computes them."""
    rows = []
    for i, pc in enumerate(model.info):
        lam = pc.lam if i < len(model.info) - 1 else 0.0
        rows.append([pc.beta, lam, 1 - pc.beta - lam, pc.alpha * pc.scale])
    return torch.tensor(rows)


def test_stepping_the_graph_reproduces_the_reference() -> None:
    torch.manual_seed(0)
    model = PredifyModel(parse_config(json.loads(json.dumps(SMALL)))).eval()
    n = len(model.info)
    feedback = [FeedbackGraph(model.predictors[i], pc.shape, pc.target_shape).eval() for i, pc in enumerate(model.info)]
    step = StepGraph(list(model.blocks[1:]), feedback, model.head).eval()
    images = torch.randn(2, 1, 28, 28, generator=torch.Generator().manual_seed(1))
    timesteps = 4
    refs = [reference_dynamics(model, images[k : k + 1], timesteps) for k in range(2)]

    # Sample 1 joins one step after sample 0; a sample at t = 0 brings (1, 0, 0, 0) and zero state.
    running = weights(model)
    first = torch.tensor([[1.0, 0.0, 0.0, 0.0]]).repeat(n, 1)
    with torch.no_grad():
        drive1 = model.blocks[0](images)
        state = [torch.zeros(2, *pc.shape) for pc in model.info]
        state += [torch.zeros(2, *pc.target_shape) for pc in model.info[1:]]
        state += [torch.zeros(2, *pc.shape) for pc in model.info]
        for t in range(timesteps + 1):
            ts = [t, t - 1]
            coefficients = torch.stack([first if s == 0 else running for s in ts])
            logits, errors, *state = step(images, drive1, coefficients, *state)
            for k, s in enumerate(ts):
                if s < 0:  # not joined yet: its state must stay zero
                    state = [x.clone() for x in state]
                    for x in state:
                        x[k] = 0
                    continue
                torch.testing.assert_close(logits[k], torch.tensor(refs[k]["logits"][s]), rtol=1e-4, atol=1e-4)
                torch.testing.assert_close(errors[k], torch.tensor(refs[k]["errors"][s], dtype=torch.float32), rtol=1e-4, atol=0.0)
