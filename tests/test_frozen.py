"""The frozen copy query attacks run through: the same function as the network, or not used at all."""

import torch
from torch import nn
from torch.func import functional_call

from advsec.attacks.square import Square
from advsec.frozen import FrozenTwin
from advsec.runtime import CountingModel
from advsec.threat import ThreatModel


def _conv_net(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(
        nn.Conv2d(1, 8, 3, stride=2, padding=1), nn.ReLU(), nn.Flatten(), nn.Linear(8 * 4 * 4, 10)
    ).eval()


def _inputs(n: int = 32, seed: int = 1) -> torch.Tensor:
    return torch.rand(n, 1, 8, 8, generator=torch.Generator().manual_seed(seed))


class Branching(nn.Module):
    """Control flow on the input's values: a trace would freeze whichever branch its example took."""

    def __init__(self) -> None:
        super().__init__()
        self.net = _conv_net()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x) if x.mean() > 0.5 else -self.net(x)


class Counter(nn.Module):
    """State kept outside tensors: every call answers differently, which no trace can capture."""

    def __init__(self) -> None:
        super().__init__()
        self.net, self.calls = _conv_net(), 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        return self.net(x) + self.calls


class Flipping(nn.Module):
    """State kept outside tensors that a trace does capture: the sign flips on every call, so a copy traced
    on an odd call agrees with the first answer while the network's next answer is the negation."""

    def __init__(self) -> None:
        super().__init__()
        self.net, self.sign = _conv_net(), 1.0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.sign = -self.sign
        return self.sign * self.net(x)


def test_the_frozen_copy_computes_the_networks_function_under_inference_mode_only():
    net, x = _conv_net(), _inputs()
    twin = FrozenTwin(net, after=0)
    assert twin(x) is None  # outside inference mode: the network answers (scoring runs here)
    with torch.inference_mode():
        found = twin(x)
        other = twin(_inputs(7, seed=2))  # another batch size than the one it was built from
    assert twin.frozen is not None and not twin.refused
    with torch.no_grad():
        torch.testing.assert_close(found, net(x), rtol=0, atol=1e-4)
        torch.testing.assert_close(other, net(_inputs(7, seed=2)), rtol=0, atol=1e-4)


def test_the_copys_linear_layers_compute_through_onednn_and_the_network_is_left_as_it_was():
    net, x = _conv_net(), _inputs()
    twin = FrozenTwin(net, after=0)
    with torch.inference_mode():
        found = twin(x)
    assert "mkldnn_linear" in str(twin.frozen.graph)
    assert type(net[3]) is nn.Linear
    with torch.no_grad():
        torch.testing.assert_close(found, net(x), rtol=0, atol=1e-4)


def test_the_copy_is_made_only_once_enough_passes_would_go_through_it():
    twin = FrozenTwin(_conv_net(), after=100)
    with torch.inference_mode():
        assert twin(_inputs(64)) is None and twin.frozen is None  # 36 samples still to go
        assert twin(_inputs(64)) is not None and twin.frozen is not None


def test_a_network_without_convolutions_keeps_its_own_passes():
    mlp = nn.Sequential(nn.Flatten(), nn.Linear(64, 32), nn.ReLU(), nn.Linear(32, 10)).eval()
    twin = FrozenTwin(mlp, after=0)
    with torch.inference_mode():
        assert twin(_inputs()) is None
    assert twin.refused and twin.frozen is None


def test_networks_a_trace_cannot_copy_faithfully_are_refused():
    for network in (Branching(), Counter(), Flipping()):
        twin = FrozenTwin(network.eval(), after=0)
        with torch.inference_mode():
            assert twin(_inputs()) is None, type(network).__name__
        assert twin.refused and twin.frozen is None, type(network).__name__


def test_swapped_in_weights_reach_the_network_not_the_copy():
    net, x = _conv_net(), _inputs()
    counted = CountingModel(net, frozen=True)
    counted.twin.after = 0
    with torch.inference_mode():
        counted(x)  # builds the copy
        assert counted.twin.frozen is not None
        shifted = {name: w + 1.0 for name, w in net.named_parameters()}
        swapped = functional_call(counted, {f"model.{k}": v for k, v in shifted.items()}, (x,))
    with torch.no_grad():
        torch.testing.assert_close(swapped, functional_call(net, shifted, (x,)))


def test_square_through_the_frozen_copy_breaks_what_it_breaks_through_the_network():
    net, x = _conv_net(), _inputs(64)
    with torch.no_grad():
        y = net(x).argmax(1)
    threat = ThreatModel("linf", 0.1)
    runs = {}
    for frozen in (False, True):
        counted = CountingModel(net, frozen=frozen)
        if counted.twin is not None:
            counted.twin.after = 64 * 10  # made after ten queries: a search that starts on the network
        adv = Square(queries=200).perturb(counted, x, y, threat, generator=torch.Generator().manual_seed(0))
        assert (adv - x).abs().amax() <= 0.1 + 1e-6 and adv.min() >= 0 and adv.max() <= 1
        with torch.no_grad():
            runs[frozen] = net(adv).argmax(1) != y
        assert (counted.twin is not None and counted.twin.frozen is not None) == frozen
    # Fused kernels round differently, so an acceptance decided by the last bit may differ; the outcome not.
    assert runs[True].sum() > 0 and abs(int(runs[True].sum()) - int(runs[False].sum())) <= 2
