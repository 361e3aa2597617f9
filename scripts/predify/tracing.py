"""Where a PCoder may sit in a backbone, and the backbone cut there into encoder blocks and a head.

The Predify package puts a PCoder on a module with a forward hook: the hook replaces that
module's output, and the rest of the forward pass runs on the replacement. Serving the same
dynamics as separate graphs (encoder blocks, head) works when that output carries the whole
state of the computation: nothing computed before it is used after it. At a residual stage's
output that holds (the additions are inside the stage); inside a residual branch it does not
(the branch's input is added back later, unreplaced).

The forward pass is traced with torch.fx. Every module call is recorded with the graph node
its output is, so a module path names a node whether the module is a leaf of the trace or a
container traced through (`layer2`, `layer2[1]`, `features[3]`). A module whose forward torch.fx
cannot trace (Python control flow on tensor sizes, as ShuffleNet's channel shuffle) is kept
whole as a leaf, and the trace is retried; PCoders can then sit at its output but not inside it.
"""

from __future__ import annotations

import operator
import re
from dataclasses import dataclass
from typing import Any

import torch
from torch import fx, nn

_SEGMENT = r"[A-Za-z_]\w*(?:\[\d+\])*"
_PATH = re.compile(rf"{_SEGMENT}(?:\.{_SEGMENT})*")
# Functions that change their first argument; a PCoder's output must not be changed after the
# hook, or the package's stored representation would change with it.
_INPLACE_OPERATORS = {
    operator.iadd, operator.isub, operator.imul, operator.itruediv, operator.ifloordiv,
    operator.imod, operator.ipow, operator.iand, operator.ior, operator.ixor,
    operator.ilshift, operator.irshift, operator.imatmul, operator.setitem,
}  # fmt: skip
_MAX_RETRACES = 256


class CutError(ValueError):
    """A PCoder cannot sit where it was asked to; the message is one line for the user."""


def qualified_name(path: str) -> str:
    """The package's module path (`layer3[1].relu`, `features[3]`) as torch names the module
    (`layer3.1.relu`, `features.3`). Dotted digits are accepted as well."""
    path = path.strip()
    if not path or not (_PATH.fullmatch(path) or re.fullmatch(r"[\w.]+", path)):
        raise CutError(f"{path!r} is not a module path such as layer2, features[3] or layer3[1].relu")
    return re.sub(r"\[(\d+)\]", r".\1", path)


def package_path(name: str) -> str:
    """torch's qualified name as the package writes the path: indices in brackets."""
    out = ""
    for part in name.split("."):
        out += f"[{part}]" if part.isdigit() else (f".{part}" if out else part)
    return out


class _Tracer(fx.Tracer):
    def __init__(self, leaves: set[str]):
        super().__init__()
        self.leaves = leaves
        self.calls: list[tuple[str, fx.Node]] = []
        self.failed_in: str | None = None

    def is_leaf_module(self, m: nn.Module, qualname: str) -> bool:
        return qualname in self.leaves or super().is_leaf_module(m, qualname)

    def call_module(self, m: nn.Module, forward: Any, args: tuple, kwargs: dict) -> Any:
        name = self.path_of_module(m)
        try:
            out = super().call_module(m, forward, args, kwargs)
        except Exception:
            # The innermost module whose forward failed is the first to see the error.
            if self.failed_in is None:
                self.failed_in = name
            raise
        if isinstance(out, fx.Proxy):
            self.calls.append((name, out.node))
        return out


@dataclass
class Place:
    """A node whose value carries the whole state of the computation."""

    node: fx.Node
    index: int


class TracedBackbone:
    """A backbone's forward pass as a graph, with the places a PCoder may sit."""

    def __init__(self, model: nn.Module, what: str = "the backbone"):
        if model.training:
            raise ValueError("trace a backbone in eval mode")
        self.model = model
        self.what = what
        self.leaves: set[str] = set()
        for _ in range(_MAX_RETRACES):
            tracer = _Tracer(self.leaves)
            try:
                graph = tracer.trace(model)
                break
            except Exception as err:  # torch.fx raises many kinds for code it cannot follow
                if not tracer.failed_in or tracer.failed_in in self.leaves:
                    first = (str(err).strip().splitlines() or [type(err).__name__])[0]
                    raise CutError(f"torch.fx cannot trace {what}'s own forward pass ({first[:160]})") from None
                self.leaves.add(tracer.failed_in)
        else:
            raise CutError(f"torch.fx cannot trace {what}: too many modules had to be kept whole")
        self.graph = graph
        self.module = fx.GraphModule(model, graph)
        # Each module's outputs in call order, and the modules called once by the node they output.
        self.outputs: dict[str, list[fx.Node]] = {}
        for name, node in tracer.calls:
            self.outputs.setdefault(name, []).append(node)
        self.called_once: dict[fx.Node, list[str]] = {}
        for name, called in self.outputs.items():
            if len(called) == 1 and name:
                self.called_once.setdefault(called[0], []).append(name)
        self.modules = dict(model.named_modules())

        nodes = list(graph.nodes)
        self.nodes = nodes
        self.index = {n: i for i, n in enumerate(nodes)}
        inputs = [n for n in nodes if n.op == "placeholder"]
        if len(inputs) != 1:
            raise CutError(f"{what}'s forward takes {len(inputs)} inputs; an image classifier takes one")
        self.input = inputs[0]
        result = nodes[-1].args[0]
        if not isinstance(result, fx.Node):
            raise CutError(f"{what}'s forward returns {type(result).__name__}, not one tensor of logits")
        self.result = result

        # Nodes the result depends on (others are dead code), and of those the ones that depend
        # on the image; the rest (parameters read with get_attr, constants) may be recomputed in
        # any block.
        live: set[fx.Node] = set()
        stack = [result]
        while stack:
            n = stack.pop()
            if n not in live:
                live.add(n)
                stack.extend(n.all_input_nodes)
        dependent: set[fx.Node] = set()
        for n in nodes:
            if n is self.input or (n in live and any(a in dependent for a in n.all_input_nodes)):
                dependent.add(n)
        self.dependent = dependent

        # A node is a place when no edge between image-dependent nodes jumps over it in the
        # graph's order. That order is one topological order of many, but the test does not
        # depend on which: a node neither before nor after n in the dependency sense still
        # derives from the image through n's ancestors and feeds the result through n's
        # descendants, so some edge into or out of it jumps over n in any order.
        crossing = [0] * (len(nodes) + 1)
        for n in nodes:
            if n not in dependent:
                continue
            for a in n.all_input_nodes:
                if a in dependent and self.index[n] - self.index[a] > 1:
                    crossing[self.index[a] + 1] += 1
                    crossing[self.index[n]] -= 1
        self.crossed: list[int] = []
        running = 0
        for i in range(len(nodes)):
            running += crossing[i]
            self.crossed.append(running)

    # -- what a module path names -------------------------------------------------------------

    def calls_of(self, name: str) -> list[fx.Node]:
        return self.outputs.get(name, [])

    def is_place(self, node: fx.Node) -> bool:
        return node in self.dependent and node is not self.input and self.crossed[self.index[node]] == 0

    def names_at(self, node: fx.Node) -> list[str]:
        """Module paths whose (single) call outputs `node`, most specific first."""
        return sorted(self.called_once.get(node, []), key=lambda s: (-s.count("."), s))

    def nearest_places(self, node: fx.Node) -> list[str]:
        """The module outputs just before and just after `node` where a PCoder may sit."""
        at = self.index[node]
        named = [(self.index[n], names[0]) for n in self.nodes if self.is_place(n) and (names := self.names_at(n))]
        before = [p for p in named if p[0] < at]
        after = [p for p in named if p[0] > at]
        out = ([before[-1][1]] if before else []) + ([after[0][1]] if after else [])
        return [package_path(name) for name in out]

    def _inplace_user(self, node: fx.Node) -> str | None:
        for user in node.users:
            if not user.args or user.args[0] is not node:
                continue
            if user.op == "call_function" and (user.target in _INPLACE_OPERATORS or user.kwargs.get("inplace") is True):
                return getattr(user.target, "__name__", str(user.target))
            if user.op == "call_method" and str(user.target).endswith("_") and not str(user.target).endswith("__"):
                return f".{user.target}()"
            if user.op == "call_module" and getattr(self.modules.get(str(user.target)), "inplace", False):
                return package_path(str(user.target))
        return None

    def place(self, path: str, pcoder: int) -> fx.Node:
        """The node a PCoder on the module at `path` replaces; CutError says why not."""
        where = f"PCoder {pcoder}: module {path!r}"
        name = qualified_name(path)
        if name not in self.modules:
            raise CutError(f"{where} is not in {self.what}")
        inside = next((leaf for leaf in sorted(self.leaves) if name.startswith(leaf + ".")), None)
        if inside is not None:
            raise CutError(
                f"{where} is inside {package_path(inside)}, whose forward torch.fx cannot trace; "
                f"a PCoder can sit at {package_path(inside)}'s output"
            )
        outputs = self.calls_of(name)
        if not outputs:
            raise CutError(f"{where} is never called by {self.what}'s forward pass")
        if len(outputs) > 1:
            raise CutError(
                f"{where} is called {len(outputs)} times in one forward pass, and the package's hook "
                f"would replace each of its outputs; put the PCoder on a module called once"
            )
        node = outputs[0]
        if not self.is_place(node):
            nearest = self.nearest_places(node)
            hint = f"; the nearest places that work are {' and '.join(nearest)}" if nearest else ""
            raise CutError(
                f"{where} is not on the main path: values computed before its output are used after "
                f"it (a residual or parallel branch), so replacing its output would not change them{hint}"
            )
        if node is self.result:
            raise CutError(f"{where} gives the logits; the last PCoder must leave something for the head")
        changed = self._inplace_user(node)
        if changed:
            raise CutError(
                f"{where}'s output is changed in place afterwards ({changed}), which would change the "
                "PCoder's stored representation; put the PCoder one step later"
            )
        return node

    # -- cutting -------------------------------------------------------------------------------

    def _segment(self, start: fx.Node, end: fx.Node) -> fx.GraphModule:
        """The image-dependent nodes after `start` up to `end`, as a module of one input."""
        graph = fx.Graph()
        env: dict[fx.Node, fx.Node] = {start: graph.placeholder("x")}

        def copy(n: fx.Node) -> fx.Node:
            if n not in env:
                if n in self.dependent:
                    raise AssertionError(f"{n} is outside the segment")  # ruled out by is_place
                for a in n.all_input_nodes:
                    copy(a)
                env[n] = graph.node_copy(n, lambda a: env[a])
            return env[n]

        for n in self.nodes[self.index[start] + 1 : self.index[end] + 1]:
            if n in self.dependent:
                for a in n.all_input_nodes:
                    copy(a)
                env[n] = graph.node_copy(n, lambda a: env[a])
        graph.output(env[end])
        graph.lint()
        # The segment shares the backbone's submodules and parameters.
        return fx.GraphModule(self.module, graph)

    def split(self, places: list[fx.Node]) -> tuple[list[fx.GraphModule], fx.GraphModule]:
        """Encoder blocks E_1..E_n (E_i ends at places[i]) and the head."""
        blocks = []
        start = self.input
        for i, node in enumerate(places):
            if self.index[node] <= self.index[start]:
                raise CutError(
                    f"PCoder {i + 1} sits at or before PCoder {i}'s place; "
                    "list PCoders in the order of the forward pass"
                )
            blocks.append(self._segment(start, node))
            start = node
        return blocks, self._segment(start, self.result)


def cut(model: nn.Module, paths: list[str], what: str = "the backbone") -> tuple[list[fx.GraphModule], fx.GraphModule]:
    """Encoder blocks and head of `model` with PCoders on the modules at `paths`."""
    traced = TracedBackbone(model, what)
    places = [traced.place(path, i + 1) for i, path in enumerate(paths)]
    return traced.split(places)


def shapes_at(blocks: list[nn.Module], size: tuple[int, ...], paths: list[str]) -> list[tuple[int, int, int]]:
    """(C, H, W) of the image and of each block's output for one image of `size`."""
    out: list[tuple[int, int, int]] = [tuple(size)]  # type: ignore[list-item]
    with torch.no_grad():
        h = torch.ones(1, *size)
        for block, path in zip(blocks, paths):
            h = block(h)
            if not isinstance(h, torch.Tensor) or h.dim() != 4:
                shape = tuple(h.shape) if isinstance(h, torch.Tensor) else type(h).__name__
                raise CutError(
                    f"module {path!r} gives {shape}; a PCoder needs a 4-D (N, C, H, W) representation "
                    "(a convolutional feature map)"
                )
            out.append(tuple(h.shape[1:]))  # type: ignore[arg-type]
    return out
