"""A frozen copy of a network for the passes that need no gradient.

Query attacks (Square) spend almost all their time in forward passes under ``torch.inference_mode``. On the
CPU, TorchScript's ``freeze`` + ``optimize_for_inference`` fuses each convolution with its activation and
keeps the weights in oneDNN's own layout, which makes those passes much cheaper for convolutional networks
(``benchmarks/autoattack_race.py`` measures the effect on the whole evaluation). The copy is used only
where it provably computes the same function as the network, and never for a verdict:

- it is made for networks with convolutions only: the fusion is what pays; on an MLP the scripted calls
  cost more than they save (``benchmarks/pass_cost.py`` times convolutional networks' passes eager and
  frozen: docs/results.md, pass_cost);
- it is traced once the passes it would serve are many (``after`` samples through the network under
  inference mode: a short search never earns a trace back), and refused if tracing warns that the
  network's control flow depends on its input (a trace would freeze one branch) or if it fails;
- its outputs must match the network's on that batch (float tolerance: fused kernels round differently);
- its float32 linear layers compute through oneDNN rather than MKL where that copy traces and agrees
  (otherwise the network is frozen as it is);
- a pass whose parameters are not the ones it froze (``torch.func.functional_call`` swapping weights in, as
  weight-noise defenses do) goes to the network itself.

Scoring runs under ``torch.no_grad``, not inference mode, so every recorded verdict comes from the network.

TorchScript is deprecated in favour of ``torch.compile``, whose first compile of a small CNN on this
project's 2-core machine takes longer than the query attack it would speed up; a trace and freeze take a
small share of that.
"""

from __future__ import annotations

import copy
import warnings

import torch
from torch import nn

_TOLERANCE = 1e-4  # relative to the logits' scale: fused kernels sum in another order, nothing more
_CONVOLUTIONS = (nn.Conv1d, nn.Conv2d, nn.Conv3d)
_AFTER = 50_000  # samples before the copy is made: about a trace's cost in a small CNN's passes


class FrozenTwin:
    """The network's frozen copy, made once it pays; :meth:`__call__` returns None for "use the network"."""

    def __init__(self, network: nn.Module, *, after: int = _AFTER) -> None:
        self.network = network
        self.after = after  # samples still to pass through the network before the copy is made
        self.frozen: torch.jit.ScriptModule | None = None
        self.refused = not any(isinstance(m, _CONVOLUTIONS) for m in network.modules())
        self.weights: tuple[int, ...] = ()

    def __call__(self, x: torch.Tensor) -> torch.Tensor | None:
        if self.refused or x.device.type != "cpu" or not torch.is_inference_mode_enabled():
            return None
        if self.frozen is None:
            self.after -= len(x)
            if self.after > 0:
                return None
            self._build(x)
            if self.frozen is None:
                return None
        if self._identities() != self.weights:
            return None
        return self.frozen(x)

    def _identities(self) -> tuple[int, ...]:
        return tuple(t.data_ptr() for t in (*self.network.parameters(), *self.network.buffers()))

    def _build(self, x: torch.Tensor) -> None:
        example = x[: max(1, min(len(x), 64))].clone()
        with torch.inference_mode(False), torch.no_grad():
            try:
                expected, again = self.network(example), self.network(example)
            except Exception:  # the search will meet the same error from the network itself
                expected, again = None, None
        # A network that answers the same input differently keeps a state no constant-folded copy can follow.
        if expected is not None and torch.equal(expected, again):
            for candidate in (with_onednn_linears(self.network), self.network):
                frozen = None if candidate is None else freeze(candidate, example, expected)
                if frozen is not None:
                    self.frozen, self.weights = frozen, self._identities()
                    return
        self.refused = True


def freeze(
    candidate: nn.Module, example: torch.Tensor, expected: torch.Tensor
) -> torch.jit.ScriptModule | None:
    """``candidate`` traced, frozen and fused, if that gives ``expected`` (the network's logits) on
    ``example`` (``candidate`` is the network or a copy of it)."""
    with torch.inference_mode(False), torch.no_grad():
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("error", torch.jit.TracerWarning)
                warnings.simplefilter("ignore", DeprecationWarning)  # see the module's last paragraph
                traced = torch.jit.trace(candidate, example[:2], check_trace=False)
                frozen = torch.jit.optimize_for_inference(torch.jit.freeze(traced.eval()))
                found = frozen(example)
        except Exception:  # whatever TorchScript cannot take simply stays eager
            return None
    tolerance = _TOLERANCE * max(1.0, float(expected.abs().max()))
    if expected.shape != found.shape or not torch.allclose(found, expected, rtol=0, atol=tolerance):
        return None
    return frozen


def with_onednn_linears(network: nn.Module) -> nn.Module | None:
    """A copy of ``network`` whose float32 ``nn.Linear`` layers compute through oneDNN; None if it has none
    or cannot be copied. Freezing fuses convolutions into oneDNN but leaves a linear layer to torch's
    matrix product, which goes through MKL: on AMD processors (this project's machine) MKL's float32
    products run markedly slower than oneDNN's, and a network's dense head is a large share of its pass."""
    if not any(type(m) is nn.Linear and m.weight.dtype == torch.float32 for m in network.modules()):
        return None
    try:
        copied = copy.deepcopy(network)
    except Exception:  # a network that will not be copied is frozen as it is
        return None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # TorchScript's, as above
        from torch.utils.mkldnn import MkldnnLinear
    for parent in list(copied.modules()):
        for name, child in list(parent.named_children()):
            if type(child) is nn.Linear and child.weight.dtype == torch.float32:
                setattr(parent, name, MkldnnLinear(child, torch.float32))
    return copied
