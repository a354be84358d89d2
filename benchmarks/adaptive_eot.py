"""Is advsec's adaptive stage for random defenses as strong as a long EOT-PGD?

    python benchmarks/adaptive_eot.py [--samples 500] [--steps 100] [--draws 40] [--repeats 5]

On MNIST wong-cnn at linf ε 0.1, three random defenses (weight noise σ 0.2, a three-member random
ensemble, random resize-and-pad) are evaluated twice on the same first test samples:
- advsec, as a spec runs it: PGD-20 naively, then adaptively with `eot_draws = "auto"` (PGD-20 and APGD-CE
  through an expectation whose draws it measures per defense), escalation on, every prediction scored over
  `repeats` draws; the cell's robust accuracy, its time and its counted passes;
- a reference EOT-PGD: `--steps` steps of 2.5 ε / steps from a random start, each gradient the expectation
  over `--draws` draws, its final iterate scored the same way (a sample counts only if all `repeats` draws
  get it right, clean and attacked).
Both with Wilson 95 % intervals. advsec should be within 1 pp of the reference, or below it. Models are
trained through advsec's cache (5 epochs each, as evaluations/dynamic-replay.toml), so a second run only
attacks.
"""

from __future__ import annotations

import logging
import tempfile
import time
from pathlib import Path

import torch
from common import Output, benchmark_parser, parse_benchmark_args, record

CPU = torch.device("cpu")
EPS = 0.1
DEFENSES = {
    "weight-noise": "sigma = 0.2",
    "random-ensemble": "members = 3",
    "random-resize-pad": "min_scale = 0.8",
}
SPEC = """
name = "adaptive-eot"
dataset = "mnist"
model = "wong-cnn"
seed = 0
[train]
epochs = 5
batch_size = 100
lr = 5e-3
schedule = "cyclic"
[[defenses]]
name = "{defense}"
{params}
[[threats]]
norm = "linf"
eps = [{eps}]
[[attacks]]
name = "pgd"
steps = 20
[evaluation]
samples = {samples}
repeats = {repeats}
eot_draws = "auto"
"""


class Draws(logging.Handler):
    """Keeps the draws advsec's expectations chose (advsec.defense logs each choice)."""

    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.chosen: list[str] = []

    def emit(self, entry: logging.LogRecord) -> None:
        self.chosen.append(entry.getMessage())


def main() -> None:
    parser = benchmark_parser(__doc__)
    parser.add_argument("--samples", type=int, default=500)
    parser.add_argument("--steps", type=int, default=100)
    parser.add_argument("--draws", type=int, default=40)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--defenses", nargs="+", default=list(DEFENSES), choices=list(DEFENSES))
    args = parse_benchmark_args(parser)
    say = Output()

    from advsec.attack import gradient_attack
    from advsec.data.load import load_dataset
    from advsec.defense import Expectation
    from advsec.keys import seeded
    from advsec.progress import Progress
    from advsec.results import cell_summaries, wilson_interval
    from advsec.runner import run_spec
    from advsec.spec import parse_spec
    from advsec.threat import ThreatModel
    from advsec.train import load_or_train

    quiet = Progress(quiet=True)
    draws_log = Draws()
    logging.getLogger("advsec.defense").addHandler(draws_log)
    logging.getLogger("advsec.defense").setLevel(logging.INFO)
    dataset = load_dataset("mnist")
    x, y = dataset.x_test[: args.samples], dataset.y_test[: args.samples]
    threat = ThreatModel("linf", EPS, dataset.bounds)

    def percent(robust: int) -> str:
        low, high = wilson_interval(robust, args.samples)
        return f"{100 * robust / args.samples:5.1f} % [{100 * low:4.1f}, {100 * high:4.1f}]"

    say(f"MNIST wong-cnn, linf ε {EPS}, first {args.samples} test images, every prediction scored over "
        f"{args.repeats} draws; reference: EOT-PGD, {args.steps} steps × {args.draws} draws")  # fmt: skip
    say(f"{'defense':<18} {'advsec (auto)':>27} {'s':>6} {'passes':>9}   {'reference':>27} {'s':>6} "
        f"{'passes':>9} {'diff pp':>8}")  # fmt: skip
    notes, ratios = [], []
    for name in args.defenses:
        spec = parse_spec(SPEC.format(defense=name, params=DEFENSES[name], eps=EPS, samples=args.samples,
                                      repeats=args.repeats))  # fmt: skip
        defense = spec.defenses[0]
        trained = load_or_train(dataset, spec.model, defense.name, defense.params, defense.train, spec.seed,
                                device=CPU, progress=quiet)  # fmt: skip
        # advsec, as the spec runs it
        draws_log.chosen.clear()
        with tempfile.TemporaryDirectory() as out:
            store = run_spec(spec, Path(out), device=CPU, progress=quiet)
            cell = next(c for c in cell_summaries(store) if c.norm == "linf")
        ours = round(cell.robust_accuracy * cell.n)
        ours_passes = cell.forwards + cell.backwards
        stages = ", ".join(f"{a.attack} {100 * a.robust_after:.1f} %" for a in cell.attacks)
        chosen = "; ".join(draws_log.chosen) or "no draws measured"
        notes.append(f"  {name}: {stages}; {chosen}")

        # the reference EOT-PGD, on the deployed model's adaptive view, scored over the same repeats
        network = trained.network.requires_grad_(False)
        counted = Counter(network)
        deployed = trained.defense.wrap(counted, bounds=dataset.bounds)
        view = Expectation(trained.defense.adaptive(deployed), args.draws)
        started = time.perf_counter()
        with seeded(0, CPU):
            generator = torch.Generator().manual_seed(0)
            x_adv = torch.cat([
                gradient_attack(view, xb, yb, threat, steps=args.steps, step_fraction=2.5 / args.steps,
                                random_start=True, generator=generator, keep_worst=False)
                for xb, yb in zip(x.split(250), y.split(250), strict=True)
            ])  # fmt: skip
            with torch.no_grad():
                clean = torch.stack([deployed(x).argmax(1) == y for _ in range(args.repeats)]).all(0)
                attacked = torch.stack([deployed(x_adv).argmax(1) == y for _ in range(args.repeats)]).all(0)
        reference_seconds = time.perf_counter() - started
        reference = int((clean & attacked).sum())
        diff = 100 * (ours - reference) / args.samples
        ratios.append(cell.wall_seconds / reference_seconds)
        say(f"{name:<18} {percent(ours):>27} {cell.wall_seconds:>6.0f} {ours_passes:>9.3g}   "
            f"{percent(reference):>27} {reference_seconds:>6.0f} {counted.passes:>9.3g} "
            f"{diff:>+8.1f}")  # fmt: skip
    say("advsec's stages (robust after each) and the draws its expectation chose:")
    for note in notes:
        say(note)
    say("advsec's time ÷ the reference's: " + ", ".join(f"{r:.2f}" for r in ratios))
    record("adaptive_eot", say.lines)


class Counter(torch.nn.Module):
    """Counts the sample passes (forward, and backward where an input gradient is taken) of the network."""

    def __init__(self, model: torch.nn.Module) -> None:
        super().__init__()
        self.model = model
        self.passes = 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.passes += len(x) * (2 if torch.is_grad_enabled() and x.requires_grad else 1)
        return self.model(x)


if __name__ == "__main__":
    main()
