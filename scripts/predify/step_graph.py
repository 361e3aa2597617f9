"""One timestep of the whole network as one graph: every PCoder's update, prediction, error
and gradient, and the head, for a batch whose samples may each be at their own timestep.

The engine calls it once per step instead of once per encoder, feedback graph and head, and
the update of r_i runs inside onnxruntime instead of in TypeScript. Each sample brings its own
update weights (`coefficients`, [batch, PCoders, 4]: feedforward, feedback, memory and error
correction, the gradient scale folded in), so hyperparameter profiles and mixed batches work
as before; a sample at t = 0 brings (1, 0, 0, 0) and zero state, which makes its update the
feedforward pass r_i(0) = E_i(r_{i-1}(0)) exactly.

Inputs: image, drive1 (E_1(image), which never changes, so the engine computes it once per
sample), coefficients, r1..rn, p2..pn (p_{i+1}(t-1), the prediction from above) and g1..gn of
the previous step. Outputs: logits, errors [batch, n], and next_r1..n, next_p2..n, next_g1..n.
The g_i it carries are the error gradients divided by 2 / |p_i| (see StepGraph.__init__): they
are state for the next step, not answers.
"""

from __future__ import annotations

import copy

import torch
from torch import nn


def state_names(n: int) -> list[str]:
    return [f"r{i}" for i in range(1, n + 1)] + [f"p{i}" for i in range(2, n + 1)] + [f"g{i}" for i in range(1, n + 1)]


class StepGraph(nn.Module):
    def __init__(self, encoders: list[nn.Module], feedback: list[nn.Module], head: nn.Module):
        """`encoders`: E_2..E_n (E_1's output comes in as drive1); `feedback`: D_1..D_n as
        FeedbackGraph modules; `head`: H."""
        super().__init__()
        if len(encoders) != len(feedback) - 1:
            raise ValueError("StepGraph takes E_2..E_n and D_1..D_n")
        # The gradient's constant factor 2 / |p_i| joins the error-correction weight, a
        # [batch] multiply, instead of a pass over each prediction-sized tensor: the state
        # g_i this graph carries is the gradient divided by it.
        self.gradient_factors = [2.0 / graph.elements for graph in feedback]
        feedback = [copy.copy(graph) for graph in feedback]
        for graph in feedback:
            graph.scaled = False
        self.encoders = nn.ModuleList(encoders)
        self.feedback = nn.ModuleList(feedback)
        self.head = head
        self.n = len(feedback)

    def forward(self, image: torch.Tensor, drive1: torch.Tensor, coefficients: torch.Tensor, *state: torch.Tensor):
        n = self.n
        r_prev, p_prev, g_prev = state[:n], state[n : 2 * n - 1], state[2 * n - 1 :]
        rs, ps, gs, es = [], [], [], []
        below = image
        for i in range(n):
            drive = drive1 if i == 0 else self.encoders[i - 1](below)

            def weight(k: int) -> torch.Tensor:
                return coefficients[:, i, k].reshape([-1] + [1] * (drive.dim() - 1))

            # The order of the engine's update: feedforward, feedback, memory, error correction.
            r = weight(0) * drive
            if i < n - 1:
                r = r + weight(1) * p_prev[i]
            r = r + weight(2) * r_prev[i] - (weight(3) * self.gradient_factors[i]) * g_prev[i]
            p, e, g = self.feedback[i](r, below)
            rs.append(r)
            gs.append(g)
            es.append(e)
            if i > 0:
                ps.append(p)
            below = r
        return (self.head(below), torch.stack(es, 1), *rs, *ps, *gs)
