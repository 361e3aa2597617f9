"""Feedback (prediction) modules D_i and their exportable form with an exact adjoint.

Autograd does not export to ONNX, so `FeedbackGraph` computes the prediction, the per-sample
error and the error gradient with forward operators only: each supported layer is paired with
its adjoint (conv <-> transposed conv with the same weight, ReLU mask, separable interpolation
matrices for upsampling).

Transposed convolutions are exported in the form onnxruntime runs fastest on CPU, with the same
numbers: at stride 1 as a plain convolution with the flipped kernel, at stride s as one
stride-1 convolution on the input grid producing all s x s output phases, followed by a
depth-to-space rearrangement (BENCHMARKS.md, section 0, has the measurements).
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

Shape = tuple[int, int, int]  # (C, H, W) of one sample


def build_predictor(layers: list[dict[str, Any]], in_channels: int, target: Shape) -> nn.Sequential:
    """D_i from its config: maps C_i channels to a prediction shaped like the level below."""
    last_conv = max(j for j, layer in enumerate(layers) if layer["type"] in ("conv", "conv_transpose"))
    modules: list[nn.Module] = []
    channels = in_channels
    for j, layer in enumerate(layers):
        kind = layer["type"]
        if kind in ("conv", "conv_transpose"):
            out = int(layer.get("out", target[0] if j == last_conv else channels))
            cls = nn.Conv2d if kind == "conv" else nn.ConvTranspose2d
            extra = {"output_padding": int(layer.get("output_padding", 0))} if kind == "conv_transpose" else {}
            modules.append(
                cls(
                    channels,
                    out,
                    kernel_size=int(layer.get("kernel", 3)),
                    stride=int(layer.get("stride", 1)),
                    padding=int(layer.get("padding", 1)),
                    bias=bool(layer.get("bias", True)),
                    **extra,
                )
            )
            channels = out
        elif kind == "relu":
            modules.append(nn.ReLU())
        elif kind == "upsample":
            mode = layer.get("mode", "bilinear")
            align = False if mode == "bilinear" else None
            if "scale_factor" in layer:
                modules.append(nn.Upsample(scale_factor=float(layer["scale_factor"]), mode=mode, align_corners=align))
            else:
                size = tuple(layer.get("size", target[1:]))
                modules.append(nn.Upsample(size=size, mode=mode, align_corners=align))
        else:  # config.py has already refused anything else
            raise ValueError(f"unsupported predictor layer {kind!r}")
    return nn.Sequential(*modules)


def leaf_layers(module: nn.Module) -> list[nn.Module]:
    if isinstance(module, nn.Sequential):
        return [leaf for child in module for leaf in leaf_layers(child)]
    if isinstance(module, nn.Identity):
        return []
    if isinstance(module, (nn.Conv2d, nn.ConvTranspose2d, nn.ReLU, nn.Upsample)):
        return [module]
    raise ValueError(
        f"predictor layer {type(module).__name__} has no exportable adjoint; "
        "supported: Conv2d, ConvTranspose2d, ReLU, Upsample (nearest/bilinear), Sequential"
    )


def interpolation_matrix(n_in: int, upsample: nn.Upsample, axis: int, n_out: int) -> torch.Tensor:
    """A (n_out x n_in) with interpolate(x) == A @ x along one axis (torch's separable kernel)."""
    basis = torch.eye(n_in, dtype=torch.float64).reshape(n_in, 1, n_in)
    mode = "linear" if upsample.mode == "bilinear" else "nearest"
    kwargs: dict[str, Any] = {"mode": mode}
    if mode == "linear":
        kwargs["align_corners"] = bool(upsample.align_corners)
    if upsample.size is not None:
        kwargs["size"] = n_out
    else:
        sf = upsample.scale_factor
        kwargs["scale_factor"] = float(sf[axis] if isinstance(sf, tuple) else sf)
    columns = F.interpolate(basis, **kwargs)
    if columns.shape[-1] != n_out:
        raise ValueError(f"upsample along axis {axis} gives {columns.shape[-1]}, expected {n_out}")
    return columns.reshape(n_in, n_out).T.contiguous()


class FeedbackGraph(nn.Module):
    """(r_i, r_{i-1}) -> (p_i, e_i per sample, g_i = d e_i / d r_i), with forward ops only."""

    def __init__(self, predictor: nn.Module, in_shape: Shape, target_shape: Shape, scaled: bool = True):
        """`scaled`: the gradient output is d e_i / d r_i; without it, that divided by the
        constant 2 / |p_i|, for a caller that folds the constant into its own weights."""
        super().__init__()
        self.scaled = scaled
        self.layers = nn.ModuleList(leaf_layers(predictor))
        self.target_shape = target_shape
        self.interp: list[tuple[str, str] | None] = []
        self.phases = nn.ModuleDict()
        x = torch.zeros(1, *in_shape)
        with torch.no_grad():
            for k, layer in enumerate(self.layers):
                y = layer(x)
                if isinstance(layer, nn.Upsample):
                    ah = interpolation_matrix(x.shape[2], layer, 0, y.shape[2]).float()
                    aw = interpolation_matrix(x.shape[3], layer, 1, y.shape[3]).float()
                    self.register_buffer(f"interp_h{k}", ah)
                    self.register_buffer(f"interp_w{k}", aw)
                    self.interp.append((f"interp_h{k}", f"interp_w{k}"))
                else:
                    self.interp.append(None)
                if isinstance(layer, (nn.Conv2d, nn.ConvTranspose2d)) and _plain_stride1(layer):
                    # Flipped once here, so the exported graph holds the kernel as a constant.
                    self.register_buffer(f"flipped{k}", layer.weight.detach().flip(2, 3).transpose(0, 1).contiguous())
                elif isinstance(layer, (nn.Conv2d, nn.ConvTranspose2d)):
                    # A strided transposed convolution: the prediction of a ConvTranspose2d, the
                    # gradient of a Conv2d.
                    forward = isinstance(layer, nn.ConvTranspose2d)
                    split = PhaseSplitTransposed.of(
                        layer.weight,
                        layer.bias if forward else None,
                        layer,
                        x.shape[2:] if forward else y.shape[2:],
                        y.shape[2:] if forward else x.shape[2:],
                    )
                    if split is not None:
                        self.phases[str(k)] = split
                x = y
        if tuple(x.shape[1:]) != tuple(target_shape):
            raise ValueError(f"predictor output {tuple(x.shape[1:])} does not match the level below {target_shape}")
        self.elements = int(x[0].numel())

    def _forward_layer(self, k: int, x: torch.Tensor) -> torch.Tensor:
        layer = self.layers[k]
        names = self.interp[k]
        if names is not None:
            ah, aw = getattr(self, names[0]), getattr(self, names[1])
            return torch.matmul(torch.matmul(ah, x), aw.t())
        if isinstance(layer, nn.ConvTranspose2d) and _plain_stride1(layer):
            y = _transposed_as_conv(x, getattr(self, f"flipped{k}"), layer.padding)
            return y if layer.bias is None else y + layer.bias.view(1, -1, 1, 1)
        if isinstance(layer, nn.ConvTranspose2d) and str(k) in self.phases:
            return self.phases[str(k)](x)
        return layer(x)

    def _adjoint_layer(self, k: int, g: torch.Tensor, x_in: torch.Tensor, x_out: torch.Tensor) -> torch.Tensor:
        layer = self.layers[k]
        names = self.interp[k]
        if names is not None:
            ah, aw = getattr(self, names[0]), getattr(self, names[1])
            return torch.matmul(torch.matmul(ah.t(), g), aw)
        if isinstance(layer, nn.ReLU):
            # A select, not a multiply by a 0/1 mask: one pass over the tensor instead of two.
            return torch.where(x_out > 0, g, torch.zeros((), dtype=g.dtype))
        if isinstance(layer, nn.Conv2d) and _plain_stride1(layer):
            return _transposed_as_conv(g, getattr(self, f"flipped{k}"), layer.padding)
        if isinstance(layer, nn.Conv2d) and str(k) in self.phases:
            return self.phases[str(k)](g)
        if isinstance(layer, nn.Conv2d):
            # The transposed conv with the same weight; output_padding recovers sizes that the
            # strided forward pass rounded away.
            op = tuple(
                x_in.shape[2 + d]
                - ((g.shape[2 + d] - 1) * layer.stride[d] - 2 * layer.padding[d] + layer.dilation[d] * (layer.kernel_size[d] - 1) + 1)
                for d in range(2)
            )
            return F.conv_transpose2d(
                g, layer.weight, None, layer.stride, layer.padding, op, layer.groups, layer.dilation
            )
        if isinstance(layer, nn.ConvTranspose2d):
            return F.conv2d(g, layer.weight, None, layer.stride, layer.padding, layer.dilation, layer.groups)
        raise AssertionError(f"no adjoint for {type(layer).__name__}")

    def forward(self, r: torch.Tensor, target: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        activations = [r]
        for k in range(len(self.layers)):
            activations.append(self._forward_layer(k, activations[-1]))
        prediction = activations[-1]
        diff = prediction - target
        error = diff.pow(2).flatten(1).mean(1)
        g = diff * (2.0 / self.elements) if self.scaled else diff
        for k in reversed(range(len(self.layers))):
            g = self._adjoint_layer(k, g, activations[k], activations[k + 1])
        return prediction, error, g


def _plain_stride1(layer: nn.Conv2d | nn.ConvTranspose2d) -> bool:
    return (
        layer.stride == (1, 1)
        and layer.dilation == (1, 1)
        and layer.groups == 1
        and getattr(layer, "output_padding", (0, 0)) == (0, 0)
        and all(p <= k - 1 for p, k in zip(layer.padding, layer.kernel_size))
    )


def _transposed_as_conv(x: torch.Tensor, flipped: torch.Tensor, padding: tuple[int, int]) -> torch.Tensor:
    """conv_transpose2d(x, weight, stride 1) as a plain conv2d with the flipped kernel
    (`flipped` = weight.flip(2, 3).transpose(0, 1)).

    The same numbers, but onnxruntime's Conv is several times faster than its ConvTranspose
    on CPU, and this runs in every feedback graph at every timestep.
    """
    kh, kw = flipped.shape[2], flipped.shape[3]
    return F.conv2d(x, flipped, None, 1, (kh - 1 - padding[0], kw - 1 - padding[1]))


class PhaseSplitTransposed(nn.Module):
    """A strided transposed convolution as a stride-1 convolution plus depth-to-space.

    Output position o of conv_transpose2d (stride s, padding p) sums x[i] * w[o + p - s * i];
    the kernel taps that reach the outputs of one phase (o + p) mod s form a sub-kernel of
    ceil(k / s) taps applied to the input grid at stride 1. One convolution computes all s x s
    phases as s^2 x the output channels (the kernel zero-padded to a multiple of s, flipped),
    pixel_shuffle interleaves them, and a slice drops the rows the padding crops. Same
    multiply-accumulates as the transposed convolution when s divides k; onnxruntime's
    ConvTranspose is its own slow kernel on CPU, its Conv is the fast one.
    """

    def __init__(
        self,
        weight: torch.Tensor,
        bias: torch.Tensor | None,
        stride: int,
        pads: tuple[tuple[int, int], ...],
        crop: tuple[tuple[int, int], ...] | None,
    ):
        super().__init__()
        self.stride = stride
        self.pads = pads  # (before, after) of the input, per axis
        self.crop = crop  # (start, length) of the interleaved output per axis; None: all of it
        self.register_buffer("weight", weight)
        self.register_buffer("bias", bias)

    @staticmethod
    def of(
        weight: torch.Tensor,
        bias: torch.Tensor | None,
        layer: nn.Conv2d | nn.ConvTranspose2d,
        in_hw: Any,
        out_hw: Any,
    ) -> "PhaseSplitTransposed | None":
        """The split form of conv_transpose2d(weight (in, out, kh, kw), layer's stride and padding)
        from in_hw to out_hw, or None where it does not apply (groups, dilation, unequal strides,
        padding beyond the kernel)."""
        s = layer.stride[0]
        if layer.stride[1] != s or s < 2 or layer.groups != 1 or layer.dilation != (1, 1):
            return None
        taps, pads, crop, exact = [], [], [], True
        for d in range(2):
            k, p, n_in, n_out = weight.shape[2 + d], layer.padding[d], int(in_hw[d]), int(out_hw[d])
            t = -(-k // s)
            first, last = p // s, (p + n_out - 1) // s  # the phase rows that hold outputs
            before, after = t - 1 - first, last - (n_in - 1)
            if before < 0 or after < 0:
                return None
            taps.append(t)
            pads.append((before, after))
            crop.append((p - s * first, n_out))
            exact = exact and p == s * first and s * (last - first + 1) == n_out
        cin, cout = weight.shape[:2]
        w = F.pad(weight.detach(), (0, s * taps[1] - weight.shape[3], 0, s * taps[0] - weight.shape[2]))
        # [in, out, tap_h, phase_h, tap_w, phase_w] -> pixel_shuffle's channel order out*s*s + phase_h*s + phase_w
        w = w.reshape(cin, cout, taps[0], s, taps[1], s).flip(2, 4)
        w = w.permute(1, 3, 5, 0, 2, 4).reshape(cout * s * s, cin, taps[0], taps[1]).contiguous()
        b = None if bias is None else bias.detach().repeat_interleave(s * s).contiguous()
        return PhaseSplitTransposed(w, b, s, tuple(pads), None if exact else tuple(crop))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        (top, bottom), (left, right) = self.pads
        if top == bottom and left == right:  # the usual case; Conv pads itself
            y = F.conv2d(x, self.weight, self.bias, padding=(top, left))
        else:
            y = F.conv2d(F.pad(x, (left, right, top, bottom)), self.weight, self.bias)
        y = F.pixel_shuffle(y, self.stride)
        if self.crop is not None:
            (h0, h), (w0, w) = self.crop
            y = y[:, :, h0 : h0 + h, w0 : w0 + w]
        return y


def influence_count(predictor: nn.Module, in_shape: Shape) -> int:
    """C_i: how many prediction elements one (central) representation element influences.

    Measured as the package does, by perturbing the central element and counting the outputs
    that change; in float64 and with ReLUs removed, so that the count is the window of D_i's
    weights and not of whichever units a particular input happens to switch off.
    """
    module = _double_copy(predictor)
    gen = torch.Generator().manual_seed(0)
    r = torch.rand(1, *in_shape, generator=gen, dtype=torch.float64) + 0.5
    c, h, w = in_shape
    with torch.no_grad():
        base = module(r)
        r[0, c // 2, h // 2, w // 2] += 1.0
        changed = (module(r) - base).abs() > 1e-12 * max(1.0, float(base.abs().max()))
    return max(1, int(changed.sum()))


def _double_copy(module: nn.Module) -> nn.Module:
    import copy

    clone = copy.deepcopy(module).double().eval()
    for parent in clone.modules():
        for name, child in parent.named_children():
            if isinstance(child, nn.ReLU):
                setattr(parent, name, nn.Identity())
    return clone
