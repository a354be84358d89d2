"""The cheaper input gradient of strided convolutions: torch's gradient, taken only where it may."""

import random

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from advsec.input_gradient import FEW_CHANNELS, cheap_input_gradients
from advsec.runtime import CountingModel


def _input_gradient(conv: nn.Module, x: torch.Tensor, grad_output: torch.Tensor, cheap: bool) -> torch.Tensor:
    x = x.clone().requires_grad_(True)
    with cheap_input_gradients() if cheap else torch.enable_grad():
        out = conv(x)
    assert (type(out.grad_fn).__name__ == "_StridedConvBackward") == cheap  # the split, or torch's own
    (grad,) = torch.autograd.grad(out, x, grad_output)
    return grad


def test_the_split_gives_torchs_gradient_for_any_stride_kernel_and_padding():
    rng = random.Random(0)
    for case in range(60):
        channels, kernel = rng.randint(1, FEW_CHANNELS), (rng.randint(1, 5), rng.randint(1, 5))
        stride = (rng.randint(1, 3), rng.randint(2, 3)) if case % 2 else rng.randint(2, 4)
        padding = (rng.randint(0, 3), rng.randint(0, 3))
        size = (rng.randint(max(kernel[0], 5), 17), rng.randint(max(kernel[1], 5), 17))
        torch.manual_seed(case)
        conv = nn.Conv2d(channels, rng.randint(1, 9), kernel, stride, padding, bias=case % 3 > 0).double()
        conv.requires_grad_(False)
        x = torch.rand(rng.randint(1, 6), channels, *size, dtype=torch.float64)
        grad_output = torch.randn_like(conv(x))
        cheap, exact = (_input_gradient(conv, x, grad_output, cheap) for cheap in (True, False))
        torch.testing.assert_close(cheap, exact, rtol=1e-10, atol=1e-10, msg=f"case {case}: {conv}, {size}")


def test_under_bfloat16_autocast_it_agrees_with_torchs_to_bfloat16s_resolution():
    torch.manual_seed(0)
    conv = nn.Conv2d(3, 16, 4, stride=2, padding=1).requires_grad_(False)
    x = torch.rand(8, 3, 28, 28)
    grad_output = torch.randn(8, 16, 14, 14, dtype=torch.bfloat16)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        cheap, exact = (_input_gradient(conv, x, grad_output, cheap) for cheap in (True, False))
    assert cheap.dtype == x.dtype == exact.dtype
    torch.testing.assert_close(cheap, exact, rtol=0, atol=0.02 * exact.abs().max().item())


@pytest.mark.parametrize(
    "conv, weights_learn",
    [
        (nn.Conv2d(3, 8, 3, stride=2), True),  # training: the weights need their gradient too
        (nn.Conv2d(3, 8, 3, stride=1), False),  # stride 1: torch's backward is already a convolution
        (nn.Conv2d(16, 8, 3, stride=2), False),  # wide input: the split does not pay
        (nn.Conv2d(4, 8, 3, stride=2, groups=2), False),
        (nn.Conv2d(3, 8, 3, stride=2, dilation=2), False),
    ],
)
def test_other_convolutions_keep_torchs_backward(conv: nn.Conv2d, weights_learn: bool):
    conv.requires_grad_(weights_learn)
    x = torch.rand(2, conv.in_channels, 12, 12, requires_grad=True)
    with cheap_input_gradients():
        out = conv(x)
    assert type(out.grad_fn).__name__ == "ConvolutionBackward0"
    out.sum().backward()
    assert x.grad is not None and (conv.weight.grad is not None) == weights_learn


def test_an_attacks_gradient_pass_takes_the_split_and_gets_the_same_gradient():
    torch.manual_seed(0)
    network = nn.Sequential(
        nn.Conv2d(1, 8, 4, stride=2, padding=1), nn.ReLU(), nn.Flatten(), nn.Linear(8 * 14 * 14, 10)
    ).eval()
    network.requires_grad_(False)
    x, y = torch.rand(16, 1, 28, 28), torch.randint(0, 10, (16,))
    gradients = []
    for model in (CountingModel(network), network):
        x_adv = x.clone().requires_grad_(True)
        loss = F.cross_entropy(model(x_adv), y)
        gradients.append(torch.autograd.grad(loss, x_adv)[0])
        if model is not network:
            assert _records_split(loss)
    torch.testing.assert_close(gradients[0], gradients[1], rtol=1e-5, atol=1e-7)


def _records_split(loss: torch.Tensor) -> bool:
    """Whether the graph behind ``loss`` holds the split's backward."""
    seen, todo = set(), [loss.grad_fn]
    while todo:
        node = todo.pop()
        if node is None or node in seen:
            continue
        seen.add(node)
        if type(node).__name__ == "_StridedConvBackward":
            return True
        todo += [child for child, _ in node.next_functions]
    return False
