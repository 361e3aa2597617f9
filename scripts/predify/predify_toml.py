"""Predify's own network configs (TOML), read the way the Predify package's generator reads them.

The fields: `name`, `imports` (lines that bring torch.nn names into the predictor
expressions), `gradient_scaling` (the package's PCoderN, off when absent),
`shared_hyperparameters` (off when absent; when on, every PCoder takes the first PCoder's set),
`input_size` ([channels, height, width]) and `[[pcoders]]` tables with `module` (a path into the
backbone), `predictor` (a Python expression of torch.nn modules; absent: the package's default
rule) and `hyperparameters` ({feedforward, feedback, pc}; absent: 0.3, 0.3, 0.01 as in the
package).

Predictor expressions are never evaluated: they are parsed with `ast` and built from an
allowlist of module constructors whose arguments must be literals.
"""

from __future__ import annotations

import ast
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from torch import nn

# What the package's generator assumes when a PCoder has no hyperparameters.
PACKAGE_DEFAULT_HYPERPARAMETERS = {"feedforward": 0.3, "feedback": 0.3, "pc": 0.01}
# What its generated file imports when the config has no `imports`.
PACKAGE_DEFAULT_IMPORTS = ("Sequential", "ConvTranspose2d", "Upsample")

# Constructors a predictor may use, with their parameters in positional order: the subset of
# torch.nn for which the exported feedback graph has an exact adjoint.
CONSTRUCTORS: dict[str, tuple[type[nn.Module], tuple[str, ...]]] = {
    "ConvTranspose2d": (
        nn.ConvTranspose2d,
        ("in_channels", "out_channels", "kernel_size", "stride", "padding", "output_padding", "groups", "bias", "dilation", "padding_mode"),
    ),
    "Conv2d": (
        nn.Conv2d,
        ("in_channels", "out_channels", "kernel_size", "stride", "padding", "dilation", "groups", "bias", "padding_mode"),
    ),
    "ReLU": (nn.ReLU, ("inplace",)),
    "Upsample": (nn.Upsample, ("size", "scale_factor", "mode", "align_corners", "recompute_scale_factor")),
    "Identity": (nn.Identity, ()),
}


class ConfigError(Exception):
    """A config or checkpoint that cannot be imported; the message is one line for the user."""


@dataclass
class PCoderEntry:
    module: str
    predictor: str | None
    hyperparameters: dict[str, float]  # feedforward, feedback, pc, as the config gives them
    hyperparameters_given: bool = True  # False: the package's defaults, the TOML has none


@dataclass
class PredifyToml:
    name: str
    imports: list[str] | None
    gradient_scaling: bool
    shared_hyperparameters: bool
    input_size: tuple[int, int, int]
    pcoders: list[PCoderEntry]

    def hyperparameters(self) -> list[dict[str, float]]:
        """Each PCoder's set as the package runs it: with shared ones, the first PCoder's."""
        sets = [pc.hyperparameters for pc in self.pcoders]
        return [dict(sets[0]) for _ in sets] if self.shared_hyperparameters else [dict(s) for s in sets]

    def hyperparameter_origins(self) -> list[str]:
        """Where each PCoder's set comes from: 'TOML' or 'package default'."""
        given = [pc.hyperparameters_given for pc in self.pcoders]
        given = [given[0]] * len(given) if self.shared_hyperparameters else given
        return ["TOML" if g else "package default" for g in given]


def read_toml(path: str | Path) -> PredifyToml:
    try:
        raw = tomllib.loads(Path(path).read_text())
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such file") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as err:
        raise ConfigError(f"{path}: not valid TOML ({err})") from None
    return parse_toml(raw, str(path))


def _bool(raw: dict[str, Any], key: str, where: str) -> bool:
    value = raw.get(key, False)
    if not isinstance(value, bool):
        raise ConfigError(f"{where}: '{key}' must be true or false, got {value!r}")
    return value


def parse_toml(raw: dict[str, Any], where: str = "config") -> PredifyToml:
    name = raw.get("name", "network")
    if not isinstance(name, str) or not name.isidentifier() or name == "Net":
        raise ConfigError(f"{where}: 'name' must be a Python identifier other than 'Net', got {name!r}")
    size = raw.get("input_size")
    if size is None:
        raise ConfigError(f"{where}: 'input_size' is missing ([channels, height, width])")
    if not isinstance(size, list) or not all(isinstance(v, int) and v > 0 for v in size):
        raise ConfigError(f"{where}: 'input_size' must be a list of positive whole numbers, got {size!r}")
    if len(size) == 4:
        raise ConfigError(f"{where}: 'input_size' has 4 entries (a 3-D input); only 2-D images are served")
    if len(size) != 3:
        raise ConfigError(f"{where}: 'input_size' must be [channels, height, width], got {size!r}")
    imports = raw.get("imports")
    if imports is not None and (not isinstance(imports, list) or not all(isinstance(s, str) for s in imports)):
        raise ConfigError(f"{where}: 'imports' must be a list of strings")
    pcoders_raw = raw.get("pcoders")
    if not isinstance(pcoders_raw, list) or not pcoders_raw:
        raise ConfigError(f"{where}: 'pcoders' must be a non-empty list of [[pcoders]] tables")
    pcoders = []
    for i, pc in enumerate(pcoders_raw, 1):
        here = f"{where}: PCoder {i}"
        if not isinstance(pc, dict):
            raise ConfigError(f"{here}: must be a table")
        module = pc.get("module")
        if not isinstance(module, str) or not module:
            raise ConfigError(f"{here}: 'module' is missing (a path into the backbone such as features[3])")
        predictor = pc.get("predictor")
        if predictor is not None and not isinstance(predictor, str):
            raise ConfigError(f"{here}: 'predictor' must be a string holding a torch.nn expression")
        hps = pc.get("hyperparameters", PACKAGE_DEFAULT_HYPERPARAMETERS)
        if not isinstance(hps, dict) or not all(k in hps for k in PACKAGE_DEFAULT_HYPERPARAMETERS):
            raise ConfigError(f"{here}: 'hyperparameters' must hold feedforward, feedback and pc")
        values = {}
        for key in PACKAGE_DEFAULT_HYPERPARAMETERS:
            v = hps[key]
            if isinstance(v, bool) or not isinstance(v, (int, float)):
                raise ConfigError(f"{here}: hyperparameter '{key}' must be a number, got {v!r}")
            values[key] = float(v)
        pcoders.append(PCoderEntry(module, predictor, values, "hyperparameters" in pc))
    return PredifyToml(
        name=name,
        imports=imports,
        gradient_scaling=_bool(raw, "gradient_scaling", where),
        shared_hyperparameters=_bool(raw, "shared_hyperparameters", where),
        input_size=(size[0], size[1], size[2]),
        pcoders=pcoders,
    )


def imported_names(imports: list[str] | None) -> set[str]:
    """The names a predictor expression may use, from the config's import lines.

    `from torch.nn import A, B` brings A and B; `import torch.nn as nn`, `from torch import nn`
    and `import torch` bring the module prefixes. Other lines are refused: they could import
    anything.
    """
    if imports is None:
        return set(PACKAGE_DEFAULT_IMPORTS)
    names: set[str] = set()
    for line in imports:
        try:
            tree = ast.parse(line)
        except SyntaxError:
            raise ConfigError(f"imports: {line!r} is not a Python import line") from None
        for node in tree.body:
            if isinstance(node, ast.ImportFrom) and node.module == "torch.nn" and node.level == 0:
                for alias in node.names:
                    if alias.name != "*" and alias.asname is None:
                        names.add(alias.name)
                    else:
                        raise ConfigError(f"imports: {line!r}: import names plainly (no * or 'as')")
            elif isinstance(node, ast.ImportFrom) and node.module == "torch" and [a.name for a in node.names] == ["nn"]:
                names.add(node.names[0].asname or "nn")
            elif isinstance(node, ast.Import) and len(node.names) == 1 and node.names[0].name in ("torch", "torch.nn"):
                alias = node.names[0]
                names.add(alias.asname or alias.name)
            else:
                raise ConfigError(f"imports: {line!r}: only imports from torch.nn are allowed")
    return names


def _literal(node: ast.expr, what: str) -> Any:
    try:
        value = ast.literal_eval(node)
    except (ValueError, SyntaxError, TypeError):
        raise ConfigError(f"{what} must be a literal (number, tuple, string, True/False/None)") from None
    if isinstance(value, (list, dict, set, bytes, complex)):
        raise ConfigError(f"{what} must be a number, tuple, string, True/False or None")
    return value


def _callee(func: ast.expr, names: set[str]) -> str:
    """The constructor a call names (`X`, `nn.X` or `torch.nn.X`), if allowed and imported."""
    dotted = ast.unparse(func)
    parts = dotted.split(".")
    if not all(p.isidentifier() for p in parts):
        raise ConfigError(f"'{dotted}' is not a torch.nn constructor")
    ctor, prefix = parts[-1], ".".join(parts[:-1])
    if ctor != "Sequential" and ctor not in CONSTRUCTORS:
        raise ConfigError(f"'{dotted}' is not allowed: use {', '.join(['Sequential', *CONSTRUCTORS])}")
    imported = (
        ctor in names
        if not prefix
        else (prefix == "nn" and "nn" in names) or (prefix == "torch.nn" and bool({"torch", "torch.nn"} & names))
    )
    if not imported:
        raise ConfigError(f"'{dotted}' is not brought in by the config's imports")
    return ctor


def _build(node: ast.expr, names: set[str]) -> nn.Module:
    if not isinstance(node, ast.Call):
        raise ConfigError(f"'{ast.unparse(node)}' is not a module constructor call")
    ctor = _callee(node.func, names)
    if ctor == "Sequential":
        if node.keywords:
            raise ConfigError("Sequential takes modules only, no keyword arguments")
        return nn.Sequential(*(_build(arg, names) for arg in node.args))
    cls, params = CONSTRUCTORS[ctor]
    if len(node.args) > len(params):
        raise ConfigError(f"{ctor} takes at most {len(params)} positional arguments")
    kwargs: dict[str, Any] = {}
    for param, arg in zip(params, node.args):
        kwargs[param] = _literal(arg, f"{ctor} argument {param}")
    for kw in node.keywords:
        if kw.arg is None or kw.arg not in params:
            raise ConfigError(f"{ctor} has no parameter {kw.arg!r}")
        if kw.arg in kwargs:
            raise ConfigError(f"{ctor} got {kw.arg!r} twice")
        kwargs[kw.arg] = _literal(kw.value, f"{ctor} argument {kw.arg}")
    if kwargs.get("padding_mode", "zeros") != "zeros":
        raise ConfigError(f"{ctor}: only padding_mode='zeros' is supported")
    if ctor == "ReLU":
        kwargs["inplace"] = False  # as the package sets every module of the network
    try:
        return cls(**kwargs)
    except (TypeError, ValueError) as err:
        raise ConfigError(f"{ctor}({', '.join(f'{k}={v!r}' for k, v in kwargs.items())}): {err}") from None


def build_predictor_expression(expression: str, imports: list[str] | None) -> nn.Module:
    """The module a predictor expression describes, built without evaluating any code."""
    try:
        tree = ast.parse(expression.strip(), mode="eval")
    except SyntaxError as err:
        raise ConfigError(f"predictor is not a Python expression ({err.msg})") from None
    return _build(tree.body, imported_names(imports))


def default_predictor(src: tuple[int, int, int], target: tuple[int, int, int]) -> nn.Sequential:
    """The package's rule for a PCoder without a predictor: a bilinear upsample by the ratio
    of the spatial sizes when they differ (align_corners off), then a 3x3 transposed
    convolution, stride 1, padding 1, from this level's channels to the level below's."""
    layers: list[nn.Module] = []
    if src[1:] != target[1:]:
        factor = (target[1] / src[1], target[2] / src[2])
        layers.append(nn.Upsample(scale_factor=factor, mode="bilinear", align_corners=False))
    layers.append(nn.ConvTranspose2d(src[0], target[0], kernel_size=3, stride=1, padding=1))
    return nn.Sequential(*layers)
