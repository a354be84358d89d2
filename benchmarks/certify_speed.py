"""Certification speed, measured side by side in one run: CERTIFY against the bare forward passes it needs.

    python benchmarks/certify_speed.py [--images 100] [--n 10000] [--batch 1000] [--threads 2]

Needs MNIST in $ADVSEC_DATA or ../shared/data. Trains (or loads from the advsec model cache) the wong-cnn
smoothing model of evaluations/smoothing-mnist.toml (sigma 0.25). For the same images it times

1. `advsec.certify.certify`: n0 = 100 selection and n estimation draws per image, with per-image
   generators, vote counting and the Clopper–Pearson bounds;
2. the floor: the same (n0 + n) noisy copies of each image through the same model, plain forward passes of
   the same batch size, noise from the global generator, nothing counted.

Each is run `--repeats` times, alternating, and the fastest run of each is compared. The final line is the
ratio certify ÷ floor (target ≤ 1.2).
"""

from __future__ import annotations

import time

import torch
from common import REPO, Output, benchmark_parser, parse_benchmark_args, record

SIGMA, N0 = 0.25, 100


def main() -> None:
    parser = benchmark_parser(__doc__)
    parser.add_argument("--images", type=int, default=100)
    parser.add_argument("--n", type=int, default=10_000)
    parser.add_argument("--batch", type=int, default=1000)
    parser.add_argument("--repeats", type=int, default=3)
    args = parse_benchmark_args(parser)
    say = Output()

    from advsec.certify import certify
    from advsec.data.load import load_dataset
    from advsec.progress import Progress
    from advsec.spec import CertifyConfig, load_spec
    from advsec.train import load_or_train

    spec = load_spec(REPO / "evaluations" / "smoothing-mnist.toml")
    defense = next(d for d in spec.defenses if d.params.get("sigma") == SIGMA)
    mnist = load_dataset(spec.dataset)
    trained = load_or_train(
        mnist, spec.model, defense.name, defense.params, defense.train, spec.seed,
        device=torch.device("cpu"), progress=Progress(),
    )  # fmt: skip
    model = trained.network
    x = mnist.x_test[: args.images]
    settings = CertifyConfig(n0=N0, n=args.n, samples=args.images, batch_size=args.batch)

    def certified() -> None:
        certify(model, x, sigma=SIGMA, settings=settings, seed=0)

    @torch.no_grad()
    def floor() -> None:
        for image in x:
            for start in range(0, N0 + args.n, args.batch):
                size = min(args.batch, N0 + args.n - start)
                model(image.expand(size, *image.shape) + SIGMA * torch.randn(size, *image.shape))

    times: dict[str, list[float]] = {"certify": [], "floor": []}
    for _ in range(args.repeats):
        for name, run in (("certify", certified), ("floor", floor)):
            started = time.perf_counter()
            run()
            times[name].append(time.perf_counter() - started)

    forwards = args.images * (N0 + args.n)
    say(
        f"MNIST wong-cnn smoothing sigma {SIGMA}: {args.images} images × (n0 {N0} + n {args.n:,}) = "
        f"{forwards:,} noisy forwards, batch {args.batch}, {args.threads} threads, best of {args.repeats}\n"
    )
    say(f"   {'':10s} {'seconds':>8s} {'images/s':>9s} {'forwards/s':>11s}")
    for name, measured in times.items():
        best = min(measured)
        say(f"   {name:10s} {best:8.2f} {args.images / best:9.1f} {forwards / best:11,.0f}")
    say(f"\nratio certify / floor: {min(times['certify']) / min(times['floor']):.3f}")
    record("certify_speed", say.lines)


if __name__ == "__main__":
    main()
