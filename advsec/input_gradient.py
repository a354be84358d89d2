"""The input gradient of a strided convolution over few channels, computed another, exact way.

An attack's gradient pass needs the loss's gradient with respect to the input only. For an image network's
first layer (one to four input channels, a strided convolution) oneDNN's backward-data kernel is the
slowest step of the whole pass on the CPU: several times the cost of the layer's forward, more than the
rest of the backward together. The same gradient is a stride-1 convolution of the output's gradient:
split the kernel into its stride × stride phases (tap ``k = s·j + a`` belongs to phase ``a``), correlate the
output's gradient with each phase's taps reversed, and interleave the phases (depth to space). That is a
forward convolution, which oneDNN runs fast, plus one reshuffle. On wider inputs the split pays nothing or
costs (the phases' reshuffle grows with the channels), so only convolutions over at most
:data:`FEW_CHANNELS` input channels take it; ``benchmarks/pass_cost.py`` measures both ways.

Inside :func:`cheap_input_gradients`, a ``conv2d`` on the CPU whose input needs a gradient and whose
weights do not (an attack's pass, never training) records this backward instead of torch's; every other
call, and every other operation, is torch's own.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F
from torch.overrides import TorchFunctionMode

FEW_CHANNELS = 4  # gray, RGB, RGBA: an image network's first layer


def _pair(value: int | tuple[int, ...]) -> tuple[int, int]:
    return (value, value) if isinstance(value, int) else (value[0], value[-1])


def strided_input_gradient(
    grad_output: torch.Tensor,
    weight: torch.Tensor,
    input_size: tuple[int, int],
    stride: tuple[int, int],
    padding: tuple[int, int],
) -> torch.Tensor:
    """∂L/∂input of ``conv2d(input, weight, stride=stride, padding=padding)`` given ∂L/∂output (groups 1,
    dilation 1), as one stride-1 convolution of ``grad_output`` and a depth-to-space interleave."""
    (sh, sw), (ph, pw) = stride, padding
    out_channels, in_channels, kh, kw = weight.shape
    jh, jw = -(-kh // sh), -(-kw // sw)  # taps per phase; the kernel is zero-padded to a whole number
    taps = F.pad(weight.to(grad_output.dtype), (0, jw * sw - kw, 0, jh * sh - kh))
    phases = (
        taps.view(out_channels, in_channels, jh, sh, jw, sw)
        .flip(2, 4)
        .permute(1, 3, 5, 0, 2, 4)
        .reshape(in_channels * sh * sw, out_channels, jh, jw)
    )
    # Padded by jh - 1, jw - 1 (and at the far edges up to the last input row and column a stride left out),
    # the convolution reaches every position of the input.
    short_h = -(-(ph + input_size[0]) // sh) - (grad_output.shape[-2] + jh - 1)
    short_w = -(-(pw + input_size[1]) // sw) - (grad_output.shape[-1] + jw - 1)
    if short_h > 0 or short_w > 0:
        grad_output = F.pad(grad_output, (0, max(short_w, 0), 0, max(short_h, 0)))
    split = F.conv2d(grad_output, phases, padding=(jh - 1, jw - 1))
    n, _, th, tw = split.shape
    interleaved = split.view(n, in_channels, sh, sw, th, tw).permute(0, 1, 4, 2, 5, 3)
    padded = interleaved.reshape(n, in_channels, th * sh, tw * sw)
    return padded[..., ph : ph + input_size[0], pw : pw + input_size[1]]


class _StridedConv(torch.autograd.Function):
    """``conv2d`` whose backward returns the input's gradient only, by :func:`strided_input_gradient`."""

    @staticmethod
    def forward(
        ctx: Any, x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None, stride: tuple[int, int],
        padding: tuple[int, int],
    ) -> torch.Tensor:  # fmt: skip
        ctx.save_for_backward(weight)
        ctx.geometry = (tuple(x.shape[-2:]), x.dtype, stride, padding)
        return F.conv2d(x, weight, bias, stride, padding)

    @staticmethod
    def backward(ctx: Any, grad_output: torch.Tensor) -> tuple[torch.Tensor | None, ...]:
        (weight,) = ctx.saved_tensors
        size, dtype, stride, padding = ctx.geometry
        grad = strided_input_gradient(grad_output, weight, size, stride, padding)
        return grad.to(dtype), None, None, None, None


def _conv2d_arguments(args: tuple[Any, ...], kwargs: dict[str, Any]) -> dict[str, Any]:
    names = ("input", "weight", "bias", "stride", "padding", "dilation", "groups")
    given = dict(zip(names, args, strict=False)) | kwargs
    return {"bias": None, "stride": 1, "padding": 0, "dilation": 1, "groups": 1} | given


def _takes_the_split(a: dict[str, Any]) -> bool:
    x, weight, bias = a["input"], a["weight"], a["bias"]
    return (
        x.requires_grad
        and not weight.requires_grad
        and (bias is None or not bias.requires_grad)
        and x.device.type == "cpu"
        and x.dim() == 4
        and weight.shape[1] <= FEW_CHANNELS
        and a["groups"] == 1
        and _pair(a["dilation"]) == (1, 1)
        and not isinstance(a["padding"], str)
        and max(_pair(a["stride"])) > 1
    )


class _CheapInputGradients(TorchFunctionMode):
    def __torch_function__(
        self,
        func: Callable[..., Any],
        types: Any,
        args: tuple[Any, ...] = (),
        kwargs: dict[str, Any] | None = None,
    ) -> Any:
        kwargs = kwargs or {}
        if func is torch.conv2d:
            a = _conv2d_arguments(args, kwargs)
            if _takes_the_split(a):
                stride, padding = _pair(a["stride"]), _pair(a["padding"])
                return _StridedConv.apply(a["input"], a["weight"], a["bias"], stride, padding)
        return func(*args, **kwargs)


def cheap_input_gradients() -> TorchFunctionMode:
    """Inside, strided convolutions over few channels record the cheaper input gradient (module docstring)."""
    return _CheapInputGradients()
