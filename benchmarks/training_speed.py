"""Training cost, measured side by side in one process: advsec's training loop against a plain PyTorch loop.

    python benchmarks/training_speed.py [--samples 12000] [--repeats 3] [--threads 2]

The claim under test: the framework adds nothing but convenience. For standard, fast-AT and PGD-AT training
on Fashion-MNIST with `wong-cnn` (Wong, Rice & Kolter's recipe: batch 100, Adam, cyclic learning rate
peaking at 5e-3 at 40 % of training; fast AT: random start + one step of 1.25 eps; PGD-AT: 10 steps of
eps/4; eps 0.1), one epoch over the first ``--samples`` training images is timed with advsec's
``advsec.train.train`` and with a plain single-file loop written the way the papers' code is. Runs
alternate and the median is reported. advsec's fast AT also runs its overfitting guard (PGD-10 on 256
held-out samples each epoch): that check is real work the plain loop does not do, so it is listed apart.
Needs Fashion-MNIST in $ADVSEC_DATA or ../shared/data.
"""

from __future__ import annotations

import statistics
import time
from dataclasses import replace

import torch
import torch.nn.functional as F
from common import Output, benchmark_parser, parse_benchmark_args, record
from torch import nn

EPS, BATCH, LR = 0.1, 100, 5e-3


def plain_epoch(model: nn.Module, x: torch.Tensor, y: torch.Tensor, method: str, seed: int) -> None:
    """One epoch the way a single-file research script does it."""
    torch.manual_seed(seed)
    optimizer = torch.optim.Adam(model.parameters(), lr=LR)
    batches = -(-len(x) // BATCH)
    order = torch.randperm(len(x))
    model.train()
    for step, start in enumerate(range(0, len(x), BATCH)):
        peak = 0.4 * batches
        lr = LR * (step / peak if step < peak else (batches - step) / (batches - peak))
        for group in optimizer.param_groups:
            group["lr"] = lr
        xb, yb = x[order[start : start + BATCH]], y[order[start : start + BATCH]]
        if method != "standard":
            xb = plain_attack(model, xb, yb, method)
        loss = F.cross_entropy(model(xb), yb)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()


def plain_attack(model: nn.Module, x: torch.Tensor, y: torch.Tensor, method: str) -> torch.Tensor:
    steps, alpha = (1, 1.25 * EPS) if method == "fast-at" else (10, EPS / 4)
    delta = (torch.rand_like(x) * 2 - 1) * EPS
    delta = ((x + delta).clamp(0, 1) - x).requires_grad_(True)
    for _ in range(steps):
        (grad,) = torch.autograd.grad(F.cross_entropy(model(x + delta), y), delta)
        delta = (delta + alpha * grad.sign()).clamp(-EPS, EPS)
        delta = ((x + delta).clamp(0, 1) - x).detach().requires_grad_(True)
    return (x + delta).detach()


def main() -> None:
    parser = benchmark_parser(__doc__)
    parser.add_argument("--samples", type=int, default=12000)
    parser.add_argument("--repeats", type=int, default=3)
    args = parse_benchmark_args(parser)
    say = Output()

    from advsec import registry
    from advsec.data.load import load_dataset
    from advsec.progress import Progress
    from advsec.spec import TrainConfig, make_plugin
    from advsec.train import build_model, train

    fashion = load_dataset("fashion-mnist")
    subset = replace(
        fashion, x_train=fashion.x_train[: args.samples], y_train=fashion.y_train[: args.samples]
    )
    config = TrainConfig(epochs=1, batch_size=BATCH, lr=LR, schedule="cyclic")
    methods = {
        "standard": {},
        "fast-at": {"eps": EPS},
        "pgd-at": {"eps": EPS, "steps": 10, "step_fraction": 0.25},
    }
    say(f"one epoch over {args.samples:,} Fashion-MNIST images, wong-cnn, {args.threads} threads; "
          f"median of {args.repeats} alternating runs")  # fmt: skip
    say(f"{'method':<10} {'plain s':>9} {'advsec s':>9} {'ratio':>7}   notes")
    ratios = {}
    for method, params in methods.items():
        plain_times, ours_times, guard_times = [], [], []
        for repeat in range(args.repeats):
            model = build_model("wong-cnn", fashion, repeat)
            started = time.perf_counter()
            plain_epoch(model, subset.x_train, subset.y_train, method, repeat)
            plain_times.append(time.perf_counter() - started)

            defense = make_plugin(registry.defenses.get(method), params, method)
            model = build_model("wong-cnn", fashion, repeat)
            started = time.perf_counter()
            history = train(model, subset, defense, config, repeat, device=torch.device("cpu"),
                            progress=Progress(quiet=True))  # fmt: skip
            ours_times.append(time.perf_counter() - started)
            if "check" in history[-1]:
                guard_times.append(_time_guard(defense, model, subset))
        plain, ours = statistics.median(plain_times), statistics.median(ours_times)
        guard = statistics.median(guard_times) if guard_times else 0.0
        ratios[method] = (ours - guard) / plain
        note = f"incl. {guard:.2f} s overfitting guard; ratio without it" if guard_times else ""
        say(f"{method:<10} {plain:>9.2f} {ours:>9.2f} {ratios[method]:>7.2f}   {note}")
    say("ratios (advsec ÷ plain, target ≤ 1.15): " + ", ".join(f"{m} {r:.2f}" for m, r in ratios.items()))
    record("training_speed", say.lines)


def _time_guard(defense, model: nn.Module, dataset) -> float:
    """The cost of one guard check, measured alone, to separate it from the training loop's overhead."""
    x, y = dataset.x_train[:256], dataset.y_train[:256]
    started = time.perf_counter()
    defense.check(model, x, y, bounds=dataset.bounds, generator=torch.Generator().manual_seed(0))
    return time.perf_counter() - started


if __name__ == "__main__":
    main()
