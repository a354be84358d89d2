"""Attack speed, measured side by side in one process: our engine against torchattacks on the same models.

    python benchmarks/attack_speed.py [--images 1000] [--threads 2]

Needs MNIST in $ADVSEC_DATA or ../shared/data. Trains (or loads from the advsec model cache) an undefended
and a PGD-trained wong-cnn, and an undefended madry-cnn. Prints three tables and a final line of ratios:

1. per-step overhead: our PGD-40 (early stop off) ÷ 40 × one forward+backward, batch 256;
2. time to measure PGD-40 robust accuracy, ours vs torchattacks (same model, images, eps, step, steps),
   and a plain early-exit loop's (the issue's reference) beside them;
3. the harness's cascade against running every attack on every sample, at identical worst-case accuracy.
"""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F
from common import Output, benchmark_parser, fastest, parse_benchmark_args, record

EPS, ALPHA, STEPS = 0.3, 0.01, 40  # Madry et al.'s MNIST evaluation; the step stays ALPHA / EPS of the budget
# PGD training at eps 0.3 from scratch collapsed to a constant classifier within a few epochs when we tried
# it: the adversarially trained model is trained at 0.1 and attacked at 0.2, where a fair share of its samples
# survive, like the reference point (a partly robust fast-AT model); table 2 prints that share.
AT_PARAMS, AT_EPOCHS = {"eps": 0.1, "steps": 5}, 2
EVAL_EPS = {"wong-cnn standard": EPS, "wong-cnn pgd-at": 0.2, "madry-cnn standard": EPS}
CASCADE = (
    ("fgsm", 1, ""),
    ("bim", 20, "steps = 20"),
    ("pgd", STEPS, f"steps = {STEPS}\nrandom_start = false"),
)


def main() -> None:
    parser = benchmark_parser(__doc__)
    parser.add_argument("--images", type=int, default=1000)
    args = parse_benchmark_args(parser)
    say = Output()

    from advsec.data.load import load_dataset

    mnist = load_dataset("mnist")
    x, y = mnist.x_test[: args.images], mnist.y_test[: args.images]
    models = {
        "wong-cnn standard": _train(mnist, "wong-cnn", "standard", {}, epochs=2),
        "wong-cnn pgd-at": _train(mnist, "wong-cnn", "pgd-at", AT_PARAMS, epochs=AT_EPOCHS),
        "madry-cnn standard": _train(mnist, "madry-cnn", "standard", {}, epochs=1),
    }
    for model in models.values():
        for parameter in model.parameters():
            parameter.requires_grad_(False)

    say(
        f"MNIST, {args.images} test images, linf eps {EPS} (pgd-at: {EVAL_EPS['wong-cnn pgd-at']}), "
        f"PGD-{STEPS} step eps·{ALPHA / EPS:.3f}, "
        f"{args.threads} threads\n"
    )
    overheads = {name: _overhead(model, x[:256], y[:256]) for name, model in models.items()}
    say("1. per-step overhead (batch 256): PGD-40 with early stop off ÷ 40 × (forward + backward)")
    for name, ratio in overheads.items():
        say(f"   {name:20s} {ratio:5.2f}")

    say("\n2. time to measure PGD-40 robust accuracy: ours (early stop, 256 rows in flight, refilled)")
    say("   vs torchattacks (batches of 256);")
    say("   'ideal' is early exit's ceiling: 40 steps ÷ our mean gradient evaluations per sample")
    say("   'plain' is a plain early-exit loop (per batch of 256, fooled rows dropped) for reference")
    say(
        f"   {'model':20s} {'ours s':>8s} {'theirs s':>9s} {'speed-up':>9s} "
        f"{'ideal':>6s} {'plain':>6s} {'ours acc':>9s} {'theirs acc':>11s} {'plain acc':>10s}"
    )
    speedups = {}
    for name, model in models.items():
        if name.startswith("madry") and args.images > 500:  # 10x slower per image: fewer images keep it short
            xs, ys = x[:500], y[:500]
        else:
            xs, ys = x, y
        ours_s, ours_acc, ideal = _ours(model, xs, ys, EVAL_EPS[name])
        theirs_s, theirs_acc = _torchattacks(model, xs, ys, EVAL_EPS[name])
        plain_s, plain_acc = _plain(model, xs, ys, EVAL_EPS[name])
        speedups[name] = theirs_s / ours_s
        say(f"   {name:20s} {ours_s:8.2f} {theirs_s:9.2f} {speedups[name]:8.1f}x {ideal:5.1f}x "
             f"{theirs_s / plain_s:5.1f}x {100 * ours_acc:8.1f}% {100 * theirs_acc:10.1f}% "
             f"{100 * plain_acc:9.1f}%")  # fmt: skip

    say("\n3. cascade vs every attack on every clean-correct sample (fgsm → bim-20 → pgd-40), in gradient")
    say("   evaluations: 'full' runs each attack on every sample with early stop; 'naive' without (computed)")
    header = ["cascade", "full", "naive", "c/full", "c/naive", "accuracy"]
    say(f"   {'model':20s} " + " ".join(f"{h:>9s}" for h in header))
    cascades = {}
    for name in ("wong-cnn standard", "wong-cnn pgd-at"):
        cost, naive, accuracy = _cascade(mnist, name, args.images)
        cascades[name] = (cost["true"] / cost["false"], cost["true"] / naive)
        say(f"   {name:20s} {cost['true']:9,d} {cost['false']:9,d} {naive:9,d} {cascades[name][0]:9.2f} "
             f"{cascades[name][1]:9.2f} {100 * accuracy:8.1f}%")  # fmt: skip

    say(
        "\nratios: overhead "
        + " ".join(f"{n}={r:.2f}" for n, r in overheads.items())
        + " | speed-up vs torchattacks "
        + " ".join(f"{n}={r:.1f}x" for n, r in speedups.items())
        + " | cascade/full, cascade/naive "
        + " ".join(f"{n}={a:.2f},{b:.2f}" for n, (a, b) in cascades.items())
    )
    record("attack_speed", say.lines)


def _train(dataset, model: str, defense: str, params: dict, epochs: int) -> torch.nn.Module:
    from advsec.progress import Progress
    from advsec.spec import TrainConfig
    from advsec.train import load_or_train

    config = TrainConfig(epochs=epochs, batch_size=128)
    return load_or_train(dataset, model, defense, params, config, 0, device=torch.device("cpu"),
                         progress=Progress()).model  # fmt: skip


def _overhead(model, x, y) -> float:
    """PGD-40 (early stop off) ÷ 40 forward+backward passes run back to back, each the fastest of 5 runs."""
    from advsec.attack import gradient_attack
    from advsec.threat import ThreatModel

    threat = ThreatModel("linf", EPS, (0.0, 1.0))

    def forward_backward() -> None:
        for _ in range(STEPS):
            inputs = x.clone().requires_grad_(True)
            torch.autograd.grad(F.cross_entropy(model(inputs), y, reduction="sum"), inputs)

    def pgd() -> None:
        gradient_attack(model, x, y, threat, steps=STEPS, step_size=ALPHA, random_start=True,
                        early_stop=False)  # fmt: skip

    return fastest(pgd, repeats=5)[0] / fastest(forward_backward, repeats=5)[0]


def _robust(model, x_adv, y) -> float:
    with torch.no_grad():
        return (model(x_adv).argmax(1) == y).float().mean().item()


def _ours(model, x, y, eps: float) -> tuple[float, float, float]:
    """Seconds (best of 3), robust accuracy, and early exit's ideal speed-up (steps ÷ mean gradients)."""
    from advsec import registry
    from advsec.runtime import CountingModel
    from advsec.spec import make_plugin
    from advsec.threat import ThreatModel

    attack = make_plugin(registry.attacks.get("pgd"), {"steps": STEPS, "step_fraction": ALPHA / EPS}, "pgd")
    threat = ThreatModel("linf", eps, (0.0, 1.0))
    counted = CountingModel(model)

    attack.batch = 256  # as the harness sets it: 256 in flight, each row refilled as its sample leaves

    def run() -> float:
        generator = torch.Generator().manual_seed(0)
        return _robust(model, attack.perturb(counted, x, y, threat, generator=generator), y)

    seconds, accuracy = fastest(run)
    return seconds, accuracy, 3 * STEPS * len(x) / counted.backwards


def _torchattacks(model, x, y, eps: float) -> tuple[float, float]:
    import torchattacks

    attack = torchattacks.PGD(model, eps=eps, alpha=eps * ALPHA / EPS, steps=STEPS, random_start=True)

    def run() -> float:
        torch.manual_seed(0)
        x_adv = torch.cat([attack(xb, yb) for xb, yb in zip(x.split(256), y.split(256), strict=True)])
        return _robust(model, x_adv, y)

    return fastest(run)


def _plain(model, x, y, eps: float) -> tuple[float, float]:
    """The issue's reference: a plain PGD loop per batch of 256 that drops a row as soon as it is fooled."""
    alpha = eps * ALPHA / EPS

    def batch(xb: torch.Tensor, yb: torch.Tensor) -> torch.Tensor:
        result = xb.clone()
        rows = torch.arange(len(xb))
        x_adv = (xb + torch.empty_like(xb).uniform_(-eps, eps)).clamp(0, 1)
        for step in range(STEPS + 1):
            inputs = x_adv.requires_grad_(True)
            logits = model(inputs)
            right = logits.argmax(1) == yb[rows]
            result[rows] = inputs.detach()
            if step == STEPS or not right.any():
                break
            (grad,) = torch.autograd.grad(F.cross_entropy(logits, yb[rows], reduction="sum"), inputs)
            rows, grad, x_adv = rows[right], grad[right], inputs.detach()[right]
            x_adv = x_adv + alpha * grad.sign()
            x_adv = torch.min(torch.max(x_adv, xb[rows] - eps), xb[rows] + eps).clamp(0, 1)
        return result

    def run() -> float:
        torch.manual_seed(0)
        return _robust(model, torch.cat([batch(*b) for b in zip(x.split(256), y.split(256), strict=True)]), y)

    return fastest(run)


def _cascade(dataset, name: str, images: int) -> tuple[dict[str, int], int, float]:
    """Gradient evaluations of the cascade and of the full ensemble (both run), of the naive one (counted)."""
    import tempfile

    from advsec.progress import Progress
    from advsec.results import cell_summaries
    from advsec.runner import run_spec
    from advsec.spec import parse_spec

    model, defense = name.split()
    params, epochs = ({}, 2) if defense == "standard" else (AT_PARAMS, AT_EPOCHS)
    attacks = "\n".join(f'[[attacks]]\nname = "{attack}"\n{keys}' for attack, _, keys in CASCADE)
    defense_keys = "\n".join(f"{key} = {value}" for key, value in params.items())
    spec_text = f"""
dataset = "mnist"
model = "{model}"
[train]
epochs = {epochs}
batch_size = 128
[[defenses]]
name = "{defense}"
{defense_keys}
[[threats]]
norm = "linf"
eps = [{EVAL_EPS[name]}]
{attacks}
step_fraction = {ALPHA / EPS}
[evaluation]
samples = {images}
cascade = {{cascade}}
"""
    cost, accuracy = {}, {}
    for cascade in ("true", "false"):
        spec = parse_spec(spec_text.replace("{cascade}", cascade))
        with tempfile.TemporaryDirectory() as out:
            store = run_spec(spec, Path(out), device=torch.device("cpu"), progress=Progress(quiet=True))
            cell = next(c for c in cell_summaries(store) if c.norm == "linf")
            cost[cascade] = cell.backwards
            accuracy[cascade] = cell.robust_accuracy
            clean_correct = round(cell.clean_accuracy * cell.n)
    assert accuracy["true"] == accuracy["false"], accuracy
    naive = clean_correct * sum(steps for _, steps, _ in CASCADE)
    return cost, naive, accuracy["true"]


if __name__ == "__main__":
    main()
