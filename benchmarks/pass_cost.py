"""What one network pass of an attack costs, each way advsec can make it, measured interleaved in one process.

    python benchmarks/pass_cost.py [--rounds 9] [--threads 1]

Needs no data: a pass's cost does not depend on the weights, so the built-in architectures are built
untrained (seed 0) for MNIST-shaped (1×28×28) and CIFAR-shaped (3×32×32) inputs. Two tables:

1. a gradient attack's pass (forward, loss, gradient with respect to the input; batch 400, in float32 and,
   where the CPU computes it natively, bfloat16 as advsec's searches run): torch's own backward against
   advsec's split input gradient of strided convolutions over few channels (advsec.input_gradient);
2. a query attack's pass (forward under torch.inference_mode; batch 400): the network eager, frozen
   (advsec.frozen) as torch's matrix products leave its linear layers, and frozen with them through oneDNN.

Each round times every way once, in turn, so that a slow moment of a shared machine falls on all of them;
the table gives the median over rounds of microseconds per sample, and of each way's ratio to the first.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Iterator

import torch
import torch.nn.functional as F
from common import Output, benchmark_parser, parse_benchmark_args, record

BATCH = 400
SHAPES = {"mnist": (1, 28, 28), "cifar": (3, 32, 32)}
MODELS = ("wong-cnn", "lenet", "madry-cnn")  # wong-cnn's convolutions are strided, the others' not


def main() -> None:
    parser = benchmark_parser(__doc__)
    parser.add_argument("--rounds", type=int, default=9, help="interleaved rounds, the medians' sample")
    args = parse_benchmark_args(parser)
    say = Output()

    from advsec.precision import native_bfloat16

    precisions = ["float32"] + (["bfloat16"] if native_bfloat16() else [])
    say(f"batch {BATCH}, {args.threads} threads, {args.rounds} interleaved rounds, untrained networks\n")
    say("1. gradient pass (forward, cross-entropy, input gradient): torch's backward vs the split")
    say(f"   {'network':22s} {'precision':9s} {'torch µs':>9s} {'split µs':>9s} {'ratio':>6s}")
    for label, network, x, y in _networks():
        for precision in precisions:
            ways = [_gradient_pass(network, x, y, precision, cheap) for cheap in (False, True)]
            (torch_us, split_us), (_, ratio) = _interleaved(ways, args.rounds)
            say(f"   {label:22s} {precision:9s} {torch_us:9.1f} {split_us:9.1f} {ratio:6.2f}")
    say("\n2. query pass (forward under inference mode): eager, frozen, frozen with oneDNN linear layers")
    say(f"   {'network':22s} {'eager µs':>9s} {'frozen µs':>10s} {'+oneDNN µs':>11s} {'ratio':>6s}")
    for label, network, x, _ in _networks():
        ways = [_query_pass(network, x, variant) for variant in ("frozen", "onednn", "eager")]
        (frozen, onednn, eager), (_, ratio, _) = _interleaved(ways, args.rounds)
        say(f"   {label:22s} {eager:9.1f} {frozen:10.1f} {onednn:11.1f} {ratio:6.2f}")
    say("\nratio: the split's (1) or the oneDNN copy's (2) median time over the other's, round by round")
    record("pass_cost", say.lines)


def _networks() -> Iterator[tuple[str, torch.nn.Module, torch.Tensor, torch.Tensor]]:
    """Each built-in architecture for each input shape, untrained (seed 0), with a batch to pass."""
    import advsec.registry as registry

    for shape_name, shape in SHAPES.items():
        for name in MODELS:
            torch.manual_seed(0)
            network = registry.models.get(name)(shape, 10).eval()
            network.requires_grad_(False)
            yield f"{name} {shape_name}", network, torch.rand(BATCH, *shape), torch.randint(0, 10, (BATCH,))


def _gradient_pass(
    network: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, precision: str, cheap: bool
) -> Callable[[], None]:
    from contextlib import nullcontext

    from advsec.input_gradient import cheap_input_gradients

    def run() -> None:
        x_adv = x.clone().requires_grad_(True)
        with cheap_input_gradients() if cheap else nullcontext():
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=precision == "bfloat16"):
                logits = network(x_adv).float()
            torch.autograd.grad(F.cross_entropy(logits, y), x_adv)

    return run


def _query_pass(network: torch.nn.Module, x: torch.Tensor, variant: str) -> Callable[[], None]:
    from advsec.frozen import freeze, with_onednn_linears

    candidate = {"eager": None, "frozen": network, "onednn": with_onednn_linears(network)}[variant]
    with torch.no_grad():
        expected = network(x[:64])
    frozen = None if candidate is None else freeze(candidate, x[:64], expected)
    forward = network if frozen is None else frozen

    def run() -> None:
        with torch.inference_mode():
            forward(x)

    return run


def _interleaved(ways: list[Callable[[], None]], rounds: int) -> tuple[list[float], list[float]]:
    """Median µs per sample of each way, and median ratio of each to the first, over interleaved rounds."""
    for way in ways:
        way()  # warm: oneDNN builds its kernels on a shape's first pass
    times: list[list[float]] = [[] for _ in ways]
    for _ in range(rounds):
        for way, spent in zip(ways, times, strict=True):
            started = time.perf_counter()
            for _ in range(3):
                way()
            spent.append((time.perf_counter() - started) / 3 / BATCH * 1e6)
    medians = [statistics.median(spent) for spent in times]
    ratios = [statistics.median(a / b for a, b in zip(spent, times[0], strict=True)) for spent in times]
    return medians, ratios


if __name__ == "__main__":
    main()
