"""Does training against a weak adversary raise clean accuracy? Goodfellow et al.'s claim, over seeds.

    python benchmarks/weak_adversary.py [--seeds 3] [--epochs 5] [--datasets digits mnist fashion-mnist]

Goodfellow, Shlens & Szegedy (2014) report that FGSM adversarial training (α = 0.5, ε = 0.25) lowered a
maxout network's MNIST test error from 0.94 % to 0.84 %: adversarial examples as a regularizer. This trains
`standard` and `fgsm-at` at a small and at Goodfellow's ε on each data set, for several seeds, and prints
the clean test error as mean ± sd with Welch's t-test against standard. A lower mean with p < 0.05 is a
reproduction; anything else is not. Models go through the advsec cache, so a second run only reports.
"""

from __future__ import annotations

import statistics

import torch
from common import Output, benchmark_parser, parse_benchmark_args, record
from scipy import stats

CPU = torch.device("cpu")
# Per data set: the model, its training recipe, and the fgsm-at budgets to compare (a weak one first).
SETTINGS = {
    "digits": ("mlp", {"epochs": 30, "batch_size": 64, "lr": 1e-3}, (0.05, 0.1)),
    "mnist": ("wong-cnn", {"batch_size": 100, "lr": 5e-3, "schedule": "cyclic"}, (0.1, 0.25)),
    "fashion-mnist": ("wong-cnn", {"batch_size": 100, "lr": 5e-3, "schedule": "cyclic"}, (0.05, 0.1)),
}


def main() -> None:
    parser = benchmark_parser(__doc__)
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--epochs", type=int, default=5, help="for mnist and fashion-mnist (digits: 30)")
    parser.add_argument("--datasets", nargs="+", default=list(SETTINGS), choices=list(SETTINGS))
    args = parse_benchmark_args(parser)
    say = Output()

    from advsec.data.load import load_dataset
    from advsec.progress import Progress
    from advsec.runtime import batched_logits
    from advsec.spec import TrainConfig
    from advsec.train import load_or_train

    progress = Progress()
    say(f"{'dataset':<14} {'defense':<16} {'clean error % (mean ± sd)':>26} {'vs standard':>12} {'p':>7}")
    for name in args.datasets:
        dataset = load_dataset(name)
        model_name, recipe, budgets = SETTINGS[name]
        config = TrainConfig(**{"epochs": args.epochs, **recipe})
        errors: dict[str, list[float]] = {}
        for defense, params in [("standard", {}), *(("fgsm-at", {"eps": eps}) for eps in budgets)]:
            label = defense if not params else f"fgsm-at ε={params['eps']}"
            for seed in range(args.seeds):
                trained = load_or_train(dataset, model_name, defense, params, config, seed, device=CPU,
                                        progress=progress, label=f"{label} seed {seed}")  # fmt: skip
                logits = batched_logits(trained.model, dataset.x_test, 1000, dataset.num_classes)
                error = 100 * (logits.argmax(1) != dataset.y_test).float().mean().item()
                errors.setdefault(label, []).append(error)
            mean, sd = statistics.mean(errors[label]), statistics.stdev(errors[label])
            if label == "standard":
                say(f"{name:<14} {label:<16} {mean:>18.2f} ± {sd:.2f}")
                continue
            diff = mean - statistics.mean(errors["standard"])
            p = stats.ttest_ind(errors[label], errors["standard"], equal_var=False).pvalue
            say(f"{name:<14} {label:<16} {mean:>18.2f} ± {sd:.2f} {diff:>+11.2f}  {p:>7.3f}")
    record("weak_adversary", say.lines)


if __name__ == "__main__":
    main()
