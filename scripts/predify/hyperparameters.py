"""The one rule for hyperparameters, one set (beta, lambda, alpha) per PCoder.

Each value is a non-negative number, beta and lambda at most 1, and below the top
beta + lambda is at most 1 (the memory weight 1 - beta - lambda is then non-negative). The top
PCoder has no feedback from above: its lambda is ignored and stored as 0, and its memory is
1 - beta, as in the Predify package, where a shared set gives every PCoder the same lambda.

The service applies the same rule (src/model/hyperparameters.ts); both are tested against
test/fixtures/hyperparameter-cases.json.
"""

from __future__ import annotations

import math
from typing import Any, Mapping, Sequence


class HyperparameterError(ValueError):
    """A set of hyperparameters breaks the rule; the message names each PCoder (1-based)."""

    def __init__(self, problems: list[tuple[int, str]]):
        self.pcoders = [i + 1 for i, _ in problems]
        super().__init__("; ".join(f"PCoder {i + 1}: {message}" for i, message in problems))


def problems(sets: Sequence[Mapping[str, Any]]) -> list[tuple[int, str]]:
    """(0-based PCoder index, what is wrong) for each PCoder that breaks the rule."""
    found = []
    for i, h in enumerate(sets):
        top = i == len(sets) - 1
        beta, lam, alpha = (h["beta"], h["lambda"], h["alpha"])
        bad = next(
            ((k, v) for k, v in (("beta", beta), ("lambda", lam), ("alpha", alpha))
             if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or v < 0),
            None,
        )
        if bad:
            found.append((i, f"{bad[0]} must be a non-negative number, got {bad[1]}"))
        elif beta > 1:
            found.append((i, f"beta must not exceed 1, got {beta}"))
        elif lam > 1:
            found.append((i, f"lambda must not exceed 1, got {lam}"))
        elif not top and beta + lam > 1:
            found.append((i, f"beta + lambda must not exceed 1, got {beta} + {lam}"))
    return found


def normalise(sets: Sequence[Mapping[str, Any]]) -> list[dict[str, float]]:
    """The sets as floats with the top lambda set to 0; HyperparameterError if the rule is broken."""
    found = problems(sets)
    if found:
        raise HyperparameterError(found)
    out = [{"beta": float(h["beta"]), "lambda": float(h["lambda"]), "alpha": float(h["alpha"])} for h in sets]
    out[-1]["lambda"] = 0.0
    return out
