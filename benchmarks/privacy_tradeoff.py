"""Privacy against robustness: evaluations/privacy-fashion.toml (a wong-cnn on 2,000 Fashion-MNIST training
images: standard, PGD-AT, DP-SGD at ε 8 and 1, DP-SGD of PGD-AT's loss at ε 8; PGD-20x2 at linf 0.1; offline
LiRA with 4 shadow models per defense), run end to end, then per defense: clean and robust accuracy (Wilson
95 %), LiRA's TPR at 1 % and 0.1 % FPR (Clopper-Pearson 95 %), LiRA's and the loss threshold's ROC AUC
(DeLong 95 %), and the (ε, δ) spent. Does adversarial training raise the TPR at low FPR over standard
training (Song, Shokri & Mittal 2019), and how far does DP-SGD lower it, at what cost in accuracy?

    python benchmarks/privacy_tradeoff.py [--threads 2] [--out reports/privacy-fashion]

Models come from advsec's model cache when they are there (the line "models" says how long their training
took when it was measured); the wall time is this run's. The report (with the trade-off chart) is written to
--out.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import torch
from common import REPO, Output, benchmark_parser, parse_benchmark_args, record

from advsec.records import MembershipInference
from advsec.report import build_report, privacy_tradeoff_text
from advsec.results import DefenseSummary, RunResults, budget_key, membership_resolved

SPEC = REPO / "evaluations" / "privacy-fashion.toml"


def interval(value: float, low: float, high: float, digits: int = 1, scale: float = 100) -> str:
    return f"{scale * value:.{digits}f} [{scale * low:.{digits}f}, {scale * high:.{digits}f}]"


def tpr(m: MembershipInference | None, fpr: float) -> str:
    if m is None:
        return "-"
    value, low, high = (m.tpr_01, m.tpr_01_low, m.tpr_01_high) if fpr == 0.01 else (
        m.tpr_001, m.tpr_001_low, m.tpr_001_high)  # fmt: skip
    return interval(value, low, high) + ("" if membership_resolved(m, fpr) else "*")


def auc(m: MembershipInference | None) -> str:
    return "-" if m is None else interval(m.auc, m.auc_low, m.auc_high, digits=3, scale=1)


def row(d: DefenseSummary, key: str) -> list[str]:
    lira, loss = d.privacy.get("lira"), d.privacy.get("loss")
    spent = f"{d.privacy_budget[0]:.3g}" if d.privacy_budget else "-"
    shadow_s = f"{lira.shadow_seconds:.0f}" if lira else "-"
    return [
        d.defense,
        interval(d.clean_accuracy, *d.clean_interval),
        interval(d.robust[key], *d.robust_interval[key]),
        tpr(lira, 0.01),
        tpr(lira, 0.001),
        auc(lira),
        auc(loss),
        spent,
        f"{d.train_seconds or 0:.0f}",
        shadow_s,
    ]


def table(header: list[str], rows: list[list[str]]) -> list[str]:
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    return [
        "  ".join(
            cell.ljust(w) if i == 0 else cell.rjust(w)
            for i, (cell, w) in enumerate(zip(r, widths, strict=True))
        )
        for r in [header, *rows]
    ]


def main() -> None:
    parser = benchmark_parser(__doc__)
    parser.add_argument("--spec", type=Path, default=SPEC)
    parser.add_argument("--out", type=Path, default=REPO / "reports" / "privacy-fashion")
    args = parse_benchmark_args(parser)
    from advsec.progress import Progress
    from advsec.runner import run_spec
    from advsec.spec import load_spec

    spec = load_spec(args.spec)
    started = time.perf_counter()
    store = run_spec(spec, args.out, device=torch.device("cpu"), progress=Progress(quiet=True))
    wall = time.perf_counter() - started
    build_report(store, args.out)
    results = RunResults.read(store)
    norm, eps = spec.threats[0].norm, spec.report_eps
    key = budget_key(norm, eps)
    defenses = [d for d in results.defenses if key in d.robust]

    say = Output()
    lira = next(m for d in defenses for s, m in d.privacy.items() if s == "lira")
    attacks = ", ".join(a.label for a in spec.attacks)
    say(f"{spec.name}: {spec.model} on {spec.dataset} {spec.dataset_params}, {spec.train.epochs} epochs; "
        f"{lira.members:,} members and {lira.nonmembers:,} non-members scored; LiRA with {lira.shadows} "
        f"shadow models per defense; robust = worst case of {attacks} at {norm} {eps:g}")  # fmt: skip
    say("Intervals are 95 %: Wilson (accuracies), Clopper-Pearson (TPR), DeLong (AUC); * = read at FPR 0")
    say()
    header = ["defense", "clean %", f"robust % ({norm} {eps:g})", "LiRA TPR@1%FPR %", "LiRA TPR@0.1%FPR %",
              "LiRA AUC", "loss AUC", "DP ε", "train s", "shadows s"]  # fmt: skip
    for line in table(header, [row(d, key) for d in defenses]):
        say(line)
    say()
    for sentence in privacy_tradeoff_text(defenses, norm, eps):
        say(sentence)
    say()
    trained = sum((d.train_seconds or 0) + (d.privacy["lira"].shadow_seconds if "lira" in d.privacy else 0)
                  for d in defenses)  # fmt: skip
    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    say(f"run wall time {wall:.0f} s at {args.threads} torch thread(s), models from the cache; training "
        f"them took {trained:.0f} s as measured when each was trained (load average now {load} on "
        f"{os.cpu_count()} cores)")  # fmt: skip
    standard = next((d for d in defenses if d.name == "standard"), None)
    if standard is not None and "lira" in standard.privacy and standard.privacy["lira"].tpr_01 > 0:
        base = standard.privacy["lira"].tpr_01
        ratios = ", ".join(f"{d.defense} {d.privacy['lira'].tpr_01 / base:.2f}x" for d in defenses
                           if d is not standard and "lira" in d.privacy)  # fmt: skip
        say(f"LiRA TPR at 1 % FPR over standard's: {ratios}")
    record("privacy_tradeoff", say.lines)


if __name__ == "__main__":
    main()
