"""Generators against gradient attacks, side by side in one run: success, fit, per-sample time, break-even.

    python benchmarks/generator_speed.py [--spec evaluations/mnist-advgan.toml] [--samples 1000]

Runs the spec (fits and models go through the advsec cache; its cells into a fresh temporary store, so the
attacks are timed now) and prints, for every generator of every cell, each gradient attack of the same
cell beside it: what each left robust, milliseconds per sample (scoring included), the speed-up and the
number of samples after which the generator's one-off fit has paid for itself; then, on the standard
model, each attack's own time without the scoring the harness adds to all. AdvGAN's target (issue 8):
≥ 95 % success on undefended MNIST at linf 0.3, a fit ≤ 3 minutes, ≥ 50× faster per sample than PGD-40.
"""

from __future__ import annotations

import dataclasses
import tempfile
from functools import partial
from pathlib import Path

import torch
from common import REPO, Output, benchmark_parser, fastest, parse_benchmark_args, record


def main() -> None:
    parser = benchmark_parser(__doc__)
    parser.add_argument("--spec", default=str(REPO / "evaluations" / "mnist-advgan.toml"))
    parser.add_argument("--samples", type=int, help="test samples (default: the spec's)")
    args = parse_benchmark_args(parser)
    say = Output()

    from advsec.progress import Progress
    from advsec.report.tables import generator_table
    from advsec.results import cell_summaries
    from advsec.runner import run_spec
    from advsec.spec import load_spec

    spec = load_spec(args.spec)
    if args.samples:
        spec = dataclasses.replace(
            spec, evaluation=dataclasses.replace(spec.evaluation, samples=args.samples)
        )
    with tempfile.TemporaryDirectory() as out:
        store = run_spec(spec, Path(out), device=torch.device("cpu"), progress=Progress())
        table = generator_table(cell_summaries(store))
        store.close()
    if table is None:
        say(f"{args.spec} has no generator next to a gradient attack")
        return
    say(" | ".join(table.header))
    for row in table.rows:
        say(" | ".join(row))
    _attack_alone(spec, say)
    record("generator_speed", say.lines)


def _attack_alone(spec, say: Output) -> None:
    """Milliseconds per image of each attack's ``perturb`` alone, no scoring: the harness's per-sample
    times above include a model forward, distances and records for every attack, which is most of a
    generator's time. Standard models and plain norms only; generators come from the cache the run filled."""
    from advsec import registry
    from advsec.data.load import load_dataset
    from advsec.generator import Generator, fit_generator
    from advsec.progress import Progress
    from advsec.spec import make_plugin
    from advsec.threat import ThreatModel
    from advsec.train import load_or_train

    cpu, quiet = torch.device("cpu"), Progress(quiet=True)
    dataset = load_dataset(spec.dataset)
    x, y = dataset.x_test[: spec.evaluation.samples], dataset.y_test[: spec.evaluation.samples]
    say("\nattack alone (perturb, no scoring): ms per image, fastest of 3; its time ÷ each generator's")
    for defense in (d for d in spec.defenses if d.name == "standard"):
        trained = load_or_train(dataset, spec.model, defense.name, defense.params, defense.train, spec.seed,
                                device=cpu, progress=quiet)  # fmt: skip
        model = trained.model.requires_grad_(False)  # as the harness has it: input gradients only
        for threat in (ThreatModel(t.norm, eps, dataset.bounds) for t in spec.threats for eps in t.eps):
            seconds, generators = {}, []
            for entry in (a for a in spec.attacks if a.target == "none" and not a.adaptive):
                attack = make_plugin(registry.attacks.get(entry.name), entry.params, entry.label)
                if isinstance(attack, Generator):
                    fit_generator(attack, entry.name, model, dataset, threat, target=None, view="deployed",
                                  model_key=trained.key, seed=spec.seed, progress=quiet)  # fmt: skip
                    generators.append(entry.label)
                attack.batch = 256  # a streaming attack keeps this many in flight, as the harness has it
                seconds[entry.label] = fastest(partial(_perturb_all, attack, model, x, y, threat))[0]
            for label, taken in seconds.items():
                ratios = " ".join(f"{taken / seconds[g]:7.1f}x {g}" for g in generators if g != label)
                say(f"   {defense.label} {threat.norm} {threat.eps:g} {label:20s} "
                     f"{1000 * taken / len(x):8.3f}  {ratios}")  # fmt: skip


def _perturb_all(attack, model, x: torch.Tensor, y: torch.Tensor, threat) -> None:
    """``attack`` perturbs ``x``: at once if it streams, else in batches of 256."""
    generator = torch.Generator().manual_seed(0)
    calls = [(x, y)] if attack.streams else zip(x.split(256), y.split(256), strict=True)
    for xb, yb in calls:
        attack.perturb(model, xb, yb, threat, generator=generator)


if __name__ == "__main__":
    main()
