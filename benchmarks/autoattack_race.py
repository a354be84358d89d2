"""The race against the original AutoAttack: same model, same samples, same budget, side by side in one run.

    pip install pyautoattack==0.2.0    # or: pip install -e '.[autoattack]'
    python benchmarks/autoattack_race.py [--samples 1000] [--models mnist fashion] [--seeds 2] [--threads 2]

Needs MNIST and Fashion-MNIST in $ADVSEC_DATA or ../shared/data. Each model is the one advsec's own
evaluations deploy, trained (or loaded from the advsec model cache) with the defense and recipe that
evaluations/mnist-linf.toml and evaluations/fashion-linf.toml give it:

- MNIST, fast adversarial training (FGSM-RS) at eps 0.3, wong-cnn, attacked at linf eps 0.3;
- Fashion-MNIST, PGD adversarial training at eps 0.1, wong-cnn, attacked at linf eps 0.1.

On the first --samples test images it runs Croce & Hein's AutoAttack (pyautoattack, version='standard':
APGD-CE, APGD-T, FAB-T, Square 5,000 queries; its own batch size and seed 0) and advsec's worst-case
evaluation (advsec.evaluate, preset "worst-case": APGD-CE, APGD-T, Square 5,000 queries, sanity checks
included in its time; its searches in bfloat16 where the CPU computes it natively, advsec.precision),
and prints robust accuracy, wall time and per-stage times for both, the samples one tool broke that the
other left robust, and the ratio of wall times. advsec runs once per seed (--seeds): the spread of its
robust accuracy over seeds is the run-to-run spread the floor allows.

Floor (issue 25): advsec's robust accuracy <= AutoAttack's + spread, in <= 0.35x its wall time.
"""

from __future__ import annotations

import logging
import re
import time
from dataclasses import dataclass
from pathlib import Path

import torch
from common import REPO, Output, benchmark_parser, parse_benchmark_args, record

CPU = torch.device("cpu")
FLOOR = 0.35
# name: (spec that trains the model, the defense it trains, the budget attacked)
MODELS = {
    "mnist": ("mnist-linf.toml", "fast-at", 0.3),
    "fashion": ("fashion-linf.toml", "pgd-at", 0.1),
}


@dataclass
class Run:
    """One tool's run: each sample's verdict, seconds, and (stage, seconds, robust after) per stage."""

    robust: torch.Tensor
    seconds: float
    stages: list[tuple[str, float, float]]

    @property
    def accuracy(self) -> float:
        return self.robust.float().mean().item()


def main() -> None:
    parser = benchmark_parser(__doc__)
    parser.add_argument("--samples", type=int, default=1000, help="first N test images")
    parser.add_argument("--models", nargs="+", default=list(MODELS), choices=list(MODELS))
    parser.add_argument("--seeds", type=int, default=2, help="advsec runs (seeds 0, 1, ...) for the spread")
    args = parse_benchmark_args(parser)
    say = Output()
    try:
        import pyautoattack
    except ImportError:
        parser.exit(2, "needs the original AutoAttack: pip install pyautoattack==0.2.0\n")

    from advsec.precision import native_bfloat16

    version = getattr(pyautoattack, "__version__", "0.2.0")
    search = "bfloat16 (native on this CPU)" if native_bfloat16() else "float32 (no native bfloat16 here)"
    say(f"first {args.samples} test images, {args.threads} threads; AutoAttack = pyautoattack {version} "
        f"version='standard' seed 0; advsec = worst-case preset, seeds 0..{args.seeds - 1}, its searches in "
        f"{search}, every verdict in float32\n")  # fmt: skip
    ratios = {}
    for name in args.models:
        model, x, y, eps, title = _model(name, args.samples)
        theirs = _autoattack(model, x, y, eps)
        ours = [_advsec(model, x, y, eps, seed) for seed in range(args.seeds)]
        ratios[name] = _table(say, title, eps, theirs, ours)
    say(
        "ratios (advsec wall time / AutoAttack's; floor <= "
        f"{FLOOR}): " + " ".join(f"{name}={ratio:.2f}x" for name, ratio in ratios.items())
    )
    record("autoattack_race", say.lines)


def _model(name: str, samples: int) -> tuple[torch.nn.Module, torch.Tensor, torch.Tensor, float, str]:
    """The deployed model advsec's own evaluation trains for ``name``, and the first test images."""
    from advsec.data.load import load_dataset
    from advsec.progress import Progress
    from advsec.spec import load_spec
    from advsec.train import load_or_train

    spec_file, defense_name, eps = MODELS[name]
    spec = load_spec(REPO / "evaluations" / spec_file)
    defense = next(d for d in spec.defenses if d.name == defense_name)
    dataset = load_dataset(spec.dataset)
    trained = load_or_train(dataset, spec.model, defense.name, defense.params, defense.train, spec.seed,
                            device=CPU, progress=Progress(), label=defense.label)  # fmt: skip
    model = trained.model.eval()
    for parameter in model.parameters():
        parameter.requires_grad_(False)
    params = ", ".join(f"{k} {v}" for k, v in defense.params.items())
    title = f"{spec.dataset} {defense.name} ({params}) {spec.model}, from evaluations/{spec_file}"
    return model, dataset.x_test[:samples], dataset.y_test[:samples], eps, title


class _Stages(logging.Handler):
    """AutoAttack's log lines 'robust accuracy after X: r% (total time t s)', as (X, seconds, r)."""

    PATTERN = re.compile(r"robust accuracy after ([\w-]+): ([\d.]+)% \(total time ([\d.]+) s\)")

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.stages: list[tuple[str, float, float]] = []
        self.total = 0.0

    def emit(self, entry: logging.LogRecord) -> None:
        found = self.PATTERN.search(entry.getMessage())
        if found:
            total = float(found[3])
            self.stages.append((found[1].lower(), total - self.total, float(found[2]) / 100))
            self.total = total


def _autoattack(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, eps: float) -> Run:
    from pyautoattack import AutoAttack

    logger = logging.getLogger("auto-attack")
    stages = _Stages()
    logger.addHandler(stages)
    logger.setLevel(logging.DEBUG)
    logger.propagate = False
    try:
        attack = AutoAttack(model, norm="Linf", eps=eps, version="standard", seed=0, device="cpu")
        started = time.perf_counter()
        x_adv, _ = attack.run_standard_evaluation(x, y)
        seconds = time.perf_counter() - started
    finally:
        logger.removeHandler(stages)
    with torch.no_grad():
        robust = model(x_adv).argmax(1) == y
    assert (x_adv - x).abs().amax() <= eps + 1e-6, "AutoAttack left its budget"
    return Run(robust, seconds, stages.stages)


def _advsec(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, eps: float, seed: int) -> Run:
    import tempfile

    import advsec

    with tempfile.TemporaryDirectory() as out:
        started = time.perf_counter()
        result = advsec.evaluate(model, x, y, eps=eps, attacks="worst-case", seed=seed, device=CPU,
                                 out=Path(out))  # fmt: skip
        seconds = time.perf_counter() - started
    cell = next(c for c in result.results.cells if c.attacks)
    stages = [(a.attack, a.wall_seconds, a.robust_after) for a in cell.attacks]
    return Run(torch.from_numpy(result.robust[eps]), seconds, stages)


def _table(say: Output, title: str, eps: float, theirs: Run, ours: list[Run]) -> float:
    """Print one model's comparison; return the ratio of wall times (advsec's first seed / AutoAttack)."""
    say(f"{title}: linf eps {eps}, {len(theirs.robust)} images")
    say(f"   {'tool':22s} {'robust':>8s} {'seconds':>9s}   stages (seconds, robust after)")
    runs = [("AutoAttack", theirs)] + [(f"advsec seed {seed}", run) for seed, run in enumerate(ours)]
    for label, run in runs:
        stages = ", ".join(f"{stage} {s:.1f} s {100 * r:.1f}%" for stage, s, r in run.stages)
        say(f"   {label:22s} {100 * run.accuracy:7.1f}% {run.seconds:9.1f}   {stages}")
    spread = max(r.accuracy for r in ours) - min(r.accuracy for r in ours)
    worst = max(r.accuracy for r in ours)  # the weakest of advsec's runs
    ratio = ours[0].seconds / theirs.seconds
    only_theirs = (~theirs.robust & ours[0].robust).sum().item()
    only_ours = (theirs.robust & ~ours[0].robust).sum().item()
    holds = worst <= theirs.accuracy + spread + 1e-12 and ratio <= FLOOR
    say(f"   samples AutoAttack broke that advsec (seed 0) left robust: {only_theirs}; "
        f"the reverse: {only_ours}")  # fmt: skip
    say(f"   advsec spread over {len(ours)} seeds: {100 * spread:.1f} points; "
        f"advsec / AutoAttack wall time {ratio:.2f}x; floor (robust <= AutoAttack's + spread, "
        f"time <= {FLOOR}x): {'holds' if holds else 'NOT met'}\n")  # fmt: skip
    return ratio


if __name__ == "__main__":
    main()
