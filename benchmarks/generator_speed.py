"""Generators against gradient attacks, side by side in one run: success, fit, per-sample time, break-even.

    python benchmarks/generator_speed.py [--spec evaluations/mnist-advgan.toml] [--samples 1000]

Runs the spec (fits and models go through the advsec cache; its cells into a fresh temporary store, so the
attacks are timed now) and prints, for every generator of every cell, each gradient attack of the same
cell beside it: what each left robust, milliseconds per sample (scoring included), the speed-up and the
number of samples after which the generator's one-off fit has paid for itself. AdvGAN's target (issue 8):
≥ 95 % success on undefended MNIST at linf 0.3, a fit ≤ 3 minutes, ≥ 50× faster per sample than PGD-40.
"""

from __future__ import annotations

import dataclasses
import tempfile
from pathlib import Path

import torch
from common import REPO, benchmark_parser, parse_benchmark_args


def main() -> None:
    parser = benchmark_parser(__doc__)
    parser.add_argument("--spec", default=str(REPO / "evaluations" / "mnist-advgan.toml"))
    parser.add_argument("--samples", type=int, help="test samples (default: the spec's)")
    args = parse_benchmark_args(parser)

    from advsec.harness import run_spec
    from advsec.progress import Progress
    from advsec.report.tables import generator_table
    from advsec.results import cell_summaries
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
        print(f"{args.spec} has no generator next to a gradient attack")
        return
    print(" | ".join(table.header))
    for row in table.rows:
        print(" | ".join(row))


if __name__ == "__main__":
    main()
